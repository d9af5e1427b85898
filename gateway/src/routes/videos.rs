//! The JSON API for videos.

use anyhow::anyhow;
use axum::extract::{Path, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::RefOr;
use utoipa::PartialSchema;
use validator::{Validate, ValidationError};
use vod_contracts::api::{ErrorBody, VideoList, VideoView};
use vod_contracts::commands::{present, CreateVideo, DeleteVideo, UpdateVideo, VideoCreated};
use vod_contracts::{PlaybackPolicy, VideoId};

use super::json::ValidJson;
use super::page::{Page, PageQuery};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::plain_text::{check_plain_text, Lines};
use crate::read_model;
use crate::state::AppState;
use crate::title::normalize_title;

pub(super) const MAX_DESCRIPTION_CHARS: u64 = 5000;
const MAX_PASSTHROUGH_CHARS: u64 = 255;

/// `POST /v1/videos`.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct CreateVideoRequest {
    /// 1 to 200 characters, not blank, one line without control or bidirectional formatting
    /// characters; surrounding blanks (line breaks included) are trimmed off.
    #[schema(
        value_type = String,
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = r"^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202a-\u202f\u205f\u2066-\u2069\u3000]([^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202a-\u202f\u205f\u2066-\u2069\u3000])?[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
        example = "My clip"
    )]
    #[validate(
        required(message = "title is required"),
        custom(function = "valid_title")
    )]
    title: Option<String>,
    /// At most 5000 characters; line breaks and tabs are kept, other control characters and
    /// bidirectional formatting characters are refused.
    #[schema(
        max_length = 5000,
        pattern = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$"
    )]
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "description must be at most 5000 characters"),
        custom(function = "valid_description")
    )]
    description: Option<String>,
    /// Who may watch it: `public` (the default) plays from the plain `playback` URLs, `signed`
    /// only with `?token=` signed by one of the project's signing keys.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "present")]
    playback_policy: Option<PlaybackPolicy>,
}

pub(super) fn valid_title(title: &str) -> Result<(), ValidationError> {
    normalize_title(title)
        .map(|_| ())
        .map_err(|err| ValidationError::new("title").with_message(err.to_string().into()))
}

pub(super) fn valid_description(description: &str) -> Result<(), ValidationError> {
    check_plain_text(description, Lines::Multi).map_err(|err| {
        ValidationError::new("description").with_message(format!("description {err}").into())
    })
}

/// `POST /v1/videos`: creates an empty video through the uploader.
#[utoipa::path(
    post,
    path = "/v1/videos",
    operation_id = "create_video",
    tag = "videos",
    summary = "Create a video",
    description = "A video without flows; upload to it with `video_id` in `Upload-Metadata`.",
    request_body = CreateVideoRequest,
    responses(
        (status = 201, description = "The video.", body = VideoView, headers(
            ("Location" = String, description = "`/v1/videos/{id}`."),
        )),
        (status = 400, description = "`validation_failed` (`title`, `description` or `playback_policy` in `field`), `invalid_json`, `invalid_request`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ValidJson(request): ValidJson<CreateVideoRequest>,
) -> Result<Response, ApiError> {
    let title = request
        .title
        .as_deref()
        .map(normalize_title)
        .transpose()
        .map_err(|err| ApiError::validation("title", err.to_string()))?
        .ok_or_else(|| ApiError::validation("title", "title is required"))?;
    let VideoCreated { video_id } = state
        .uploader
        .call(&CreateVideo {
            project_id: caller.project_id,
            title,
            description: request.description.unwrap_or_default(),
            playback_policy: request.playback_policy.unwrap_or_default(),
        })
        .await?;
    tracing::info!(%video_id, "video created");
    let view = find_own_video(&state, &caller, video_id)
        .await?
        .ok_or_else(|| anyhow!("video {video_id} confirmed by the uploader but not found"))?;
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/v1/videos/{video_id}"))],
        Json(view),
    )
        .into_response())
}

/// `PATCH /v1/videos/{id}`: each field present is changed, each absent one kept.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct UpdateVideoRequest {
    /// As in `POST /v1/videos`; it cannot be `null`.
    #[schema(schema_with = title_as_created)]
    #[serde(default, deserialize_with = "present")]
    #[validate(custom(function = "valid_title"))]
    title: Option<String>,
    /// As in `POST /v1/videos`; `""` or `null` empties it.
    #[schema(schema_with = description_as_created)]
    #[serde(default, deserialize_with = "present")]
    #[validate(
        length(max = MAX_DESCRIPTION_CHARS, message = "description must be at most 5000 characters"),
        custom(function = "valid_description")
    )]
    description: Option<Option<String>>,
    /// The operator's own reference, at most 255 characters (any but NUL); vod never reads it.
    /// `null` clears it.
    #[schema(value_type = Option<String>, max_length = 255, pattern = r"^[^\u0000]*$")]
    #[serde(default, deserialize_with = "present")]
    #[validate(
        length(max = MAX_PASSTHROUGH_CHARS, message = "passthrough must be at most 255 characters"),
        custom(function = "valid_passthrough")
    )]
    passthrough: Option<Option<String>>,
    /// As in `POST /v1/videos`; it cannot be `null`. It applies to every flow of the video,
    /// those already ready included.
    #[schema(nullable = false)]
    #[serde(default, deserialize_with = "present")]
    playback_policy: Option<PlaybackPolicy>,
}

/// A property of `UpdateVideoRequest` is documented as `CreateVideoRequest` documents it: a
/// change accepts what a creation accepts.
fn property_as_created(name: &str) -> RefOr<Schema> {
    match <CreateVideoRequest as PartialSchema>::schema() {
        RefOr::T(Schema::Object(request)) => request.properties.get(name).cloned(),
        _ => None,
    }
    .unwrap_or_else(|| RefOr::T(Schema::Object(Object::new())))
}

pub(super) fn title_as_created() -> RefOr<Schema> {
    property_as_created("title")
}

pub(super) fn description_as_created() -> RefOr<Schema> {
    property_as_created("description")
}

fn valid_passthrough(passthrough: &str) -> Result<(), ValidationError> {
    if passthrough.contains('\0') {
        return Err(ValidationError::new("passthrough")
            .with_message("passthrough must not contain NUL characters".into()));
    }
    Ok(())
}

/// `PATCH /v1/videos/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/videos/{id}",
    operation_id = "update_video",
    tag = "videos",
    summary = "Change a video's title, description, passthrough or playback policy",
    description = "Fields left out keep their value.",
    params(("id" = uuid::Uuid, Path, description = "The video's id.")),
    request_body = UpdateVideoRequest,
    responses(
        (status = 200, description = "The video as it is now.", body = VideoView),
        (status = 400, description = "`validation_failed` (`title`, `description`, `passthrough` or `playback_policy` in `field`), `invalid_json`, `invalid_request`.", body = ErrorBody),
        (status = 404, description = "`video_not_found`: no such video, or the id is not a UUID.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the JSON limit.", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not `application/json`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ValidJson(request): ValidJson<UpdateVideoRequest>,
) -> Result<Response, ApiError> {
    let video_id: VideoId = id.parse().map_err(|_| ApiError::VideoNotFound)?;
    let title = request
        .title
        .as_deref()
        .map(normalize_title)
        .transpose()
        .map_err(|err| ApiError::validation("title", err.to_string()))?;
    state
        .uploader
        .call(&UpdateVideo {
            project_id: caller.project_id,
            video_id,
            title,
            description: request.description.map(Option::unwrap_or_default),
            passthrough: request.passthrough,
            playback_policy: request.playback_policy,
        })
        .await?;
    tracing::info!(%video_id, "video updated");
    let view = find_own_video(&state, &caller, video_id)
        .await?
        .ok_or(ApiError::VideoNotFound)?;
    Ok(Json(view).into_response())
}

/// `DELETE /v1/videos/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/videos/{id}",
    operation_id = "delete_video",
    tag = "videos",
    summary = "Delete a video",
    description = "From the answer on the video is gone: its open uploads are terminated, and its \
        rows and its output on holder are removed (an encode still running ends first, and what \
        it published is removed with the rest).",
    params(("id" = uuid::Uuid, Path, description = "The video's id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "`video_not_found`: no such video (a deleted one included), or the id is not a UUID.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`; retry after `Retry-After` seconds.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video_id: VideoId = id.parse().map_err(|_| ApiError::VideoNotFound)?;
    // A video that is not there is answered without a command; the uploader decides for one
    // that is (deleted meanwhile, it answers not found too).
    if !read_model::video_exists(&state.pool, caller.project_id, video_id).await? {
        return Err(ApiError::VideoNotFound);
    }
    state
        .uploader
        .call(&DeleteVideo {
            project_id: caller.project_id,
            video_id,
        })
        .await?;
    tracing::info!(%video_id, "video deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/videos/{id}`.
#[utoipa::path(
    get,
    path = "/v1/videos/{id}",
    operation_id = "get_video",
    tag = "videos",
    summary = "A video, its flows and where to play it",
    params(("id" = uuid::Uuid, Path, description = "The video's id.")),
    responses(
        (status = 200, description = "The video. `playback` holds the HLS and DASH URLs once it is `READY`.", body = VideoView),
        (status = 404, description = "`video_not_found`: no such video, or the id is not a UUID.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let video_id: VideoId = id.parse().map_err(|_| ApiError::VideoNotFound)?;
    let view = find_own_video(&state, &caller, video_id)
        .await?
        .ok_or(ApiError::VideoNotFound)?;
    Ok(Json(view).into_response())
}

/// `GET /v1/videos?limit=&offset=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/videos",
    operation_id = "list_videos",
    tag = "videos",
    summary = "List videos, newest first",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of videos.", body = VideoList),
        (status = 400, description = "`validation_failed` (`limit` or `offset` in `field`), `invalid_request`.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`service_unavailable`: the database is unreachable.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait."))),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Page { limit, offset }: Page,
) -> Result<Response, ApiError> {
    let videos = read_model::list_videos(
        &state.pool,
        caller.project_id,
        limit,
        offset,
        &state.config.holder_public_url,
    )
    .await?;
    Ok(Json(VideoList { videos }).into_response())
}

/// The caller's video as `GET /v1/videos/{id}` shows it, if the project has it.
async fn find_own_video(
    state: &AppState,
    caller: &Caller,
    video_id: VideoId,
) -> Result<Option<VideoView>, ApiError> {
    Ok(read_model::find_video(
        &state.pool,
        caller.project_id,
        video_id,
        &state.config.holder_public_url,
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::json::first_validation_error;

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::ValidationFailed { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn validate(json: &str) -> Result<(), ApiError> {
        let request: CreateVideoRequest = serde_json::from_str(json).expect("json");
        request.validate().map_err(first_validation_error)
    }

    #[test]
    fn missing_or_blank_title_is_a_validation_error_on_title() {
        for json in [r#"{}"#, r#"{"title": null}"#, r#"{"title": "   "}"#] {
            assert_eq!(field_of(validate(json).expect_err(json)), "title");
        }
        let long = format!(r#"{{"title": "{}"}}"#, "a".repeat(201));
        assert_eq!(field_of(validate(&long).expect_err("too long")), "title");
        assert!(validate(r#"{"title": "Film"}"#).is_ok());
    }

    #[test]
    fn long_description_is_a_validation_error_on_description() {
        let json = format!(
            r#"{{"title": "Film", "description": "{}"}}"#,
            "d".repeat(5001)
        );
        assert_eq!(
            field_of(validate(&json).expect_err("too long")),
            "description"
        );
        let json = format!(
            r#"{{"title": "Film", "description": "{}"}}"#,
            "d".repeat(5000)
        );
        assert!(validate(&json).is_ok());
    }

    #[test]
    fn control_and_bidi_characters_are_refused_in_the_field_they_are_in() {
        for bad in [r"a\u0000b", r"bell\u0007", r"evil\u202e4pm.exe"] {
            let title = format!(r#"{{"title": "{bad}"}}"#);
            assert_eq!(field_of(validate(&title).expect_err(&title)), "title");
            let description = format!(r#"{{"title": "Film", "description": "{bad}"}}"#);
            assert_eq!(
                field_of(validate(&description).expect_err(&description)),
                "description"
            );
        }
        assert!(validate(r#"{"title": "Film", "description": "one\n\ttwo\r\n"}"#).is_ok());
        assert_eq!(
            field_of(validate(r#"{"title": "one\ntwo"}"#).expect_err("two lines")),
            "title"
        );
    }

    fn validate_update(json: &str) -> Result<UpdateVideoRequest, ApiError> {
        let request: UpdateVideoRequest = serde_json::from_str(json)
            .map_err(|error| ApiError::validation("json", error.to_string()))?;
        request.validate().map_err(first_validation_error)?;
        Ok(request)
    }

    #[test]
    fn an_update_tells_an_absent_passthrough_from_a_null_one() {
        let kept = validate_update(r#"{"title": "Film"}"#).expect("valid");
        assert_eq!(kept.passthrough, None);
        assert_eq!(kept.title.as_deref(), Some("Film"));
        let cleared = validate_update(r#"{"passthrough": null}"#).expect("valid");
        assert_eq!(cleared.passthrough, Some(None));
        let set = validate_update(r#"{"passthrough": "order-7"}"#).expect("valid");
        assert_eq!(set.passthrough, Some(Some("order-7".to_owned())));
    }

    #[test]
    fn an_update_is_checked_field_by_field() {
        let at_most = format!(r#"{{"passthrough": "{}"}}"#, "é".repeat(255));
        assert!(validate_update(&at_most).is_ok());
        let too_long = format!(r#"{{"passthrough": "{}"}}"#, "é".repeat(256));
        assert_eq!(
            field_of(validate_update(&too_long).expect_err("too long")),
            "passthrough"
        );
        let nul = r#"{"passthrough": "a\u0000b"}"#;
        assert_eq!(
            field_of(validate_update(nul).expect_err("NUL")),
            "passthrough"
        );
        for (json, field) in [
            (r#"{"title": "   "}"#, "title"),
            (r#"{"title": "one\ntwo"}"#, "title"),
            (r#"{"description": "evil\u202e"}"#, "description"),
        ] {
            assert_eq!(
                field_of(validate_update(json).expect_err(json)),
                field,
                "{json}"
            );
        }
        assert!(serde_json::from_str::<UpdateVideoRequest>(r#"{"title": null}"#).is_err());
        let emptied = validate_update(r#"{"description": null}"#).expect("valid");
        assert_eq!(emptied.description, Some(None));
    }

    #[test]
    fn an_update_documents_title_and_description_as_a_creation_does() {
        use utoipa::openapi::schema::Schema;
        let RefOr::T(Schema::Object(update)) =
            <UpdateVideoRequest as utoipa::PartialSchema>::schema()
        else {
            panic!("UpdateVideoRequest is an object");
        };
        let RefOr::T(Schema::Object(create)) =
            <CreateVideoRequest as utoipa::PartialSchema>::schema()
        else {
            panic!("CreateVideoRequest is an object");
        };
        for property in ["title", "description"] {
            let documented = |object: &Object| {
                serde_json::to_value(object.properties.get(property)).expect("json")
            };
            assert_eq!(documented(&update), documented(&create), "{property}");
        }
        assert!(update.required.is_empty(), "every field may be left out");
    }

    /// The `pattern` and `maxLength` the document gives a property of `CreateVideoRequest`.
    fn documented_text(property: &str) -> (regex::Regex, usize) {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::RefOr;
        let RefOr::T(Schema::Object(request)) =
            <CreateVideoRequest as utoipa::PartialSchema>::schema()
        else {
            panic!("CreateVideoRequest is an object");
        };
        let Some(RefOr::T(Schema::Object(text))) = request.properties.get(property) else {
            panic!("{property} is a property of its own");
        };
        let pattern = text.pattern.as_deref().expect("a pattern");
        let max_length = text.max_length.expect("a maximum length");
        (
            regex::Regex::new(pattern).expect("a valid pattern"),
            max_length,
        )
    }

    #[test]
    fn the_documented_title_is_what_the_gateway_accepts() {
        let (pattern, max_length) = documented_text("title");
        let documented = |title: &str| {
            pattern.is_match(title) && (1..=max_length).contains(&title.chars().count())
        };
        for (title, valid) in [
            ("Film", true),
            ("  Film \u{3000}", true),
            ("日本語のタイトル", true),
            ("", false),
            ("   ", false),
            ("\u{a0}\u{2003}\u{3000}", false),
            ("a\u{0}b", false),
            ("two\nlines", false),
            ("tab\there", false),
            (" Film \n", true),
            ("c1\u{85}", true),
            ("c\u{85}1", false),
            ("\u{1b}[31mred", false),
            ("evil\u{202E}4pm.exe", false),
            ("iso\u{2066}late", false),
        ] {
            assert_eq!(
                normalize_title(title).is_ok(),
                valid,
                "gateway on {title:?}"
            );
            assert_eq!(documented(title), valid, "document on {title:?}");
        }
        for (title, valid) in [
            ("é".repeat(200), true),
            ("é".repeat(201), false),
            (format!(" {} ", "é".repeat(199)), false),
        ] {
            assert_eq!(
                normalize_title(&title).is_ok(),
                valid,
                "gateway on {title:?}"
            );
            assert_eq!(documented(&title), valid, "document on {title:?}");
        }
    }

    #[test]
    fn the_documented_description_is_what_the_gateway_accepts() {
        let (pattern, max_length) = documented_text("description");
        let documented = |description: &str| {
            pattern.is_match(description) && description.chars().count() <= max_length
        };
        for (description, valid) in [
            ("", true),
            ("one\r\n\ttwo\nthree", true),
            ("   ", true),
            ("a\u{0}b", false),
            ("b\u{8}", false),
            ("\u{1b}[2J", false),
            ("evil\u{202E}", false),
        ] {
            let accepted = valid_description(description).is_ok();
            assert_eq!(accepted, valid, "gateway on {description:?}");
            assert_eq!(
                documented(description),
                valid,
                "document on {description:?}"
            );
        }
    }
}
