//! The HTTP API, see `vod_contracts::fflow`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use tower_http::trace::TraceLayer;
use tracing::Instrument;
use vod_contracts::fflow::{ChunkWritten, CreateProcess, FinishProcess, ProcessCreated};
use vod_contracts::{SessionId, VideoId};
use vod_infra::readiness::{self, Readiness};

use crate::auth::{self, InternalToken};
use crate::error::ApiError;
use crate::session::check_writable;
use crate::session::{BeginEncode, ChunkWrite, Created, Session, SessionError};
use crate::state::AppState;
use crate::{encode, streaming, unpublish};

/// `/healthz` and `/readyz` are open (so is `/metrics`, merged beside them); every other route
/// is internal and takes the token (see [`auth`]).
pub fn router(state: Arc<AppState>) -> Router {
    let token = InternalToken::new(state.config.internal_token.clone());
    let internal = Router::new()
        .route("/processes", post(create_process))
        .route("/videos/{video_id}", delete(delete_video))
        .route("/{replica_id}/processes", post(create_process_on_replica))
        .route(
            "/{replica_id}/sessions/{session_id}/chunks",
            put(put_chunk).layer(DefaultBodyLimit::disable()),
        )
        .route("/{replica_id}/sessions/{session_id}/finish", post(finish))
        .route("/{replica_id}/sessions/{session_id}/source", get(source))
        .route(
            "/{replica_id}/sessions/{session_id}",
            get(session_exists).delete(delete_session),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(internal)
        .fallback(|| async { ApiError::RouteNotFound })
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.http.clone(),
            vod_infra::metrics::track_http,
        ))
        // Server errors are logged with their cause where they are answered, and a 507 (a
        // spool down to its reserve) is a refusal, not a failure.
        .layer(TraceLayer::new_for_http().on_failure(()))
        .with_state(state)
}

/// A span naming the upload, so every line logged while handling its request carries its
/// session, flow and video (a partial upload has no flow yet).
fn upload_span(session: &Session) -> tracing::Span {
    match session.target {
        Some(target) => tracing::info_span!(
            "upload",
            session_id = %session.session_id,
            flow_id = %target.flow_id,
            video_id = %target.video_id,
        ),
        None => tracing::info_span!("upload", session_id = %session.session_id),
    }
}

async fn healthz() -> Json<serde_json::Value> {
    // The spool and ffmpeg were checked at start; the replica serves only if both work.
    Json(serde_json::json!({ "status": "ok" }))
}

/// The broker (outcomes), holder (its FTP greeting, and now and then a login) and the spool
/// (writable).
async fn readyz(State(state): State<Arc<AppState>>) -> Readiness {
    let timeout = vod_infra::config::millis(state.config.readiness_timeout_ms);
    let broker = readiness::check("broker", timeout, state.publisher.is_connected());
    let holder = readiness::check(
        "holder",
        timeout,
        state.holder_check.reachable(&state.config.holder),
    );
    let spool = readiness::check("spool", timeout, async {
        check_writable(&state.spool).await.is_ok()
    });
    let (broker, holder, spool) = tokio::join!(broker, holder, spool);
    Readiness::of(vec![broker, holder, spool])
}

async fn create_process(
    State(state): State<Arc<AppState>>,
    body: Result<Json<CreateProcess>, JsonRejection>,
) -> Result<(StatusCode, Json<ProcessCreated>), ApiError> {
    let Json(request) =
        body.map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))?;
    let (status, session) = match state.sessions.create(&request).await? {
        Created::New(session) => (StatusCode::CREATED, session),
        Created::Existing(session) => (StatusCode::OK, session),
    };
    tracing::info!(
        session_id = %session.session_id,
        partial = session.target.is_none(),
        total_bytes = request.total_bytes,
        created = status == StatusCode::CREATED,
        "process created"
    );
    let created = ProcessCreated {
        address: state.address.clone(),
        replica_id: state.config.replica_id.clone(),
    };
    Ok((status, Json(created)))
}

async fn create_process_on_replica(
    State(state): State<Arc<AppState>>,
    Path(replica_id): Path<String>,
    body: Result<Json<CreateProcess>, JsonRejection>,
) -> Result<(StatusCode, Json<ProcessCreated>), ApiError> {
    check_replica(&state, &replica_id)?;
    create_process(State(state), body).await
}

#[derive(Deserialize)]
struct ChunkQuery {
    offset: u64,
    /// The writer's fencing token; callers that send none are epoch 0.
    #[serde(default)]
    epoch: u64,
}

async fn put_chunk(
    State(state): State<Arc<AppState>>,
    Path((replica_id, session_id)): Path<(String, String)>,
    query: Result<Query<ChunkQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ChunkWritten>, ApiError> {
    let session = find_session(&state, &replica_id, &session_id)?;
    let Query(ChunkQuery { offset, epoch }) = query.map_err(|_| {
        ApiError::InvalidRequest(
            "the query must carry offset, a byte count, and may carry epoch, a count".to_owned(),
        )
    })?;
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let span = upload_span(&session);
    let chunk = ChunkWrite {
        offset,
        epoch,
        declared_len,
        max_chunk_bytes: state.config.max_chunk_bytes,
    };
    write_chunk(state, session, chunk, body)
        .instrument(span)
        .await
}

async fn write_chunk(
    state: Arc<AppState>,
    session: Arc<Session>,
    chunk: ChunkWrite,
    body: Body,
) -> Result<Json<ChunkWritten>, ApiError> {
    let metrics = state.metrics.clone();
    let body = body.into_data_stream().map(move |frame| {
        if let Ok(bytes) = &frame {
            metrics.spooled(bytes.len());
        }
        frame
    });
    let written = session.write_chunk(chunk, body).await;
    let ChunkWrite { offset, epoch, .. } = chunk;
    match written {
        Ok(received_bytes) => {
            tracing::debug!(
                session_id = %session.session_id,
                offset,
                received_bytes,
                "chunk written"
            );
            if session
                .total_bytes()
                .await
                .is_some_and(|total| received_bytes < total)
            {
                state
                    .tracker
                    .spawn(streaming::consider(state.encode.clone(), session));
            }
            Ok(Json(ChunkWritten { received_bytes }))
        }
        Err(err) => {
            tracing::warn!(session_id = %session.session_id, offset, epoch, error = %err, "chunk rejected");
            let err = ApiError::from(err);
            state.metrics.chunk_refused(&err.code());
            Err(err)
        }
    }
}

async fn finish(
    State(state): State<Arc<AppState>>,
    Path((replica_id, session_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let session = find_session(&state, &replica_id, &session_id)?;
    let span = upload_span(&session);
    finish_session(state, session, body).instrument(span).await
}

async fn finish_session(
    state: Arc<AppState>,
    session: Arc<Session>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    // An empty body finishes a session whose length was given at creation.
    let request: Option<FinishProcess> = if body.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&body).map_err(|err| {
            ApiError::InvalidRequest(format!("the finish request is not valid: {err}"))
        })?)
    };
    // Parts are read only from this replica or a configured peer: checked before any change.
    if let Some(part) = request
        .as_ref()
        .and_then(|request| state.encode.parts.first_unknown(&request.parts))
    {
        return Err(ApiError::UnknownReplica {
            replica_id: part.replica_id.clone(),
            session_id: part.session_id,
        });
    }
    let parts = match request {
        Some(request) => {
            session.set_total_bytes(request.total_bytes).await?;
            request.parts
        }
        None => Vec::new(),
    };
    if !parts.is_empty() {
        if session.begin_join(parts).await? {
            tracing::info!(session_id = %session.session_id, "upload complete, joining its parts");
            state
                .tracker
                .spawn(encode::run(state.encode.clone(), session));
        }
        return Ok(StatusCode::ACCEPTED);
    }
    match session.begin_encode().await? {
        BeginEncode::Start => {
            tracing::info!(session_id = %session.session_id, "upload complete, encode queued");
            state
                .tracker
                .spawn(encode::run(state.encode.clone(), session));
        }
        BeginEncode::StreamingRunning => tracing::info!(
            session_id = %session.session_id,
            "upload complete, the streaming encode finishes it"
        ),
        BeginEncode::AlreadyStarted => {}
    }
    Ok(StatusCode::ACCEPTED)
}

/// The bytes received so far, for the replica joining this session into a final upload.
async fn source(
    State(state): State<Arc<AppState>>,
    Path((replica_id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let session = find_session(&state, &replica_id, &session_id)?;
    let file = tokio::fs::File::open(session.source_path())
        .await
        .map_err(|err| ApiError::Session(SessionError::Unexpected(err.into())))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// 204 while the replica holds the session, 404 once it does not (deleted, or lost with a
/// spool that did not survive a restart).
async fn session_exists(
    State(state): State<Arc<AppState>>,
    Path((replica_id, session_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    find_session(&state, &replica_id, &session_id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_session(
    State(state): State<Arc<AppState>>,
    Path((replica_id, session_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    check_replica(&state, &replica_id)?;
    let Ok(session_id) = session_id.parse::<SessionId>() else {
        return Ok(StatusCode::NO_CONTENT);
    };
    if let Some(session) = state.sessions.remove(session_id) {
        // An encode still writing removes what is left when it stops.
        if let Err(err) = session.remove_spool().await {
            tracing::debug!(session_id = %session_id, error = %err, "spool not removed yet");
        }
        tracing::info!(session_id = %session_id, "session deleted");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes everything published for a video from holder; any replica does it.
async fn delete_video(
    State(state): State<Arc<AppState>>,
    Path(video_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let video_id = video_id
        .parse::<VideoId>()
        .map_err(|_| ApiError::InvalidVideoId(video_id))?;
    match unpublish::remove_video(&state.config.holder, video_id).await {
        Ok(removed) => {
            tracing::info!(
                video_id = %video_id,
                files = removed.files,
                directories = removed.directories,
                "video removed from holder"
            );
            Ok(StatusCode::NO_CONTENT)
        }
        Err(err) => {
            tracing::warn!(video_id = %video_id, error = %err, "video not removed from holder");
            Err(err.into())
        }
    }
}

fn check_replica(state: &AppState, replica_id: &str) -> Result<(), ApiError> {
    if replica_id == state.config.replica_id {
        Ok(())
    } else {
        Err(ApiError::WrongReplica {
            own: state.config.replica_id.clone(),
            asked: replica_id.to_owned(),
        })
    }
}

fn find_session(
    state: &AppState,
    replica_id: &str,
    session_id: &str,
) -> Result<Arc<Session>, ApiError> {
    check_replica(state, replica_id)?;
    let id = session_id
        .parse::<SessionId>()
        .map_err(|_| ApiError::InvalidRequest(format!("{session_id:?} is not a session id")))?;
    state
        .sessions
        .get(id)
        .ok_or(ApiError::Session(SessionError::NotFound(id)))
}
