//! HTTP routing and the API's handlers: every request comes to
//! [`handle`], which sends `/standin/` to the test controls, answers 503
//! while the stand-in is down (or the `fail` control's status), serves `/version` and the health checks,
//! and routes resource paths by method to get, list, watch, create,
//! update (PUT), patch and delete.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::control;
use crate::reply::{not_found, ok_json, status};
use crate::resource::{merge_patch, Target};
use crate::select;
use crate::store::App;
use crate::watch::watch_response;

/// The routes: every request goes to [`handle`].
pub(crate) fn router(app: App) -> axum::Router {
    // Bodies up to 64 MiB (a real API server takes 3 MiB per object; the
    // bulk `/standin/load` control needs more).
    axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(app)
}

async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default();
    if let Some(control) = path.strip_prefix("/standin/") {
        return control::handle_control(&app, control, &query, &body);
    }
    if let Some(failure) = control::failure(&app) {
        return failure;
    }
    if let Some(response) = server_info(&path) {
        return response;
    }
    let Some(target) = Target::parse(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match (method, &target.name) {
        (Method::GET, None) if watch => watch_response(&app, &target, &query),
        (Method::GET, None) => {
            ok_json(StatusCode::OK, &select::list(&app.store(), &target, &query))
        }
        (Method::GET, Some(name)) => get(&app, &target, name),
        (Method::POST, None) => create(&app, &target, body),
        (Method::PUT, Some(name)) => answer(
            app.update(target.key(name), |_, _| body.clone().ok_or(()), true),
            StatusCode::OK,
        ),
        (Method::PATCH, Some(name)) => patch(&app, &target, name, &headers, body),
        (Method::DELETE, Some(name)) => answer(app.delete(target.key(name)), StatusCode::OK),
        (method, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

/// `/version` and the health checks.
fn server_info(path: &str) -> Option<Response> {
    match path {
        "/version" => Some(ok_json(
            StatusCode::OK,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-standin", "platform": "linux/amd64"}),
        )),
        "/healthz" | "/livez" | "/readyz" => Some((StatusCode::OK, "ok").into_response()),
        _ => None,
    }
}

/// The request's JSON body, if it has one.
#[allow(clippy::result_large_err)]
fn json_body(body: &[u8]) -> Result<Option<Value>, Response> {
    if body.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|error| {
        status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("invalid JSON body: {error}"),
        )
    })
}

/// The object, with `code`, or the error's answer.
fn answer(result: Result<Value, Response>, code: StatusCode) -> Response {
    match result {
        Ok(object) => ok_json(code, &object),
        Err(response) => response,
    }
}

fn get(app: &App, target: &Target, name: &str) -> Response {
    let store = app.store();
    match store.objects().get(&target.key(name)) {
        Some(object) => ok_json(StatusCode::OK, object),
        None => not_found(target.resource, name),
    }
}

fn create(app: &App, target: &Target, body: Option<Value>) -> Response {
    match body {
        Some(object) => answer(
            app.create(target.resource, target.namespace.clone(), object),
            StatusCode::CREATED,
        ),
        None => status(StatusCode::BAD_REQUEST, "BadRequest", "a body is required"),
    }
}

/// A JSON merge patch (strategic merge patches are taken as one; JSON
/// patches are not supported).
fn patch(
    app: &App,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("json-patch+json") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "JSON patch is not supported by the stand-in; use a merge patch",
        );
    }
    let Some(patch) = body else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "a body is required");
    };
    let merge = move |current: &Value, _| {
        let mut merged = current.clone();
        merge_patch(&mut merged, &patch);
        Ok(merged)
    };
    answer(app.update(target.key(name), merge, false), StatusCode::OK)
}
