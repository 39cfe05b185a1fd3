//! `/healthz` and `/livez` with kube-proxy's semantics
//! (`pkg/proxy/healthcheck/proxy_health.go`, Kubernetes 1.32):
//!
//! - **healthy while starting up**: until the run loop has started
//!   (kube-proxy's `SyncLoop` marks the proxier updated when it starts),
//!   every check passes;
//! - afterwards the proxy is unhealthy when an update has been queued (a
//!   change received that needs a sync) and no sync has completed for the
//!   health timeout (twice `--ipvs-sync-period`) or longer. One engine
//!   syncs both families at once, so kube-proxy's per-family test is one
//!   test here;
//! - `/healthz` also fails while the node is not eligible: its Node is
//!   being deleted or tainted `ToBeDeletedByClusterAutoscaler`. `/livez`
//!   and the Services' health-check ports (`serviceProxyHealthy`) leave
//!   the node out;
//! - the body is kube-proxy's, byte for byte:
//!   `{"lastUpdated": "…","currentTime": "…", "nodeEligible": true}`
//!   (`/livez` without `nodeEligible`), with Go's time format; when
//!   healthy `lastUpdated` is the current time, as kube-proxy answers.
//!
//! An unreachable API server does not change the verdict (kube-proxy's
//! does not either): the kernel keeps forwarding with the table as it is,
//! and failing every node's check at once during a control-plane outage
//! would take them all out of their load balancers and restart every
//! agent. The outage is visible instead in the log and in
//! `ipvs_agent_api_unreachable_seconds`.
//!
//! [`evaluate`] is pure and table-tested; [`Health`] is the shared state
//! the sync loop writes and the HTTP handlers read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

/// What the sync loop has told the health state.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// When the last sync completed, or the loop started (`None` while
    /// starting up: healthy).
    pub last_updated: Option<SystemTime>,
    /// The oldest update not yet synced.
    pub oldest_pending: Option<Instant>,
    /// Since when the API server has been unreachable (reported, not
    /// judged).
    pub api_unreachable_since: Option<Instant>,
    /// False while this node is being deleted or tainted for deletion.
    pub node_eligible: bool,
}

/// The answer of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthVerdict {
    /// 200 or 503.
    pub healthy: bool,
    /// Why not, when not healthy (for the log; not in the body).
    pub reason: Option<String>,
}

/// Decides a health check at `now` (`check_node`: `/healthz`, not `/livez`
/// nor a Service's health-check port).
pub fn evaluate(
    state: &HealthState,
    now: Instant,
    timeout: Duration,
    check_node: bool,
) -> HealthVerdict {
    let age = |since: Instant| now.saturating_duration_since(since);
    let late = state
        .oldest_pending
        .filter(|pending| state.last_updated.is_some() && age(*pending) >= timeout);
    let reason = if let Some(pending) = late {
        Some(format!(
            "an update has waited {:.0?} for a sync (limit {timeout:?})",
            age(pending)
        ))
    } else if check_node && !state.node_eligible {
        Some("the node is being deleted".to_owned())
    } else {
        None
    };
    HealthVerdict {
        healthy: reason.is_none(),
        reason,
    }
}

/// When this process started, for Go's monotonic clock reading (`m=+…`).
fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// `at` as Go's `time.Time.String()` prints a `time.Now()` in UTC:
/// `2026-12-02 07:30:00.123456789 +0000 UTC m=+12.000000001` (trailing
/// zeros of the fraction dropped; `None` is Go's zero time, which has no
/// monotonic reading).
pub fn go_time(at: Option<(SystemTime, Instant)>) -> String {
    let Some((wall, monotonic)) = at else {
        return "0001-01-01 00:00:00 +0000 UTC".to_owned();
    };
    let Ok(timestamp) = k8s_openapi::jiff::Timestamp::try_from(wall) else {
        return "0001-01-01 00:00:00 +0000 UTC".to_owned();
    };
    let mut text = timestamp.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = timestamp.subsec_nanosecond();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    let since_start = monotonic.saturating_duration_since(process_start());
    text.push_str(&format!(
        " +0000 UTC m=+{}.{:09}",
        since_start.as_secs(),
        since_start.subsec_nanos()
    ));
    text
}

/// The health state shared between the sync loop and the HTTP servers.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
    /// The monotonic reading of `last_updated`, for its Go form.
    last_updated_at: Arc<Mutex<Option<Instant>>>,
    /// The last `/healthz`-style verdict, to log its changes once.
    last_healthy: Arc<AtomicBool>,
    timeout: Duration,
}

impl Health {
    /// A new state: starting up (healthy), the node eligible.
    pub fn new(timeout: Duration) -> Self {
        process_start();
        Self {
            state: Arc::new(Mutex::new(HealthState {
                node_eligible: true,
                ..HealthState::default()
            })),
            last_updated_at: Arc::new(Mutex::new(None)),
            last_healthy: Arc::new(AtomicBool::new(true)),
            timeout,
        }
    }

    /// The health timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn with<T>(&self, change: impl FnOnce(&mut HealthState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state)
    }

    fn mark_updated(&self) {
        let now = Instant::now();
        self.with(|state| {
            state.last_updated = Some(SystemTime::now());
            state.oldest_pending = None;
        });
        *self
            .last_updated_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// The run loop started (kube-proxy's `SyncLoop` start): from now on
    /// a queued update that waits too long makes the agent unhealthy.
    pub fn loop_started(&self) {
        self.mark_updated();
    }

    /// An update arrived (an event that needs a sync).
    pub fn queued(&self) {
        self.with(|state| {
            state.oldest_pending.get_or_insert_with(Instant::now);
        });
    }

    /// A sync completed: everything queued is done.
    pub fn synced(&self) {
        self.mark_updated();
    }

    /// A request to the API server failed; returns whether it was
    /// reachable until now.
    pub fn api_failed(&self) -> bool {
        self.with(|state| {
            let was_reachable = state.api_unreachable_since.is_none();
            state.api_unreachable_since.get_or_insert_with(Instant::now);
            was_reachable
        })
    }

    /// The API server answered; returns how long it had been unreachable,
    /// if it had.
    pub fn api_answered(&self) -> Option<Duration> {
        self.with(|state| state.api_unreachable_since.take())
            .map(|since| since.elapsed())
    }

    /// How long the API server has been unreachable, if it is.
    pub fn api_unreachable_for(&self) -> Option<Duration> {
        self.with(|state| state.api_unreachable_since.map(|since| since.elapsed()))
    }

    /// Whether the API server is known to be unreachable.
    pub fn api_unreachable(&self) -> bool {
        self.api_unreachable_for().is_some()
    }

    /// The node is (not) eligible.
    pub fn set_node_eligible(&self, eligible: bool) {
        self.with(|state| state.node_eligible = eligible);
    }

    /// Whether the proxy is healthy, leaving the node out (kube-proxy's
    /// `IsHealthy`, the Services' `serviceProxyHealthy`).
    pub fn proxy_healthy(&self) -> bool {
        let state = self.with(|state| state.clone());
        evaluate(&state, Instant::now(), self.timeout, false).healthy
    }

    /// The verdict and kube-proxy's body for `/healthz` (`check_node`) or
    /// `/livez`.
    pub fn check(&self, check_node: bool) -> (HealthVerdict, String) {
        let state = self.with(|state| state.clone());
        let updated_at = *self
            .last_updated_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let now = (SystemTime::now(), Instant::now());
        let verdict = evaluate(&state, now.1, self.timeout, check_node);
        if check_node
            && self.last_healthy.swap(verdict.healthy, Ordering::Relaxed) != verdict.healthy
        {
            match &verdict.reason {
                Some(reason) => warn!(reason, "health checks fail (503)"),
                None => info!("health checks pass again (200)"),
            }
        }
        let current = go_time(Some(now));
        let last = if verdict.healthy {
            current.clone()
        } else {
            go_time(state.last_updated.zip(updated_at))
        };
        let body = if check_node {
            format!(
                r#"{{"lastUpdated": "{last}","currentTime": "{current}", "nodeEligible": {}}}"#,
                state.node_eligible
            )
        } else {
            format!(r#"{{"lastUpdated": "{last}","currentTime": "{current}"}}"#)
        };
        (verdict, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_kube_proxy() {
        let now = Instant::now();
        let timeout = Duration::from_secs(60);
        let ago = |seconds: u64| Some(now - Duration::from_secs(seconds));
        let running = HealthState {
            node_eligible: true,
            last_updated: Some(SystemTime::now()),
            ..HealthState::default()
        };
        let cases: Vec<(&str, HealthState, bool, bool)> = vec![
            ("nothing pending", running.clone(), true, true),
            (
                "starting up: an update pending long, but the loop has not started",
                HealthState {
                    last_updated: None,
                    oldest_pending: ago(600),
                    ..running.clone()
                },
                true,
                true,
            ),
            (
                "an update pending within the timeout",
                HealthState {
                    oldest_pending: ago(30),
                    ..running.clone()
                },
                true,
                true,
            ),
            (
                "an update pending exactly the timeout",
                HealthState {
                    oldest_pending: ago(60),
                    ..running.clone()
                },
                false,
                false,
            ),
            (
                "an update pending too long",
                HealthState {
                    oldest_pending: ago(61),
                    ..running.clone()
                },
                false,
                false,
            ),
            (
                "API unreachable far longer than the timeout: still healthy",
                HealthState {
                    api_unreachable_since: ago(900),
                    ..running.clone()
                },
                true,
                true,
            ),
            (
                "node being deleted: /healthz only",
                HealthState {
                    node_eligible: false,
                    ..running.clone()
                },
                false,
                true,
            ),
            (
                "node being deleted while starting up: /healthz fails",
                HealthState {
                    node_eligible: false,
                    last_updated: None,
                    ..running.clone()
                },
                false,
                true,
            ),
        ];
        for (what, state, healthz, livez) in cases {
            assert_eq!(
                evaluate(&state, now, timeout, true).healthy,
                healthz,
                "/healthz: {what}"
            );
            assert_eq!(
                evaluate(&state, now, timeout, false).healthy,
                livez,
                "/livez: {what}"
            );
        }
    }

    #[test]
    fn healthy_while_starting_up_then_late_updates_fail() {
        let health = Health::new(Duration::ZERO);
        health.queued();
        std::thread::sleep(Duration::from_millis(5));
        assert!(health.check(true).0.healthy, "starting up");
        health.loop_started();
        health.queued();
        std::thread::sleep(Duration::from_millis(5));
        let (verdict, body) = health.check(false);
        assert!(!verdict.healthy);
        assert!(!health.proxy_healthy());
        assert!(body.starts_with(r#"{"lastUpdated": "2"#), "{body}");
        health.synced();
        assert!(health.check(true).0.healthy);
    }

    #[test]
    fn bodies_are_kube_proxys() {
        let health = Health::new(Duration::from_secs(60));
        let (verdict, body) = health.check(true);
        assert!(verdict.healthy);
        // {"lastUpdated": "2026-12-02 07:30:00.12 +0000 UTC m=+0.01","currentTime": "…", "nodeEligible": true}
        let shape = regex_lite_match(&body);
        assert!(shape, "{body}");
        health.set_node_eligible(false);
        let (verdict, body) = health.check(true);
        assert!(!verdict.healthy);
        assert!(body.ends_with(r#", "nodeEligible": false}"#), "{body}");
        let (verdict, body) = health.check(false);
        assert!(verdict.healthy);
        assert!(!body.contains("nodeEligible"), "{body}");
        assert!(
            body.ends_with(r#""}"#) && body.contains(" UTC m=+"),
            "{body}"
        );
    }

    /// `{"lastUpdated": "<go time>","currentTime": "<go time>", "nodeEligible": true}`
    /// with both times equal (healthy).
    fn regex_lite_match(body: &str) -> bool {
        let Some(rest) = body.strip_prefix(r#"{"lastUpdated": ""#) else {
            return false;
        };
        let Some((last, rest)) = rest.split_once(r#"","currentTime": ""#) else {
            return false;
        };
        let Some((current, rest)) = rest.split_once('"') else {
            return false;
        };
        last == current && rest == r#", "nodeEligible": true}"# && last.contains(" +0000 UTC m=+")
    }

    #[test]
    fn go_time_format() {
        let start = process_start();
        let wall = SystemTime::UNIX_EPOCH + Duration::new(1_764_660_600, 120_000_000);
        assert_eq!(
            go_time(Some((wall, start + Duration::new(12, 5)))),
            "2025-12-02 07:30:00.12 +0000 UTC m=+12.000000005"
        );
        let whole = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_660_600);
        assert_eq!(
            go_time(Some((whole, start))),
            "2025-12-02 07:30:00 +0000 UTC m=+0.000000000"
        );
        assert_eq!(go_time(None), "0001-01-01 00:00:00 +0000 UTC");
    }
}
