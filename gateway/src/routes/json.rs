//! JSON request bodies: parsed, checked with their `validator` rules, and every failure
//! answered with its stable code (the offending field named where there is one).

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use validator::{Validate, ValidationErrors};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body that parsed and passed its validation.
pub struct ValidJson<T>(pub T);

impl<T> FromRequest<AppState> for ValidJson<T>
where
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let max_json_bytes = state.config.max_json_bytes;
        let (parts, body) = request.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| {
                json_rejection(JsonRejection::BytesRejection(rejection), max_json_bytes)
            })?;
        // Every body is an object: serde would also take a struct from an array.
        let is_object = bytes.trim_ascii_start().first() == Some(&b'{');
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let Json(value) = Json::<T>::from_request(request, state)
            .await
            .map_err(|rejection| json_rejection(rejection, max_json_bytes))?;
        if !is_object {
            return Err(ApiError::InvalidJson(
                "the body must be a JSON object".to_owned(),
            ));
        }
        value.validate().map_err(first_validation_error)?;
        Ok(ValidJson(value))
    }
}

pub(crate) fn json_rejection(rejection: JsonRejection, max_json_bytes: usize) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::UnsupportedMediaType("the body must be application/json".to_owned())
        }
        JsonRejection::BytesRejection(_) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge {
                max: max_json_bytes,
            }
        }
        JsonRejection::JsonDataError(ref error) => match wrong_field(error) {
            Some(field) => {
                let message = format!("{field} has the wrong type: {}", rejection.body_text());
                ApiError::validation(field, message)
            }
            None => ApiError::InvalidJson(rejection.body_text()),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::InvalidJson(rejection.body_text()),
        other => ApiError::InvalidRequest(other.body_text()),
    }
}

/// The field whose value had the wrong type, when the JSON itself was well formed.
fn wrong_field(error: &axum::extract::rejection::JsonDataError) -> Option<String> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(error) = cause.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let path = error.path().to_string();
            return (path != ".").then_some(path);
        }
        source = cause.source();
    }
    None
}

/// The first failing field, in name order so that the answer is stable.
pub(crate) fn first_validation_error(errors: ValidationErrors) -> ApiError {
    let field_errors = errors.field_errors();
    let mut fields: Vec<_> = field_errors.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    match fields.first() {
        Some((field, errors)) => {
            let message = errors
                .first()
                .and_then(|error| error.message.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| format!("{field} is invalid"));
            ApiError::validation(field.to_string(), message)
        }
        None => ApiError::InvalidRequest("the request is invalid".to_owned()),
    }
}

/// A field that may be left out but, when sent, is not `null`: the document calls none of
/// them nullable (`#[serde(default, deserialize_with = "not_null")]`).
pub(crate) fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
