//! The agent's HTTP endpoints, as kube-proxy serves them:
//! `/healthz` and `/livez` on `--healthz-bind-address` (default
//! `0.0.0.0:10256`), `/metrics` on `--metrics-bind-address` (default
//! `127.0.0.1:10249`, also answering `/healthz` like kube-proxy's metrics
//! server).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::{info, warn};

use super::health::Health;
use super::metrics::{self, ServerMetrics};

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

async fn spawn_server(
    what: &'static str,
    address: SocketAddr,
    router: Router,
) -> Result<SocketAddr, ServeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ServeError {
            what,
            address,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(address);
    info!(%bound, what, "serving");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            warn!(%error, what, "HTTP server stopped");
        }
    });
    Ok(bound)
}

/// Serves `/healthz` and `/livez`; returns the bound address.
pub async fn serve_health(address: SocketAddr, health: Health) -> Result<SocketAddr, ServeError> {
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
    spawn_server("healthz", address, router).await
}

#[derive(Debug, Clone)]
struct MetricsState {
    prometheus: PrometheusHandle,
    servers: ServerMetrics,
    health: Health,
}

/// Serves `/metrics` (the registered metrics, then the per-server
/// counters) and `/healthz`; returns the bound address.
pub async fn serve_metrics(
    address: SocketAddr,
    prometheus: PrometheusHandle,
    servers: ServerMetrics,
    health: Health,
) -> Result<SocketAddr, ServeError> {
    let state = MetricsState {
        prometheus,
        servers,
        health,
    };
    let router =
        Router::new()
            .route(
                "/metrics",
                get(|State(state): State<MetricsState>| async move {
                    metrics::record_api_unreachable(state.health.api_unreachable_for());
                    let mut text = state.prometheus.render();
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
            .route(
                "/healthz",
                get(|State(state): State<MetricsState>| async move {
                    health_answer(&state.health, true)
                }),
            )
            .with_state(state);
    spawn_server("metrics", address, router).await
}
