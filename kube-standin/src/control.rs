//! The test controls, `POST /standin/<control>` (never used by the
//! agent): cut the watches, compact the history, go down (503) or fail
//! with any status for a while, store an object as it is (`raw`) or
//! delete one (both also while down), load
//! manifests, tell the revision; and loading manifests, which `--load`
//! shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::reply::{ok_json, status};
use crate::resource::{object_name, object_namespace, Resource};
use crate::store::{App, Failure};

pub(crate) fn handle_control(
    app: &App,
    control: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    match control {
        "load" => {
            let text = String::from_utf8_lossy(body);
            match load_text(app, &text) {
                Ok(count) => (StatusCode::OK, format!("loaded {count} objects\n")).into_response(),
                Err(error) => (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
            }
        }
        "drop-watches" => {
            cut_watches(app);
            (StatusCode::OK, "watches cut\n").into_response()
        }
        "compact" => {
            let mut store = app.store();
            store.compact();
            (
                StatusCode::OK,
                format!("compacted at {}\n", store.revision()),
            )
                .into_response()
        }
        "down" => {
            let seconds = seconds_of(query);
            fail_for(app, StatusCode::SERVICE_UNAVAILABLE, seconds);
            (StatusCode::OK, format!("down for {seconds} s\n")).into_response()
        }
        "fail" => {
            let code = query
                .get("status")
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|code| (400..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok());
            let Some(code) = code else {
                return (
                    StatusCode::BAD_REQUEST,
                    "fail: status must be an error code (400-599)\n",
                )
                    .into_response();
            };
            let seconds = seconds_of(query);
            fail_for(app, code, seconds);
            (
                StatusCode::OK,
                format!("failing with {} for {seconds} s\n", code.as_u16()),
            )
                .into_response()
        }
        "raw" => raw(app, body),
        "delete" => delete(app, query),
        "revision" => {
            let store = app.store();
            (StatusCode::OK, format!("{}\n", store.revision())).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "unknown control\n").into_response(),
    }
}

/// Cuts every open watch stream.
fn cut_watches(app: &App) {
    app.cuts.send_modify(|generation| *generation += 1);
}

/// The `seconds` of a control's query (default 10).
fn seconds_of(query: &HashMap<String, String>) -> u64 {
    query
        .get("seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Makes every API request fail with `code` for `seconds`, cutting the
/// open watches first (as a restarting or failing API server does).
fn fail_for(app: &App, code: StatusCode, seconds: u64) {
    *app.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(Failure {
        until: Instant::now() + Duration::from_secs(seconds),
        code,
    });
    cut_watches(app);
}

/// The answer every API request gets while the `down` or `fail` control's
/// time runs: a `Status` with the code's reason (once the time is over,
/// it is forgotten).
pub(crate) fn failure(app: &App) -> Option<Response> {
    let mut failing = app.failing.lock().unwrap_or_else(|e| e.into_inner());
    match *failing {
        Some(Failure { until, code }) if Instant::now() < until => {
            let reason = match code.as_u16() {
                500 => "InternalError",
                503 => "ServiceUnavailable",
                504 => "Timeout",
                429 => "TooManyRequests",
                _ => "Unknown",
            };
            Some(status(
                code,
                reason,
                format!("the stand-in answers {} (test control)", code.as_u16()),
            ))
        }
        Some(_) => {
            *failing = None;
            None
        }
        None => None,
    }
}

/// The `raw` control: stores the JSON object of the body as it is (its
/// `kind` says where), without checking that it decodes as its type, so
/// that lists and watches serve an object a real API server would refuse.
fn raw(app: &App, body: &[u8]) -> Response {
    let object: Value = match serde_json::from_slice(body) {
        Ok(object) => object,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("raw: not JSON: {error}\n")).into_response()
        }
    };
    let Some(resource) = object["kind"].as_str().and_then(Resource::from_kind) else {
        return (
            StatusCode::BAD_REQUEST,
            "raw: the object's kind is not one the stand-in serves\n",
        )
            .into_response();
    };
    match app.store_raw(resource, object) {
        Ok(stored) => ok_json(StatusCode::OK, &stored),
        Err(response) => response,
    }
}

/// The `delete` control (`?kind=Service&namespace=default&name=web`):
/// deletes the object even while the API is down or failing, as changes
/// made through another API server instance.
fn delete(app: &App, query: &HashMap<String, String>) -> Response {
    let field = |name: &str| query.get(name).cloned().unwrap_or_default();
    let Some(resource) = Resource::from_kind(&field("kind")) else {
        return (
            StatusCode::BAD_REQUEST,
            "delete: kind is not one the stand-in serves\n",
        )
            .into_response();
    };
    let namespace = if resource.namespaced() {
        Some(field("namespace"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into())
    } else {
        String::new()
    };
    match app.delete((resource, namespace, field("name"))) {
        Ok(deleted) => ok_json(StatusCode::OK, &deleted),
        Err(response) => response,
    }
}

/// Creates every object of the manifests at `path` (see [`load_text`]).
pub(crate) fn load(app: &App, path: &PathBuf) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    load_text(app, &text).map_err(|error| format!("{}: {error}", path.display()))
}

/// Creates every object of a multi-document YAML text (kinds the stand-in
/// does not serve are skipped); stops at the first that cannot be created.
fn load_text(app: &App, text: &str) -> Result<usize, String> {
    use serde::Deserialize;
    let mut count = 0;
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| format!("document {index}: {e}"))?;
        let Some(resource) = value["kind"].as_str().and_then(Resource::from_kind) else {
            continue;
        };
        let name = format!("{}/{}", object_namespace(&value), object_name(&value));
        app.create(resource, None, value).map_err(|_| {
            format!(
                "document {index}: could not create {} {name} (it exists, or has no name)",
                resource.kind()
            )
        })?;
        count += 1;
    }
    Ok(count)
}
