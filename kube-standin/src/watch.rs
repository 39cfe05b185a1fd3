//! Watch streams (`watch=true`): newline-delimited events from a given
//! `resourceVersion` (out of the store's history) or from the current
//! objects, `sendInitialEvents` with its end bookmark, periodic
//! `BOOKMARK`s, `timeoutSeconds`, the `ERROR` event with a 410 `Expired`
//! Status for a version older than the history, and cuts by the test
//! controls.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::resource::{Resource, Target};
use crate::select::matches;
use crate::store::{App, Change, Store};

const BOOKMARK_EVERY: Duration = Duration::from_secs(2);

type Line = Result<Bytes, std::io::Error>;

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

/// What a watch asks for in its query.
#[derive(Debug)]
struct Options {
    bookmarks: bool,
    initial_events: bool,
    timeout: Duration,
    /// The version to go on from (none: from the current objects).
    from: Option<u64>,
}

impl Options {
    fn parse(query: &HashMap<String, String>) -> Self {
        Self {
            bookmarks: query
                .get("allowWatchBookmarks")
                .is_some_and(|v| v == "true"),
            initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
            timeout: query
                .get("timeoutSeconds")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs)
                .unwrap_or(Duration::from_secs(1800)),
            from: query
                .get("resourceVersion")
                .filter(|v| !v.is_empty() && v.as_str() != "0")
                .and_then(|v| v.parse().ok()),
        }
    }
}

/// Which changes a watch sends: of its resource, passing its filters.
#[derive(Debug)]
struct Filter {
    resource: Resource,
    namespace: Option<String>,
    query: HashMap<String, String>,
}

impl Filter {
    fn passes(&self, resource: Resource, object: &Value) -> bool {
        resource == self.resource && matches(object, self.namespace.as_deref(), &self.query)
    }
}

/// The events to send first, or the 410 `ERROR` event alone when the
/// version asked for is older than the history.
fn first_events(store: &Store, filter: &Filter, options: &Options) -> Result<Vec<Bytes>, Bytes> {
    let mut first: Vec<Bytes> = Vec::new();
    match options.from {
        Some(version) if version < store.compacted() => {
            let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {version} ({})", store.compacted()),
                "reason": "Expired", "code": 410});
            return Err(event_line("ERROR", &gone));
        }
        Some(version) if !options.initial_events => {
            for change in store.history().iter().filter(|c| c.revision > version) {
                if filter.passes(change.resource, &change.object) {
                    first.push(event_line(change.kind, &change.object));
                }
            }
        }
        _ => {
            for ((resource, _, _), object) in store.objects() {
                if filter.passes(*resource, object) {
                    first.push(event_line("ADDED", object));
                }
            }
            if options.initial_events {
                first.push(bookmark(filter.resource, store.revision(), true));
            }
        }
    }
    Ok(first)
}

/// One open watch, after its first events: what it follows and until when.
#[derive(Debug)]
struct Watch {
    filter: Filter,
    bookmarks: bool,
    /// Every change up to this version was in the first events.
    start_revision: u64,
    deadline: tokio::time::Instant,
    changes: broadcast::Receiver<Change>,
    cuts: tokio::sync::watch::Receiver<u64>,
}

impl Watch {
    /// Sends `first`, then the live changes that pass the filter (and
    /// bookmarks), until the timeout, a cut, or the client goes.
    async fn run(mut self, first: Vec<Bytes>, sender: mpsc::Sender<Line>) {
        for line in first {
            if sender.send(Ok(line)).await.is_err() {
                return;
            }
        }
        let resource = self.filter.resource;
        let mut last_revision = self.start_revision;
        let mut ticker = tokio::time::interval(BOOKMARK_EVERY);
        ticker.reset();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(self.deadline) => return,
                _ = self.cuts.changed() => {
                    let _ = sender.send(Err(std::io::Error::other("watch cut by a test control"))).await;
                    return;
                }
                _ = ticker.tick(), if self.bookmarks => {
                    if sender.send(Ok(bookmark(resource, last_revision, false))).await.is_err() {
                        return;
                    }
                }
                change = self.changes.recv() => match change {
                    Ok(change) => {
                        // Everything up to `start_revision` was in `first`.
                        if change.revision <= self.start_revision {
                            continue;
                        }
                        last_revision = change.revision;
                        if self.filter.passes(change.resource, &change.object)
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
    }
}

/// The answer to a watch request: a stream of events.
pub(crate) fn watch_response(
    app: &App,
    target: &Target,
    query: &HashMap<String, String>,
) -> Response {
    let options = Options::parse(query);
    let filter = Filter {
        resource: target.resource,
        namespace: target.namespace.clone(),
        query: query.clone(),
    };
    // Under the lock: what to send first, and the live feed after it.
    let (first, changes, start_revision) = {
        let store = app.store();
        let changes = app.subscribe();
        match first_events(&store, &filter, &options) {
            Ok(first) => (first, changes, store.revision()),
            Err(gone) => {
                return (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    Body::from(gone),
                )
                    .into_response();
            }
        }
    };
    let cuts = app.cuts.subscribe();
    let watch = Watch {
        filter,
        bookmarks: options.bookmarks,
        start_revision,
        deadline: tokio::time::Instant::now() + options.timeout,
        changes,
        cuts,
    };
    let stream = async_stream(move |sender| watch.run(first, sender));
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A stream fed by a task through a channel.
fn async_stream<F, Fut>(producer: F) -> impl tokio_stream::Stream<Item = Line>
where
    F: FnOnce(mpsc::Sender<Line>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(producer(sender));
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}
