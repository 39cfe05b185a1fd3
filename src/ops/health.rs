//! `/healthz` and `/livez` with kube-proxy's semantics.
//!
//! kube-proxy's proxier health: unhealthy when an update has been queued
//! (an event received, or the start-up) and no sync has completed for
//! longer than the health timeout (twice `--ipvs-sync-period`). `/healthz`
//! also reports the node ineligible while it is being deleted; `/livez`
//! leaves node checks out. On top of kube-proxy, the agent reports its
//! view of the cluster as stale (both endpoints 503) when the API server
//! has been unreachable for longer than the same timeout: the kernel table
//! is kept as it is meanwhile, but nobody should believe it is current.
//!
//! [`evaluate`] is pure and table-tested; [`Health`] is the shared state
//! the sync loop writes and the HTTP handlers read.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// What the sync loop has told the health state.
#[derive(Debug, Clone, Default)]
pub struct HealthState {
    /// When the last sync completed (wall clock, for the JSON answer).
    pub last_updated: Option<SystemTime>,
    /// The oldest update not yet synced.
    pub oldest_pending: Option<Instant>,
    /// Since when the API server has been unreachable.
    pub api_unreachable_since: Option<Instant>,
    /// False while this node is being deleted.
    pub node_eligible: bool,
}

/// The answer of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthVerdict {
    /// 200 or 503.
    pub healthy: bool,
    /// Why not, when not healthy.
    pub reason: Option<String>,
}

/// Decides a health check at `now` (`check_node`: `/healthz`, not `/livez`).
pub fn evaluate(
    state: &HealthState,
    now: Instant,
    timeout: Duration,
    check_node: bool,
) -> HealthVerdict {
    let age = |since: Instant| now.saturating_duration_since(since);
    let reason = if let Some(pending) = state.oldest_pending.filter(|p| age(*p) > timeout) {
        Some(format!(
            "an update has waited {:.0?} for a sync (limit {timeout:?})",
            age(pending)
        ))
    } else if let Some(since) = state
        .api_unreachable_since
        .filter(|since| age(*since) > timeout)
    {
        Some(format!(
            "the API server has been unreachable for {:.0?} (limit {timeout:?}): the table may be stale",
            age(since)
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

/// The health state shared between the sync loop and the HTTP server.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
    timeout: Duration,
}

impl Health {
    /// A new state: the first sync is pending from now.
    pub fn new(timeout: Duration) -> Self {
        Self {
            state: Arc::new(Mutex::new(HealthState {
                oldest_pending: Some(Instant::now()),
                node_eligible: true,
                ..HealthState::default()
            })),
            timeout,
        }
    }

    fn with<T>(&self, change: impl FnOnce(&mut HealthState) -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state)
    }

    /// An update arrived (an event that needs a sync).
    pub fn queued(&self) {
        self.with(|state| {
            state.oldest_pending.get_or_insert_with(Instant::now);
        });
    }

    /// A sync completed: everything queued is done.
    pub fn synced(&self) {
        self.with(|state| {
            state.last_updated = Some(SystemTime::now());
            state.oldest_pending = None;
        });
    }

    /// A request to the API server failed.
    pub fn api_failed(&self) {
        self.with(|state| {
            state.api_unreachable_since.get_or_insert_with(Instant::now);
        });
    }

    /// The API server answered.
    pub fn api_answered(&self) {
        self.with(|state| state.api_unreachable_since = None);
    }

    /// Whether the API server is known to be unreachable.
    pub fn api_unreachable(&self) -> bool {
        self.with(|state| state.api_unreachable_since.is_some())
    }

    /// The node is (not) being deleted.
    pub fn set_node_eligible(&self, eligible: bool) {
        self.with(|state| state.node_eligible = eligible);
    }

    /// The verdict and kube-proxy's JSON body (`lastUpdated`,
    /// `currentTime`, `nodeEligible`, plus `reason` when unhealthy).
    pub fn check(&self, check_node: bool) -> (HealthVerdict, serde_json::Value) {
        let state = self.with(|state| state.clone());
        let verdict = evaluate(&state, Instant::now(), self.timeout, check_node);
        let time = |at: SystemTime| {
            k8s_openapi::jiff::Timestamp::try_from(at)
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        let mut body = serde_json::json!({
            "lastUpdated": state.last_updated.map(time).unwrap_or_default(),
            "currentTime": time(SystemTime::now()),
        });
        if check_node {
            body["nodeEligible"] = state.node_eligible.into();
        }
        if let Some(reason) = &verdict.reason {
            body["reason"] = reason.clone().into();
        }
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
        let fresh = HealthState {
            node_eligible: true,
            ..HealthState::default()
        };
        let cases: Vec<(&str, HealthState, bool, bool)> = vec![
            ("nothing pending", fresh.clone(), true, true),
            (
                "an update pending within the timeout",
                HealthState {
                    oldest_pending: ago(30),
                    ..fresh.clone()
                },
                true,
                true,
            ),
            (
                "an update pending too long",
                HealthState {
                    oldest_pending: ago(61),
                    ..fresh.clone()
                },
                false,
                false,
            ),
            (
                "API unreachable briefly",
                HealthState {
                    api_unreachable_since: ago(10),
                    ..fresh.clone()
                },
                true,
                true,
            ),
            (
                "API unreachable too long",
                HealthState {
                    api_unreachable_since: ago(90),
                    ..fresh.clone()
                },
                false,
                false,
            ),
            (
                "node being deleted: /healthz only",
                HealthState {
                    node_eligible: false,
                    ..fresh.clone()
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
    fn the_first_sync_is_pending_from_the_start() {
        let health = Health::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!health.check(false).0.healthy);
        health.synced();
        let (verdict, body) = health.check(true);
        assert!(verdict.healthy);
        assert_eq!(body["nodeEligible"], true);
        assert!(body["lastUpdated"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
    }
}
