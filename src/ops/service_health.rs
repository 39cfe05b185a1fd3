//! The Services' `healthCheckNodePort` servers, as kube-proxy serves them
//! (`pkg/proxy/healthcheck/service_health.go`, Kubernetes 1.32):
//!
//! - one HTTP server per `type: LoadBalancer`, `externalTrafficPolicy:
//!   Local` Service, on its `healthCheckNodePort`, on every address
//!   (`0.0.0.0`/`[::]`) or, with `--nodeport-addresses`, on the NodePort
//!   addresses;
//! - any path answers kube-proxy's JSON (`service.namespace`,
//!   `service.name`, `localEndpoints`, `serviceProxyHealthy`) with
//!   `Content-Type: application/json`, `X-Content-Type-Options: nosniff`
//!   and `X-Load-Balancing-Endpoint-Weight: <localEndpoints>`: 200 when
//!   the node has a ready local endpoint and the proxy is healthy
//!   (`/livez`'s verdict: the node's eligibility is left out), else 503;
//! - servers open and close as the Services come and go after each sync;
//!   a port that cannot be bound is a warning Event on the Service
//!   (`FailedToStartServiceHealthcheck`), a log line and
//!   `ipvs_agent_health_check_bind_failures_total`, and is tried again
//!   after the next sync, as kube-proxy does. It never stops the agent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use metrics::{counter, gauge};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::health::Health;
use super::node_events::NodeEvents;
use crate::desired::health_check::HealthCheck;
use crate::model::ObjectRef;

/// kube-proxy's header with the local endpoint count.
const WEIGHT_HEADER: HeaderName = HeaderName::from_static("x-load-balancing-endpoint-weight");

/// kube-proxy's body (Go's dedented template, tabs and all).
pub fn body(service: &ObjectRef, local_endpoints: usize, proxy_healthy: bool) -> String {
    format!(
        "{{\n\t\"service\": {{\n\t\t\"namespace\": {:?},\n\t\t\"name\": {:?}\n\t}},\n\t\"localEndpoints\": {local_endpoints},\n\t\"serviceProxyHealthy\": {proxy_healthy}\n}}",
        service.namespace, service.name
    )
}

/// What one Service's server answers from.
#[derive(Debug, Clone)]
struct Answer {
    service: ObjectRef,
    local_endpoints: Arc<AtomicUsize>,
    health: Health,
}

async fn answer(State(answer): State<Answer>) -> Response {
    let count = answer.local_endpoints.load(Ordering::Relaxed);
    let proxy_healthy = answer.health.proxy_healthy();
    let code = if count != 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (WEIGHT_HEADER, HeaderValue::from(count)),
        ],
        body(&answer.service, count, proxy_healthy),
    )
        .into_response()
}

/// One Service's open server.
#[derive(Debug)]
struct Instance {
    port: u16,
    /// The addresses it listens on (`None`: every address).
    addresses: Option<BTreeSet<IpAddr>>,
    local_endpoints: Arc<AtomicUsize>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // The listeners are owned by the tasks: aborting closes the port.
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The open health-check servers; see the module docs.
#[derive(Debug)]
pub struct ServiceHealthServers {
    health: Health,
    events: Option<NodeEvents>,
    open: BTreeMap<ObjectRef, Instance>,
    /// Services whose port could not be bound last time (to report each
    /// failure once until it changes).
    failing: BTreeMap<ObjectRef, String>,
}

impl ServiceHealthServers {
    /// No server open yet; answers use `health` for
    /// `serviceProxyHealthy`, failures are Events through `events`.
    pub fn new(health: Health, events: Option<NodeEvents>) -> Self {
        Self {
            health,
            events,
            open: BTreeMap::new(),
            failing: BTreeMap::new(),
        }
    }

    /// The Services whose server is open, with their ports.
    pub fn open_ports(&self) -> BTreeMap<ObjectRef, u16> {
        self.open
            .iter()
            .map(|(service, instance)| (service.clone(), instance.port))
            .collect()
    }

    /// Makes the open servers those of `wanted` (on `addresses`, `None`
    /// for every address), with their local endpoint counts: closes those
    /// no longer wanted (or moved), opens the new ones (and retries those
    /// that failed), updates the counts of the rest.
    pub fn sync(
        &mut self,
        wanted: &BTreeMap<ObjectRef, HealthCheck>,
        addresses: Option<&BTreeSet<IpAddr>>,
    ) {
        self.open.retain(|service, instance| {
            let keep = wanted.get(service).is_some_and(|check| {
                check.port == instance.port && instance.addresses.as_ref() == addresses
            });
            if !keep {
                info!(service = %service, port = instance.port, "closing health-check port");
            }
            keep
        });
        self.failing
            .retain(|service, _| wanted.contains_key(service));
        for (service, check) in wanted {
            if let Some(instance) = self.open.get(service) {
                instance
                    .local_endpoints
                    .store(check.local_endpoints, Ordering::Relaxed);
                continue;
            }
            match self.open_one(service, check, addresses) {
                Ok(instance) => {
                    info!(service = %service, port = check.port, local_endpoints = check.local_endpoints, "serving health-check port");
                    self.failing.remove(service);
                    self.open.insert(service.clone(), instance);
                }
                Err(error) => self.bind_failed(service, check.port, error),
            }
        }
        gauge!("ipvs_agent_health_check_ports").set(self.open.len() as f64);
    }

    fn open_one(
        &self,
        service: &ObjectRef,
        check: &HealthCheck,
        addresses: Option<&BTreeSet<IpAddr>>,
    ) -> Result<Instance, String> {
        let local_endpoints = Arc::new(AtomicUsize::new(check.local_endpoints));
        let router = Router::new().fallback(answer).with_state(Answer {
            service: service.clone(),
            local_endpoints: local_endpoints.clone(),
            health: self.health.clone(),
        });
        let listeners = match addresses {
            None => vec![bind_any(check.port)?],
            Some(addresses) => addresses
                .iter()
                .map(|address| bind(SocketAddr::new(*address, check.port)))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                let router = router.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    if let Err(error) = axum::serve(listener, router).await {
                        warn!(%error, service = %service, "health-check server stopped");
                    }
                })
            })
            .collect();
        Ok(Instance {
            port: check.port,
            addresses: addresses.cloned(),
            local_endpoints,
            tasks,
        })
    }

    fn bind_failed(&mut self, service: &ObjectRef, port: u16, error: String) {
        counter!("ipvs_agent_health_check_bind_failures_total").increment(1);
        if self.failing.get(service) == Some(&error) {
            return;
        }
        warn!(service = %service, port, %error, "cannot serve the health-check port; retried after the next sync");
        if let Some(events) = &self.events {
            events.health_check_failed(service, port, &error);
        }
        self.failing.insert(service.clone(), error);
    }
}

/// Listens on `address` (non-blocking, for tokio).
fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    let listener =
        std::net::TcpListener::bind(address).map_err(|error| format!("{address}: {error}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|error| format!("{address}: {error}"))?;
    tokio::net::TcpListener::from_std(listener).map_err(|error| format!("{address}: {error}"))
}

/// Listens on every address: `[::]` (which takes IPv4 too, as Go's
/// `:port` does), or `0.0.0.0` where the kernel has no IPv6.
fn bind_any(port: u16) -> Result<tokio::net::TcpListener, String> {
    bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port))
        .or_else(|_| bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_body_is_kube_proxys() {
        let service = ObjectRef::new("default", "web");
        assert_eq!(
            body(&service, 2, true),
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&body(&service, 0, false)).unwrap();
        assert_eq!(parsed["service"]["name"], "web");
        assert_eq!(parsed["localEndpoints"], 0);
        assert_eq!(parsed["serviceProxyHealthy"], false);
    }

    /// One HTTP/1.0 GET to 127.0.0.1:`port`, the whole answer.
    async fn get(port: u16, path: &str) -> String {
        use std::io::{Read, Write};
        let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        tokio::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        })
        .await
        .unwrap()
    }

    /// The status code of an HTTP answer.
    fn status(answer: &str) -> u16 {
        answer
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn servers_open_answer_count_and_close() {
        let health = Health::new(Duration::from_secs(60));
        let mut servers = ServiceHealthServers::new(health.clone(), None);
        let service = ObjectRef::new("shop", "front");
        let port = free_port();
        let loopback: BTreeSet<IpAddr> = [IpAddr::from([127, 0, 0, 1])].into();
        let mut wanted = BTreeMap::from([(
            service.clone(),
            HealthCheck {
                port,
                local_endpoints: 0,
            },
        )]);
        servers.sync(&wanted, Some(&loopback));
        let answer = get(port, "/anything").await;
        assert!(status(&answer) == 503, "{answer}");
        assert!(
            answer.contains("x-load-balancing-endpoint-weight: 0"),
            "{answer}"
        );
        assert!(
            answer.contains("x-content-type-options: nosniff"),
            "{answer}"
        );
        assert!(
            answer.contains("content-type: application/json"),
            "{answer}"
        );

        wanted.get_mut(&service).unwrap().local_endpoints = 3;
        servers.sync(&wanted, Some(&loopback));
        let answer = get(port, "/").await;
        assert!(status(&answer) == 200, "{answer}");
        assert!(
            answer.contains("x-load-balancing-endpoint-weight: 3"),
            "{answer}"
        );
        assert!(answer.ends_with(&body(&service, 3, true)), "{answer}");

        // The node being deleted does not fail a Service's check.
        health.set_node_eligible(false);
        assert!(status(&get(port, "/").await) == 200);

        servers.sync(&BTreeMap::new(), Some(&loopback));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the port is closed with its Service"
        );
        assert!(servers.open_ports().is_empty());
    }

    #[tokio::test]
    async fn a_port_taken_is_retried_not_fatal() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let loopback: BTreeSet<IpAddr> = [IpAddr::from([127, 0, 0, 1])].into();
        let mut servers = ServiceHealthServers::new(Health::new(Duration::from_secs(60)), None);
        let service = ObjectRef::new("shop", "front");
        let wanted = BTreeMap::from([(
            service.clone(),
            HealthCheck {
                port,
                local_endpoints: 1,
            },
        )]);
        servers.sync(&wanted, Some(&loopback));
        assert!(servers.open_ports().is_empty());
        assert!(servers.failing.contains_key(&service));
        drop(taken);
        servers.sync(&wanted, Some(&loopback));
        assert_eq!(servers.open_ports(), BTreeMap::from([(service, port)]));
        assert!(status(&get(port, "/healthz").await) == 200);
    }
}
