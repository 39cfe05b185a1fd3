//! The test controls, `POST /standin/<control>` (never used by the
//! agent): cut the watches, compact the history, go down for a while,
//! load manifests, tell the revision; and loading manifests, which
//! `--load` shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::resource::{object_name, object_namespace, Resource};
use crate::store::App;

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
            let seconds: u64 = query
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(10);
            *app.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + Duration::from_secs(seconds));
            cut_watches(app);
            (StatusCode::OK, format!("down for {seconds} s\n")).into_response()
        }
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

/// Whether the `down` control's time is running (once it is over, it is
/// forgotten).
pub(crate) fn is_down(app: &App) -> bool {
    let mut down = app.down_until.lock().unwrap_or_else(|e| e.into_inner());
    match *down {
        Some(until) if Instant::now() < until => true,
        Some(_) => {
            *down = None;
            false
        }
        None => false,
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
