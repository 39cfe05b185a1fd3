//! The agent's HTTP endpoints, as kube-proxy serves them
//! (`cmd/kube-proxy/app/server.go`): `/healthz` and `/livez` on
//! `--healthz-bind-address` (default `0.0.0.0:10256`), and
//! `/metrics`, `/healthz` (`ok`), `/proxyMode` (`ipvs`) and `/configz` on
//! `--metrics-bind-address` (default `127.0.0.1:10249`). A port already
//! taken at start (the old kube-proxy still running during the swap) is
//! tried again every 5 s, unless `bindAddressHardFail`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::{info, warn};

use super::health::Health;
use super::metrics::{self, ServerMetrics};
use super::process;

/// A server could not start listening.
#[derive(Debug, thiserror::Error)]
#[error("listening on {address} ({what}): {source}")]
pub struct ServeError {
    /// Which endpoint.
    pub what: &'static str,
    /// The address asked for.
    pub address: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn health_answer(health: &Health, check_node: bool) -> Response {
    let (verdict, body) = health.check(check_node);
    let code = if verdict.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    metrics::record_health_check(check_node, code.as_u16());
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// How often a port that was taken at start is tried again (kube-proxy's
/// `wait.Until(..., 5*time.Second, ...)`).
pub const BIND_RETRY: Duration = Duration::from_secs(5);

/// Whether a port taken at start is fatal (`bindAddressHardFail`) or
/// tried again every [`BIND_RETRY`] (kube-proxy's default: during a swap
/// the old kube-proxy may still hold it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindFailure {
    /// Return the error (the agent exits).
    Fatal,
    /// Log it and keep trying in the background.
    Retry,
}

impl BindFailure {
    /// From `bindAddressHardFail`.
    pub fn from_hard_fail(hard_fail: bool) -> Self {
        if hard_fail {
            BindFailure::Fatal
        } else {
            BindFailure::Retry
        }
    }
}

fn serve_on(what: &'static str, listener: tokio::net::TcpListener, router: Router) -> SocketAddr {
    let bound = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    info!(%bound, what, "serving");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            warn!(%error, what, "HTTP server stopped");
        }
    });
    bound
}

/// Listens on `address` and serves `router`; returns the bound address.
/// When the address cannot be had: with [`BindFailure::Fatal`] the error,
/// else a warning and a background task that tries again every
/// [`BIND_RETRY`] until it can (the address asked for is returned).
async fn spawn_server(
    what: &'static str,
    address: SocketAddr,
    router: Router,
    on_failure: BindFailure,
) -> Result<SocketAddr, ServeError> {
    let source = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => return Ok(serve_on(what, listener, router)),
        Err(source) => source,
    };
    if on_failure == BindFailure::Fatal {
        return Err(ServeError {
            what,
            address,
            source,
        });
    }
    warn!(%address, what, error = %source,
        "cannot listen; trying again every 5 s (bindAddressHardFail is off)");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(BIND_RETRY).await;
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => {
                    serve_on(what, listener, router);
                    return;
                }
                Err(error) => {
                    warn!(%address, what, %error, "cannot listen; trying again in 5 s")
                }
            }
        }
    });
    Ok(address)
}

/// Serves `/healthz` and `/livez`; returns the bound address (see
/// [`BindFailure`] for a port that is taken).
pub async fn serve_health(
    address: SocketAddr,
    health: Health,
    on_failure: BindFailure,
) -> Result<SocketAddr, ServeError> {
    let router = Router::new()
        .route(
            "/healthz",
            get(|State(health): State<Health>| async move { health_answer(&health, true) }),
        )
        .route(
            "/livez",
            get(|State(health): State<Health>| async move { health_answer(&health, false) }),
        )
        .with_state(health);
    spawn_server("healthz", address, router, on_failure).await
}

#[derive(Debug, Clone)]
struct MetricsState {
    prometheus: PrometheusHandle,
    servers: ServerMetrics,
    health: Health,
    configz: Arc<String>,
}

/// kube-proxy's proxy mode, as `/proxyMode` answers it.
pub const PROXY_MODE: &str = "ipvs";

/// The `/configz` body: kube-proxy's configz registers its configuration
/// under the name `kubeproxy.config.k8s.io`.
pub fn configz_body(config: serde_json::Value) -> String {
    serde_json::json!({ "kubeproxy.config.k8s.io": config }).to_string()
}

/// A `text/plain` answer with `X-Content-Type-Options: nosniff`, as
/// kube-proxy writes `/healthz` and `/proxyMode`.
fn plain_text(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Serves, as kube-proxy's metrics server does: `/metrics` (the
/// registered metrics, the `process_*` ones, then the per-server
/// counters), `/healthz` (the generic `ok` of Kubernetes' healthz
/// handler, not the proxier's verdict), `/proxyMode` (`ipvs`) and
/// `/configz` (`config`, the configuration in force as JSON). Returns the
/// bound address (see [`BindFailure`] for a port that is taken).
pub async fn serve_metrics(
    address: SocketAddr,
    prometheus: PrometheusHandle,
    servers: ServerMetrics,
    health: Health,
    config: serde_json::Value,
    on_failure: BindFailure,
) -> Result<SocketAddr, ServeError> {
    let state = MetricsState {
        prometheus,
        servers,
        health,
        configz: Arc::new(configz_body(config)),
    };
    let router = Router::new()
        .route(
            "/metrics",
            get(|State(state): State<MetricsState>| async move {
                metrics::record_api_unreachable(state.health.api_unreachable_for());
                let mut text = state.prometheus.render();
                text.push_str(&process::render_self());
                text.push_str(&state.servers.text());
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }),
        )
        .route("/healthz", get(|| async { plain_text("ok") }))
        .route("/proxyMode", get(|| async { plain_text(PROXY_MODE) }))
        .route(
            "/configz",
            get(|State(state): State<MetricsState>| async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    state.configz.as_str().to_owned(),
                )
            }),
        )
        .with_state(state);
    spawn_server("metrics", address, router, on_failure).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configz_is_kube_proxys_shape() {
        let body = configz_body(serde_json::json!({"mode": "ipvs", "ipvs": {"scheduler": "rr"}}));
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["kubeproxy.config.k8s.io"]["mode"], "ipvs");
        assert_eq!(value.as_object().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_taken_port_is_fatal_only_with_hard_fail() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = holder.local_addr().unwrap();
        let fatal = spawn_server("test", address, Router::new(), BindFailure::Fatal).await;
        assert!(fatal.is_err());
        let retried = spawn_server("test", address, Router::new(), BindFailure::Retry).await;
        assert_eq!(retried.unwrap(), address);
    }
}
