//! `kube-standin`: a stand-in for the Kubernetes API server, for the
//! agent's tests. **It is not an API server**: no Kubernetes API server can
//! be installed on the build machines (none is packaged in the reachable
//! registries), so the tests talk to this instead, through the real
//! kube-rs client, exactly as the agent does in a cluster.
//!
//! What it serves, over plain HTTP with JSON, at the real paths:
//!
//! - core/v1 `services`, `endpoints` (namespaced) and `nodes`
//!   (cluster-scoped), discovery.k8s.io/v1 `endpointslices` and
//!   events.k8s.io/v1 `events` (namespaced);
//!   all-namespace collections too (`/api/v1/services`, ...);
//! - get, list (`fieldSelector` on `metadata.name` / `metadata.namespace`,
//!   `labelSelector` with `k=v`, `k!=v`, `k` and `!k`; pages of `limit`
//!   objects with a `continue` token, as kube-rs's watcher asks for: 500
//!   a page; unlike a real API server, a later page shows the objects as
//!   they are when it is asked for, not as they were at the first), create
//!   (201, 409 AlreadyExists), update (PUT, 409 Conflict on a stale
//!   `resourceVersion`), patch (JSON merge patch, also for strategic merge
//!   patch content types), delete; `.../status` subresources behave as the
//!   object; errors are `Status` objects with the real reasons and codes;
//! - watch (`watch=true`): newline-delimited `ADDED` / `MODIFIED` /
//!   `DELETED` events from a given `resourceVersion` (from a bounded
//!   history), `BOOKMARK`s every 2 s with `allowWatchBookmarks`,
//!   `sendInitialEvents=true` with the `k8s.io/initial-events-end`
//!   bookmark, `timeoutSeconds`, and an `ERROR` event with a 410 `Expired`
//!   Status when the version is older than the history;
//! - one global, increasing `resourceVersion`, `uid`,
//!   `creationTimestamp`.
//!
//! Controls for tests (never used by the agent), `POST` on the same port:
//! `/standin/drop-watches` (cuts every open watch stream),
//! `/standin/compact` (forgets the history: older versions get 410),
//! `/standin/down?seconds=N` (cuts the watches and answers every API
//! request with 503 for N seconds, then serves the same state again),
//! `/standin/load` (creates every object of the multi-document YAML body
//! at once, as `--load` does at start), `/standin/revision` (the current
//! resourceVersion).
//!
//! Not covered: authentication and authorization, admission and
//! validation beyond JSON shape, defaulting, server-side apply, field
//! managers, finalizers and graceful deletion, other resources, protobuf,
//! HTTP/2 and TLS.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// How many changes a watch can resume from.
const HISTORY: usize = 10_000;
const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

/// A resource type the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Resource {
    Services,
    Endpoints,
    Nodes,
    EndpointSlices,
    Events,
}

impl Resource {
    fn from_plural(group: &str, plural: &str) -> Option<Self> {
        match (group, plural) {
            ("", "services") => Some(Self::Services),
            ("", "endpoints") => Some(Self::Endpoints),
            ("", "nodes") => Some(Self::Nodes),
            ("discovery.k8s.io", "endpointslices") => Some(Self::EndpointSlices),
            ("events.k8s.io", "events") => Some(Self::Events),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Services => "Service",
            Self::Endpoints => "Endpoints",
            Self::Nodes => "Node",
            Self::EndpointSlices => "EndpointSlice",
            Self::Events => "Event",
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Self::EndpointSlices => "discovery.k8s.io/v1",
            Self::Events => "events.k8s.io/v1",
            _ => "v1",
        }
    }

    fn namespaced(self) -> bool {
        self != Self::Nodes
    }

    fn from_kind(kind: &str) -> Option<Self> {
        [
            Self::Services,
            Self::Endpoints,
            Self::Nodes,
            Self::EndpointSlices,
            Self::Events,
        ]
        .into_iter()
        .find(|resource| resource.kind() == kind)
    }
}

/// One change, as watches send it.
#[derive(Debug, Clone)]
struct Change {
    revision: u64,
    resource: Resource,
    kind: &'static str,
    object: Value,
}

type Key = (Resource, String, String);

#[derive(Debug, Default)]
struct Store {
    revision: u64,
    /// The oldest version a watch may start from.
    compacted: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
}

#[derive(Debug)]
struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to cut every open watch.
    cuts: tokio::sync::watch::Sender<u64>,
    down_until: Mutex<Option<Instant>>,
}

type App = Arc<Shared>;

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message.into(), "reason": reason,
        "code": code.as_u16(),
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok_json(code: StatusCode, value: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let (hour, minute, second) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// A path, split into what it addresses.
#[derive(Debug)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, "v1", rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some(namespace.to_string()), rest)
        }
        _ => (None, rest),
    };
    let (plural, name) = match rest {
        [plural] => (*plural, None),
        [plural, name] => (*plural, Some(name.to_string())),
        // The status subresource is the object itself here.
        [plural, name, "status"] => (*plural, Some(name.to_string())),
        _ => return None,
    };
    let resource = Resource::from_plural(group, plural)?;
    if !resource.namespaced() && namespace.is_some() {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name,
    })
}

fn object_namespace(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn object_name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or("").to_owned()
}

/// Whether `object` passes the list/watch filters.
fn matches(object: &Value, namespace: Option<&str>, query: &HashMap<String, String>) -> bool {
    if let Some(namespace) = namespace {
        if object_namespace(object) != namespace {
            return false;
        }
    }
    if let Some(selector) = query.get("fieldSelector").filter(|s| !s.is_empty()) {
        for term in selector.split(',') {
            let (field, wanted, equal) = match term.split_once("!=") {
                Some((field, value)) => (field, value, false),
                None => match term.split_once("==").or_else(|| term.split_once('=')) {
                    Some((field, value)) => (field, value, true),
                    None => continue,
                },
            };
            let actual = match field {
                "metadata.name" => object_name(object),
                "metadata.namespace" => object_namespace(object),
                _ => continue,
            };
            if (actual == wanted) != equal {
                return false;
            }
        }
    }
    if let Some(selector) = query.get("labelSelector").filter(|s| !s.is_empty()) {
        let labels = &object["metadata"]["labels"];
        for term in selector.split(',') {
            let term = term.trim();
            let ok = if let Some((key, value)) = term.split_once("!=") {
                labels[key].as_str() != Some(value)
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                labels[key].as_str() == Some(value)
            } else if let Some(key) = term.strip_prefix('!') {
                labels.get(key).is_none()
            } else {
                labels.get(term).is_some()
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(entries) => {
            if !target.is_object() {
                *target = json!({});
            }
            let Some(map) = target.as_object_mut() else {
                return;
            };
            for (key, value) in entries {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}

impl Shared {
    fn record(&self, store: &mut Store, resource: Resource, kind: &'static str, object: Value) {
        let change = Change {
            revision: store.revision,
            resource,
            kind,
            object,
        };
        store.history.push_back(change.clone());
        while store.history.len() > HISTORY {
            if let Some(dropped) = store.history.pop_front() {
                store.compacted = store.compacted.max(dropped.revision);
            }
        }
        let _ = self.changes.send(change);
    }

    /// Creates an object (used by the API and by `--load`); the error is
    /// the API's answer.
    // Only ever returned to be sent: boxing the Response would gain nothing.
    #[allow(clippy::result_large_err)]
    fn create(
        &self,
        resource: Resource,
        namespace: Option<String>,
        mut object: Value,
    ) -> Result<Value, Response> {
        if !object.is_object() {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the body is not an object",
            ));
        }
        let namespace = if resource.namespaced() {
            let given = object_namespace(&object);
            let namespace = namespace.unwrap_or_else(|| {
                if given.is_empty() {
                    "default".into()
                } else {
                    given.clone()
                }
            });
            if !given.is_empty() && given != namespace {
                return Err(status(StatusCode::BAD_REQUEST, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request"));
            }
            namespace
        } else {
            String::new()
        };
        let mut name = object_name(&object);
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if name.is_empty() {
            match object["metadata"]["generateName"].as_str() {
                Some(prefix) => name = format!("{prefix}{:05x}", store.revision + 1),
                None => {
                    return Err(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name: Required value",
                    ))
                }
            }
        }
        let key = (resource, namespace.clone(), name.clone());
        if store.objects.contains_key(&key) {
            return Err(status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!(
                    "{} \"{name}\" already exists",
                    resource.kind().to_lowercase()
                ),
            ));
        }
        store.revision += 1;
        let revision = store.revision;
        object["kind"] = json!(resource.kind());
        object["apiVersion"] = json!(resource.api_version());
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(name);
        if resource.namespaced() {
            metadata["namespace"] = json!(namespace);
        }
        metadata["resourceVersion"] = json!(revision.to_string());
        metadata["uid"] = json!(format!("00000000-0000-4000-8000-{revision:012x}"));
        metadata["creationTimestamp"] = json!(now_rfc3339());
        store.objects.insert(key, object.clone());
        self.record(&mut store, resource, "ADDED", object.clone());
        Ok(object)
    }

    fn is_down(&self) -> bool {
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        match *down {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *down = None;
                false
            }
            None => false,
        }
    }
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
        return handle_control(&app, control, &query, &body);
    }
    if app.is_down() {
        return status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the stand-in is down (test control)",
        );
    }
    match path.as_str() {
        "/version" => {
            return ok_json(
                StatusCode::OK,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-standin", "platform": "linux/amd64"}),
            )
        }
        "/healthz" | "/livez" | "/readyz" => return (StatusCode::OK, "ok").into_response(),
        _ => {}
    }
    let Some(target) = parse_target(&path) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => Some(value),
            Err(error) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!("invalid JSON body: {error}"),
                )
            }
        }
    };
    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match (method, &target.name) {
        (Method::GET, None) if watch => watch_response(&app, &target, &query),
        (Method::GET, None) => list(&app, &target, &query),
        (Method::GET, Some(name)) => {
            let store = app.store.lock().unwrap_or_else(|e| e.into_inner());
            let key = (
                target.resource,
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            match store.objects.get(&key) {
                Some(object) => ok_json(StatusCode::OK, object),
                None => not_found(&target, name),
            }
        }
        (Method::POST, None) => match body {
            Some(object) => match app.create(target.resource, target.namespace.clone(), object) {
                Ok(created) => ok_json(StatusCode::CREATED, &created),
                Err(response) => response,
            },
            None => status(StatusCode::BAD_REQUEST, "BadRequest", "a body is required"),
        },
        (Method::PUT, Some(name)) => {
            update(&app, &target, name, |_, _| body.clone().ok_or(()), true)
        }
        (Method::PATCH, Some(name)) => {
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
            update(
                &app,
                &target,
                name,
                move |current, _| {
                    let mut merged = current.clone();
                    merge_patch(&mut merged, &patch);
                    Ok(merged)
                },
                false,
            )
        }
        (Method::DELETE, Some(name)) => {
            let mut store = app.store.lock().unwrap_or_else(|e| e.into_inner());
            let key = (
                target.resource,
                target.namespace.clone().unwrap_or_default(),
                name.clone(),
            );
            match store.objects.remove(&key) {
                Some(mut object) => {
                    store.revision += 1;
                    object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
                    app.record(&mut store, target.resource, "DELETED", object.clone());
                    ok_json(StatusCode::OK, &object)
                }
                None => not_found(&target, name),
            }
        }
        (method, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        ),
    }
}

fn not_found(target: &Target, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!(
            "{} \"{name}\" not found",
            target.resource.kind().to_lowercase()
        ),
    )
}

fn update(
    app: &App,
    target: &Target,
    name: &str,
    make: impl FnOnce(&Value, u64) -> Result<Value, ()>,
    check_version: bool,
) -> Response {
    let mut store = app.store.lock().unwrap_or_else(|e| e.into_inner());
    let key = (
        target.resource,
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    );
    let Some(current) = store.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    let Ok(mut object) = make(&current, store.revision) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "a body is required");
    };
    if check_version {
        if let Some(given) = object["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty())
        {
            if Some(given) != current["metadata"]["resourceVersion"].as_str() {
                return status(StatusCode::CONFLICT, "Conflict", format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                    target.resource.kind().to_lowercase()));
            }
        }
    }
    if object_name(&object) != name {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
    }
    store.revision += 1;
    object["kind"] = json!(target.resource.kind());
    object["apiVersion"] = json!(target.resource.api_version());
    for field in ["uid", "creationTimestamp", "namespace"] {
        if !current["metadata"][field].is_null() {
            object["metadata"][field] = current["metadata"][field].clone();
        }
    }
    object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
    if object == current {
        return ok_json(StatusCode::OK, &current);
    }
    store.objects.insert(key, object.clone());
    app.record(&mut store, target.resource, "MODIFIED", object.clone());
    ok_json(StatusCode::OK, &object)
}

/// The `continue` token of a page that ended at `key`: the namespace and
/// name to go on after (a real API server's token is opaque too).
fn continue_token(key: &Key) -> String {
    format!("{}/{}", key.1, key.2)
}

fn list(app: &App, target: &Target, query: &HashMap<String, String>) -> Response {
    let store = app.store.lock().unwrap_or_else(|e| e.into_inner());
    let limit = query
        .get("limit")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|limit| *limit > 0)
        .unwrap_or(usize::MAX);
    // Namespaces hold no `/`: the token splits back into the key.
    let after: Option<(&str, &str)> = query
        .get("continue")
        .and_then(|token| token.split_once('/'));
    let mut matching = store
        .objects
        .iter()
        .filter(|((resource, _, _), _)| *resource == target.resource)
        .filter(|(key, _)| after.is_none_or(|after| (key.1.as_str(), key.2.as_str()) > after))
        .filter(|(_, object)| matches(object, target.namespace.as_deref(), query));
    let page: Vec<(&Key, &Value)> = matching.by_ref().take(limit).collect();
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": store.revision.to_string()});
    if remaining > 0 {
        if let Some((last, _)) = page.last() {
            metadata["continue"] = json!(continue_token(last));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<&Value> = page.into_iter().map(|(_, object)| object).collect();
    ok_json(
        StatusCode::OK,
        &json!({
            "kind": format!("{}List", target.resource.kind()),
            "apiVersion": target.resource.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn bookmark(resource: Resource, revision: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": resource.kind(), "apiVersion": resource.api_version(), "metadata": metadata}),
    )
}

fn watch_response(app: &App, target: &Target, query: &HashMap<String, String>) -> Response {
    let resource = target.resource;
    let namespace = target.namespace.clone();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let initial_events = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let from: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && v.as_str() != "0")
        .and_then(|v| v.parse().ok());
    let query = query.clone();

    // Under the lock: what to send first, and the live feed after it.
    let (mut first, mut receiver, start_revision) = {
        let store = app.store.lock().unwrap_or_else(|e| e.into_inner());
        let receiver = app.changes.subscribe();
        let mut first: Vec<Bytes> = Vec::new();
        match from {
            Some(version) if version < store.compacted => {
                let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": format!("too old resource version: {version} ({})", store.compacted),
                    "reason": "Expired", "code": 410});
                let body = Body::from(event_line("ERROR", &gone));
                return (StatusCode::OK, [("content-type", "application/json")], body)
                    .into_response();
            }
            Some(version) if !initial_events => {
                for change in store
                    .history
                    .iter()
                    .filter(|c| c.revision > version && c.resource == resource)
                {
                    if matches(&change.object, namespace.as_deref(), &query) {
                        first.push(event_line(change.kind, &change.object));
                    }
                }
            }
            _ => {
                for ((kind, _, _), object) in &store.objects {
                    if *kind == resource && matches(object, namespace.as_deref(), &query) {
                        first.push(event_line("ADDED", object));
                    }
                }
                if initial_events {
                    first.push(bookmark(resource, store.revision, true));
                }
            }
        }
        (first, receiver, store.revision)
    };
    let mut cuts = app.cuts.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = async_stream(move |sender| async move {
        for line in first.drain(..) {
            if sender.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let mut last_revision = start_revision;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.reset();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = cuts.changed() => {
                    let _ = sender.send(Err(std::io::Error::other("watch cut by a test control"))).await;
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    if sender.send(Ok(bookmark(resource, last_revision, false))).await.is_err() {
                        return;
                    }
                }
                change = receiver.recv() => match change {
                    Ok(change) => {
                        // Everything up to `start_revision` was in `first`.
                        if change.revision <= start_revision {
                            continue;
                        }
                        last_revision = change.revision;
                        if change.resource == resource && matches(&change.object, namespace.as_deref(), &query)
                            && sender.send(Ok(event_line(change.kind, &change.object))).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = sender.send(Err(std::io::Error::other("watch fell behind"))).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A stream fed by a task through a channel.
fn async_stream<F, Fut>(
    producer: F,
) -> impl tokio_stream::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(producer(sender));
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

fn handle_control(
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
            app.cuts.send_modify(|generation| *generation += 1);
            (StatusCode::OK, "watches cut\n").into_response()
        }
        "compact" => {
            let mut store = app.store.lock().unwrap_or_else(|e| e.into_inner());
            store.compacted = store.revision;
            store.history.clear();
            (StatusCode::OK, format!("compacted at {}\n", store.revision)).into_response()
        }
        "down" => {
            let seconds: u64 = query
                .get("seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(10);
            *app.down_until.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Instant::now() + Duration::from_secs(seconds));
            app.cuts.send_modify(|generation| *generation += 1);
            (StatusCode::OK, format!("down for {seconds} s\n")).into_response()
        }
        "revision" => {
            let store = app.store.lock().unwrap_or_else(|e| e.into_inner());
            (StatusCode::OK, format!("{}\n", store.revision)).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "unknown control\n").into_response(),
    }
}

/// A stand-in for the Kubernetes API server (see the crate docs).
#[derive(Debug, Parser)]
struct Cli {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Manifests (YAML, multi-document) to create at start.
    #[arg(long, num_args = 1..)]
    load: Vec<PathBuf>,
    /// Write a kubeconfig pointing at the stand-in here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
}

fn load(app: &App, path: &PathBuf) -> Result<usize, String> {
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let (changes, _) = broadcast::channel(65_536);
    let (cuts, _) = tokio::sync::watch::channel(0u64);
    let app: App = Arc::new(Shared {
        store: Mutex::new(Store::default()),
        changes,
        cuts,
        down_until: Mutex::new(None),
    });
    for path in &cli.load {
        let count = load(&app, path)?;
        eprintln!(
            "kube-standin: loaded {count} objects from {}",
            path.display()
        );
    }
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let address = listener.local_addr()?;
    if let Some(path) = &cli.kubeconfig_out {
        std::fs::write(path, format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: http://{address}\nusers:\n- name: standin\n  user: {{}}\ncontexts:\n- name: standin\n  context:\n    cluster: standin\n    user: standin\ncurrent-context: standin\n"
        ))?;
    }
    println!("listening on {address}");
    // Bodies up to 64 MiB (a real API server takes 3 MiB per object; the
    // bulk `/standin/load` control needs more).
    let router = axum::Router::new()
        .fallback(handle)
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
