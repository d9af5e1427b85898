//! Who is calling. Every `/v1` route but `OPTIONS` takes `Authorization: Bearer <key>`; the
//! key names one project, and every read and command of the request is for that project only.
//! `/v1/admin/...` takes the operator's admin token instead. [`authenticate`] runs before
//! routing and decides by path and method alone, so a route added under `/v1` is closed until
//! a key opens it; handlers take the [`Caller`] (or [`Admin`]) it left, and a handler that
//! takes one on a route it did not authenticate answers 401. A direct upload's URL
//! (`/v1/direct/<token>/...`) takes no key: its token is the credential (`direct`).

pub mod cache;
mod direct;
pub mod key;
pub mod store;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use vod_contracts::access::Scope;
use vod_contracts::commands::TouchApiKeys;
use vod_contracts::{ApiKeyId, ProjectId};

pub use cache::KeyCache;
use key::PresentedKey;

use crate::direct_uploads::URL_PREFIX as DIRECT_URL_PREFIX;
use crate::error::ApiError;
use crate::state::AppState;

/// The path under which the admin token is the credential.
pub const ADMIN_PREFIX: &str = "/v1/admin";

/// The project a request acts for, from its key.
#[derive(Clone, Debug)]
pub struct Caller {
    pub project_id: ProjectId,
}

/// A request made with the admin token.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

/// What a request must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    Nothing,
    Admin,
    Key(Scope),
    /// The token in the path of a direct upload's URL (`auth::direct`).
    DirectUploadUrl,
}

/// Decided by path and method only, before routing.
fn required(method: &Method, path: &str) -> Credential {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if path.starts_with(DIRECT_URL_PREFIX) && path[DIRECT_URL_PREFIX.len()..].starts_with('/') {
        Credential::DirectUploadUrl
    } else if !under("/v1") || method == Method::OPTIONS {
        Credential::Nothing
    } else if under(ADMIN_PREFIX) {
        Credential::Admin
    } else if method == Method::GET || method == Method::HEAD {
        Credential::Key(Scope::Read)
    } else {
        Credential::Key(Scope::Write)
    }
}

/// The middleware: checks the credential the route needs and leaves what it proved in the
/// request's extensions.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    match required(request.method(), request.uri().path()) {
        Credential::Nothing => {}
        Credential::Admin => {
            if let Err(error) = check_admin(&state, request.headers()) {
                return error.into_response();
            }
            request.extensions_mut().insert(Admin);
        }
        Credential::DirectUploadUrl => return direct::authorize(&state, request, next).await,
        Credential::Key(scope) => match verify_key(&state, request.headers(), scope).await {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
            }
            Err(error) => return error.into_response(),
        },
    }
    next.run(request).await
}

/// The token after `Bearer`, if the header is of that form.
fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or(ApiError::Unauthorized(
        "an Authorization: Bearer header is required",
    ))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is malformed"))?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized(
        "the Authorization header is malformed",
    ))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "only the Bearer scheme is accepted in Authorization",
        ));
    }
    Ok(token.trim())
}

fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers)?;
    let expected = key::sha256(state.config.admin_token.expose_secret().as_bytes());
    let presented = key::sha256(token.as_bytes());
    if bool::from(presented.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("the admin token is not valid"))
    }
}

async fn verify_key(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Caller, ApiError> {
    let presented = PresentedKey::parse(bearer(headers)?)
        .ok_or(ApiError::Unauthorized("the API key is not valid"))?;
    let stored = match state.keys.get(presented.id) {
        Some(stored) => stored,
        None => {
            let stored = store::find_key(&state.pool, presented.id)
                .await?
                .ok_or(ApiError::Unauthorized("the API key is not valid"))?;
            state.keys.insert(presented.id, stored.clone());
            if presented.matches(&stored.secret_sha256) && !stored.revoked {
                record_use(state, presented.id);
            }
            stored
        }
    };
    if !presented.matches(&stored.secret_sha256) {
        return Err(ApiError::Unauthorized("the API key is not valid"));
    }
    if stored.revoked {
        return Err(ApiError::Unauthorized("the API key was revoked"));
    }
    if !stored.scopes.contains(&scope) {
        return Err(ApiError::Forbidden(format!(
            "the API key lacks the {} scope",
            scope.as_str()
        )));
    }
    Ok(Caller {
        project_id: stored.project_id,
    })
}

/// Records that the key was verified against the database, at most once per cache time, in
/// the background: the request does not wait for it, and losing it loses only a timestamp.
fn record_use(state: &AppState, key_id: ApiKeyId) {
    let uploader = state.uploader.clone();
    tokio::spawn(async move {
        let touch = TouchApiKeys {
            key_ids: vec![key_id],
            used_at: Utc::now(),
        };
        if let Err(error) = uploader.call(&touch).await {
            tracing::debug!(%key_id, error = %error, "the key's last use was not recorded");
        }
    });
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized("an API key is required"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Admin>()
            .copied()
            .ok_or(ApiError::Unauthorized("the admin token is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_route_but_options_needs_a_credential() {
        let cases = [
            (Method::GET, "/healthz", Credential::Nothing),
            (Method::GET, "/openapi.json", Credential::Nothing),
            (Method::GET, "/v1x/videos", Credential::Nothing),
            (Method::OPTIONS, "/v1/uploads", Credential::Nothing),
            (Method::GET, "/v1/videos", Credential::Key(Scope::Read)),
            (Method::HEAD, "/v1/uploads/x", Credential::Key(Scope::Read)),
            (
                Method::PATCH,
                "/v1/uploads/x",
                Credential::Key(Scope::Write),
            ),
            (Method::POST, "/v1", Credential::Key(Scope::Write)),
            (Method::PUT, "/v1/anything", Credential::Key(Scope::Write)),
            (Method::GET, "/v1/admin", Credential::Admin),
            (Method::POST, "/v1/admin/projects", Credential::Admin),
            (
                Method::GET,
                "/v1/administrators",
                Credential::Key(Scope::Read),
            ),
            (Method::POST, "/v1/direct/t", Credential::DirectUploadUrl),
            (Method::OPTIONS, "/v1/direct/t", Credential::DirectUploadUrl),
            (Method::PATCH, "/v1/direct/t/u", Credential::DirectUploadUrl),
            (Method::POST, "/v1/direct", Credential::Key(Scope::Write)),
            (Method::POST, "/v1/directory", Credential::Key(Scope::Write)),
            (
                Method::POST,
                "/v1/direct-uploads",
                Credential::Key(Scope::Write),
            ),
        ];
        for (method, path, credential) in cases {
            assert_eq!(required(&method, path), credential, "{method} {path}");
        }
    }
}
