//! The OpenAPI document at `/openapi.json`: valid OpenAPI, and a true list of the routes the
//! gateway serves, checked by asking the running gateway itself.

mod support;

use std::collections::BTreeSet;

use gateway::ApiError;
use oas3::spec::{ObjectOrReference, ParameterIn};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use support::{header, http, Gateway, TestEnv};
use vod_contracts::{DirectUploadId, ProjectId, SessionId, VideoId};

/// Every method a route could answer; axum has no route for `CONNECT`.
const METHODS: [Method; 8] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
];

/// Paths a service like this one might serve besides the documented ones, among them what
/// every service is expected to grow (metrics, readiness). A route added to the router
/// without its `#[utoipa::path]` shows up here as served but undocumented.
const UNDOCUMENTED_PATHS: [&str; 16] = [
    "/",
    "/metrics",
    "/readyz",
    "/livez",
    "/health",
    "/status",
    "/version",
    "/openapi.yaml",
    "/docs/",
    "/v1",
    "/v1/uploads/",
    "/v1/videos/",
    "/v1/uploads/{id}/parts",
    "/v1/videos/{id}/flows",
    "/v1/flows",
    "/v1/flows/{id}",
];

struct Served {
    gateway: Gateway,
    document: Value,
    upload_id: SessionId,
    video_id: VideoId,
    direct_upload_id: DirectUploadId,
    webhook_id: uuid::Uuid,
    admin_token: String,
}

/// A gateway with one upload (and its video) in its database, so that every documented
/// route has something to answer about; no uploader is needed, as every request the probe
/// sends is refused or answered before one would be asked.
async fn served() -> (TestEnv, Served) {
    let env = TestEnv::new().await;
    let (video_id, upload_id) = env.insert_upload("OPEN", 0, 10, None).await;
    let direct_upload_id = env
        .insert_direct_upload(DIRECT_TOKEN, video_id, upload_id)
        .await;
    env.db
        .execute(
            "INSERT INTO event (id, project_id, type, object_type, object_id, data) \
             VALUES ($1, $2, 'video.created', 'video', $3, '{}')",
            &[
                &EVENT_ID,
                &ProjectId::DEFAULT.0,
                &video_id.0 as &(dyn tokio_postgres::types::ToSql + Sync),
            ],
        )
        .await
        .expect("an event");
    let webhook_id = uuid::Uuid::now_v7();
    env.db
        .execute(
            "INSERT INTO webhook_endpoint (id, project_id, url, events) \
             VALUES ($1, $2, 'https://example.com/hook', '{*}')",
            &[&webhook_id, &ProjectId::DEFAULT.0],
        )
        .await
        .expect("a webhook endpoint");
    let config = env.config();
    let admin_token = config.admin_token.expose_secret().to_owned();
    let gateway = Gateway::spawn(config).await;
    let response = http()
        .get(gateway.url("/openapi.json"))
        .send()
        .await
        .expect("get the document");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let document = response.json().await.expect("json document");
    let served = Served {
        gateway,
        document,
        upload_id,
        video_id,
        direct_upload_id,
        webhook_id,
        admin_token,
    };
    (env, served)
}

fn parse(document: &Value) -> oas3::Spec {
    oas3::from_json(document.to_string()).expect("the document is OpenAPI")
}

/// Every (method, path template) of the document.
fn documented_operations(spec: &oas3::Spec) -> BTreeSet<(String, String)> {
    spec.operations()
        .map(|(path, method, _)| (method.to_string(), path))
        .collect()
}

#[tokio::test]
async fn the_document_is_valid_openapi() {
    let (_env, served) = served().await;
    let spec = parse(&served.document);
    let version = spec
        .validate_version()
        .expect("a supported OpenAPI version");
    assert_eq!(version.major, 3);
    assert!(!spec.info.title.is_empty());

    let mut operation_ids = BTreeSet::new();
    for (path, method, operation) in spec.operations() {
        let at = format!("{method} {path}");
        let id = operation.operation_id.clone().expect(&at);
        assert!(operation_ids.insert(id), "{at}: operationId used twice");
        let parameters = operation.parameters(&spec).expect(&at);
        for name in path_parameters(&path) {
            let declared = parameters.iter().any(|parameter| {
                parameter.name == name
                    && parameter.location == ParameterIn::Path
                    && parameter.required == Some(true)
            });
            assert!(declared, "{at}: path parameter {name} not declared");
        }
        operation.request_body(&spec).expect(&at);
        let responses = operation.responses.as_ref().expect(&at);
        assert!(!responses.is_empty(), "{at}: no responses");
        for (status, response) in responses {
            if let ObjectOrReference::Ref { .. } = response {
                response.resolve(&spec).expect(&at);
            }
            let status: u16 = status.parse().expect(&at);
            assert!((100..600).contains(&status), "{at}: status {status}");
        }
    }

    let schemas = &served.document["components"]["schemas"];
    for reference in references(&served.document) {
        let name = reference
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {reference}"));
        assert!(
            schemas.get(name).is_some(),
            "$ref {reference} resolves to nothing"
        );
    }
}

#[tokio::test]
async fn the_document_lists_the_stable_error_codes_and_the_json_dtos() {
    let (_env, served) = served().await;
    let schemas = &served.document["components"]["schemas"];
    let codes: Vec<&str> = schemas["ErrorBody"]["properties"]["code"]["enum"]
        .as_array()
        .expect("ErrorBody.code lists its values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(codes, ApiError::CODES);
    for required in ["code", "message"] {
        assert!(schemas["ErrorBody"]["required"]
            .as_array()
            .expect("ErrorBody.required")
            .contains(&Value::from(required)));
    }
    for dto in [
        "VideoView",
        "FlowView",
        "VideoList",
        "Playback",
        "VideoStatus",
        "FlowStatus",
        "CreateVideoRequest",
    ] {
        assert!(schemas.get(dto).is_some(), "no schema for {dto}");
    }
    let statuses: Vec<&str> = schemas["VideoStatus"]["enum"]
        .as_array()
        .expect("VideoStatus lists its values")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        statuses,
        ["CREATED", "UPLOADING", "PROCESSING", "READY", "FAILED"]
    );
}

#[tokio::test]
async fn the_document_lists_every_route_the_gateway_serves_and_nothing_else() {
    let (_env, served) = served().await;
    let spec = parse(&served.document);
    let documented = documented_operations(&spec);
    assert!(!documented.is_empty());
    let paths: BTreeSet<&str> = documented
        .iter()
        .map(|(_, path)| path.as_str())
        .chain(UNDOCUMENTED_PATHS)
        .collect();

    let client = http();
    let admin = reqwest::Client::new();
    let mut wrong = Vec::new();
    for path in paths {
        let url = served.gateway.url(&concrete_path(path, &served));
        // Each path is probed with its credential, so that what answers is the route.
        let is_admin = path.starts_with("/v1/admin/");
        for method in METHODS {
            let expected = documented.contains(&(method.to_string(), path.to_owned()))
                // HTTP serves HEAD wherever it serves GET, and so does axum.
                || (method == Method::HEAD
                    && documented.contains(&(Method::GET.to_string(), path.to_owned())));
            // Deleting a video (or cancelling a direct upload) that exists asks the uploader,
            // which this gateway lacks: the route is probed with one that does not, answered
            // `video_not_found` (`direct_upload_not_found`) at once.
            let url = if method == Method::DELETE && path == "/v1/videos/{id}" {
                served
                    .gateway
                    .url(&format!("/v1/videos/{}", VideoId::new()))
            } else if method == Method::DELETE && path == "/v1/direct-uploads/{id}" {
                served
                    .gateway
                    .url(&format!("/v1/direct-uploads/{}", DirectUploadId::new()))
            } else if path.starts_with("/v1/webhooks/{id}")
                && !matches!(method, Method::GET | Method::HEAD)
            {
                // A change to an endpoint is a command: probed with one that does not exist,
                // answered `webhook_not_found` without asking the uploader.
                served.gateway.url(&path.replace("{id}", "no-such-webhook"))
            } else {
                url.clone()
            };
            let request = if is_admin {
                admin
                    .request(method.clone(), &url)
                    .bearer_auth(&served.admin_token)
            } else {
                client.request(method.clone(), &url)
            };
            let response = request.send().await.expect("probe");
            let status = response.status();
            let is_head = method == Method::HEAD;
            let routed = match status {
                StatusCode::METHOD_NOT_ALLOWED => false,
                // Every documented route finds what it is asked about (HEAD has no body).
                StatusCode::NOT_FOUND if is_head => false,
                StatusCode::NOT_FOUND => !is_route_not_found(response).await,
                _ => true,
            };
            if routed != expected {
                let what = if expected {
                    "documented but not served"
                } else {
                    "served but not documented"
                };
                wrong.push(format!("{method} {path} ({status}): {what}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_refused_with_405_allow_and_a_json_code() {
    let (_env, served) = served().await;
    let response = http()
        .put(served.gateway.url("/v1/videos"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = header(&response, "allow").unwrap_or_default().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn the_docs_page_loads_everything_from_the_gateway() {
    let (_env, served) = served().await;
    let client = http();
    let response = client
        .get(served.gateway.url("/docs"))
        .send()
        .await
        .expect("docs page");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, "content-type").is_some_and(|value| value.starts_with("text/html")));
    let page = response.text().await.expect("page");
    assert!(page.contains(r#"url: "openapi.json""#), "{page}");
    let files = ["docs/swagger-ui.css", "docs/swagger-ui-bundle.js"];
    for file in files {
        assert!(
            page.contains(&format!(r#""{file}""#)),
            "{file} not in {page}"
        );
        let response = client
            .get(served.gateway.url(&format!("/{file}")))
            .send()
            .await
            .expect("file");
        assert_eq!(response.status(), StatusCode::OK, "{file}");
        let media_type = header(&response, "content-type").unwrap_or_default();
        assert!(
            media_type.starts_with("text/css") || media_type.contains("javascript"),
            "{file}: {media_type}"
        );
        assert!(response.bytes().await.expect("body").len() > 1000, "{file}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads something from elsewhere: {page}"
    );
}

/// The fallback's answer: a 404 with code `not_found`, unlike a route's own 404s.
async fn is_route_not_found(response: reqwest::Response) -> bool {
    let body: Value = response.json().await.unwrap_or_default();
    body["code"] == "not_found"
}

/// The event of the probed video.
const EVENT_ID: &str = "evt_00000000000000000000000000000001";

/// The token of the URL of a direct upload that made the probed upload.
const DIRECT_TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// A request path for a path template, naming things that exist.
fn concrete_path(template: &str, served: &Served) -> String {
    let value = |name: &str| match (template, name) {
        (path, "id") if path.starts_with("/v1/uploads/") => served.upload_id.to_string(),
        (path, "id") if path.starts_with("/v1/videos/") || path.starts_with("/v1/flows/") => {
            served.video_id.to_string()
        }
        ("/docs/{file}", "file") => "swagger-ui.css".to_owned(),
        (path, "token") if path.starts_with("/v1/direct/") => DIRECT_TOKEN.to_owned(),
        (path, "upload_id") if path.starts_with("/v1/direct/") => served.upload_id.to_string(),
        (path, "id") if path.starts_with("/v1/direct-uploads/") => {
            served.direct_upload_id.to_string()
        }
        // No such key: its route answers `key_not_found` without asking the uploader.
        (path, "id") if path.starts_with("/v1/keys/") => "no-such-key".to_owned(),
        // Sending an event again is a command: probed with an event that does not exist,
        // answered `event_not_found` without asking the uploader.
        ("/v1/events/{id}/redeliver", "id") => format!("evt_{}", "f".repeat(32)),
        (path, "id") if path.starts_with("/v1/events/") => EVENT_ID.to_owned(),
        (path, "id") if path.starts_with("/v1/webhooks/") => served.webhook_id.to_string(),
        (path, "id") if path.starts_with("/v1/admin/projects/") => ProjectId::DEFAULT.to_string(),
        _ => panic!("no value to probe {template} with for {{{name}}}: add one"),
    };
    let mut path = template.to_owned();
    for name in path_parameters(template) {
        path = path.replace(&format!("{{{name}}}"), &value(&name));
    }
    path
}

fn path_parameters(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

/// Every `$ref` anywhere in the document.
fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(reference)) = object.get("$ref") {
                    found.push(reference.clone());
                }
                pending.extend(object.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    found
}
