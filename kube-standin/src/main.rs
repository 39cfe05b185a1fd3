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
//! `/standin/fail?status=CODE&seconds=N` (the same with any error code,
//! e.g. 500, and its `Status` reason), `/standin/raw` (stores the JSON
//! object of the body as it is, created or replaced, without checking it
//! decodes as its kind: a Service whose `spec.ports` is a string is then
//! listed and watched like any other),
//! `/standin/delete?kind=K&namespace=NS&name=N` (deletes an object; like
//! `raw` and `load`, also while down, as through another API server),
//! `/standin/load` (creates every object of the multi-document YAML body
//! at once, as `--load` does at start), `/standin/revision` (the current
//! resourceVersion).
//!
//! Not covered: authentication and authorization, admission and
//! validation beyond JSON shape, defaulting, server-side apply, field
//! managers, finalizers and graceful deletion, other resources, protobuf,
//! HTTP/2 and TLS.

mod api;
mod control;
mod reply;
mod resource;
mod select;
mod store;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::store::{App, Shared};

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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let app: App = Arc::new(Shared::new());
    for path in &cli.load {
        let count = control::load(&app, path)?;
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
    axum::serve(listener, api::router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
