//! The JSON API for videos.

use anyhow::anyhow;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use validator::{Validate, ValidationError};
use vod_contracts::api::{ErrorBody, VideoList, VideoView};
use vod_contracts::commands::{CreateVideo, VideoCreated};
use vod_contracts::VideoId;

use super::json::ValidJson;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::plain_text::{check_plain_text, Lines};
use crate::read_model;
use crate::state::AppState;
use crate::title::normalize_title;

const MAX_DESCRIPTION_CHARS: u64 = 5000;
const DEFAULT_PAGE_SIZE: i64 = 20;
const MAX_PAGE_SIZE: i64 = 100;

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
}

fn valid_title(title: &str) -> Result<(), ValidationError> {
    normalize_title(title)
        .map(|_| ())
        .map_err(|err| ValidationError::new("title").with_message(err.to_string().into()))
}

fn valid_description(description: &str) -> Result<(), ValidationError> {
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
        (status = 400, description = "`validation_failed` (`title` or `description` in `field`), `invalid_json`, `invalid_request`.", body = ErrorBody),
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
        })
        .await?;
    tracing::info!(%video_id, "video created");
    let view = read_model::find_video(
        &state.pool,
        caller.project_id,
        video_id,
        &state.config.holder_public_url,
    )
    .await?
    .ok_or_else(|| anyhow!("video {video_id} confirmed by the uploader but not found"))?;
    Ok((
        StatusCode::CREATED,
        [(LOCATION, format!("/v1/videos/{video_id}"))],
        Json(view),
    )
        .into_response())
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
    let view = read_model::find_video(
        &state.pool,
        caller.project_id,
        video_id,
        &state.config.holder_public_url,
    )
    .await?
    .ok_or(ApiError::VideoNotFound)?;
    Ok(Json(view).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many videos, 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// How many of the newest to skip (default 0).
    #[param(value_type = Option<i64>, minimum = 0)]
    offset: Option<String>,
}

/// `GET /v1/videos?limit=&offset=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/videos",
    operation_id = "list_videos",
    tag = "videos",
    summary = "List videos, newest first",
    params(ListQuery),
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
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    let limit = page_number(
        query.limit.as_deref(),
        "limit",
        DEFAULT_PAGE_SIZE,
        1,
        MAX_PAGE_SIZE,
    )?;
    let offset = page_number(query.offset.as_deref(), "offset", 0, 0, i64::MAX)?;
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

fn page_number(
    text: Option<&str>,
    field: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ApiError> {
    let Some(text) = text else {
        return Ok(default);
    };
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            ApiError::validation(
                field,
                format!("{field} must be an integer from {min} to {max}"),
            )
        })
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

    #[test]
    fn page_numbers_are_bounded() {
        assert_eq!(page_number(None, "limit", 20, 1, 100).ok(), Some(20));
        assert_eq!(
            page_number(Some("100"), "limit", 20, 1, 100).ok(),
            Some(100)
        );
        for bad in ["0", "101", "-1", "ten"] {
            assert_eq!(
                field_of(page_number(Some(bad), "limit", 20, 1, 100).expect_err(bad)),
                "limit"
            );
        }
    }
}
