//! What operators see: observers of the engine's sync reports. The engine
//! imports nothing from here; the driver hands every change and every
//! report to [`Observers`].
//!
//! - [`health`]: `/healthz` and `/livez` semantics and their shared state.
//! - [`metrics`]: the Prometheus metrics and the per-server counters.
//! - [`node_events`]: Kubernetes Events on the agent's Node.
//! - [`http`]: the HTTP servers for health and metrics.
//! - [`process`]: the `process_*` metrics, read from `/proc/self`.
//! - [`service_health`]: the Services' `healthCheckNodePort` servers.

pub mod health;
pub mod http;
pub mod metrics;
pub mod node_events;
pub mod process;
pub mod service_health;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use netlink_ipvs::IpvsServiceKey;
use tracing::info;

use self::health::Health;
use self::metrics::ServerMetrics;
use self::node_events::NodeEvents;
use self::service_health::ServiceHealthServers;
use crate::desired::health_check::HealthCheck;
use crate::engine::report::{SyncKind, SyncReport};
use crate::model::settings::IpFamilyMode;
use crate::model::trigger_time::TriggerTime;
use crate::model::{ObjectRef, Table};

/// Everything that observes the agent's work, fed by the driver.
#[derive(Debug)]
pub struct Observers {
    health: Health,
    server_metrics: ServerMetrics,
    events: Option<NodeEvents>,
    service_health: ServiceHealthServers,
    /// EndpointSlice and Service changes received since the last sync.
    endpoint_changes: usize,
    service_changes: usize,
    /// The `ip_family` labels of the families the agent programs.
    families: &'static [&'static str],
    /// When the agent started: older trigger times are not measured
    /// (kube-proxy's `trackerStartTime`).
    started: SystemTime,
}

impl Observers {
    /// Observers reporting to `health`, the per-server counters and,
    /// when there is an API server, Events on the agent's Node.
    pub fn new(health: Health, server_metrics: ServerMetrics, events: Option<NodeEvents>) -> Self {
        Self {
            service_health: ServiceHealthServers::new(health.clone(), events.clone()),
            health,
            server_metrics,
            events,
            endpoint_changes: 0,
            service_changes: 0,
            families: metrics::ip_family_labels(IpFamilyMode::default()),
            started: SystemTime::now(),
        }
    }

    /// The families the agent programs (the metrics' `ip_family` labels).
    pub fn set_ip_families(&mut self, mode: IpFamilyMode) {
        self.families = metrics::ip_family_labels(mode);
    }

    /// The run loop started: from now on, updates that wait too long for
    /// a sync fail the health checks (kube-proxy's `SyncLoop` start).
    pub fn loop_started(&self) {
        self.health.loop_started();
    }

    /// After a sync: the Services' health-check ports and counts, served
    /// on `addresses` (`None`: every address).
    pub fn health_checks(
        &mut self,
        checks: &BTreeMap<ObjectRef, HealthCheck>,
        addresses: Option<&BTreeSet<IpAddr>>,
    ) {
        self.service_health.sync(checks, addresses);
    }

    /// The agent is about to program the node for the first time.
    pub fn starting(&self) {
        if let Some(events) = &self.events {
            events.starting();
        }
    }

    /// The agent's Node became eligible or not (being deleted).
    pub fn node_eligible(&self, eligible: bool) {
        self.health.set_node_eligible(eligible);
    }

    /// A change that needs a sync arrived, of `endpoints` EndpointSlice
    /// (or Endpoints) objects and `services` Service objects.
    pub fn queued(&mut self, endpoints: usize, services: usize) {
        self.health.queued();
        metrics::record_queued(self.families);
        self.endpoint_changes += endpoints;
        self.service_changes += services;
        metrics::record_changes(
            endpoints,
            services,
            self.endpoint_changes,
            self.service_changes,
        );
    }

    /// A sync completed.
    pub fn synced(&mut self, report: &SyncReport) {
        if !report.is_worth_reporting() {
            return;
        }
        report.log();
        metrics::record_sync(report, self.families);
        if report.kind == SyncKind::Drain {
            return;
        }
        self.health.synced();
        if let Some(events) = &self.events {
            events.report(report);
        }
        (self.endpoint_changes, self.service_changes) = (0, 0);
        metrics::record_changes(0, 0, 0, 0);
    }

    /// Whether the per-server counters are exported
    /// (`--per-server-metrics`).
    pub fn wants_server_metrics(&self) -> bool {
        self.server_metrics.is_enabled()
    }

    /// Refreshes the per-server counters from `kernel` (the engine's view
    /// after a full sync), for the virtual servers `owned` accepts.
    pub fn update_server_metrics(&self, kernel: &Table, owned: impl Fn(&IpvsServiceKey) -> bool) {
        self.server_metrics.update(kernel, owned);
    }

    /// A sync failed as a whole (the next one retries).
    pub fn sync_failed(&self, error: &dyn std::fmt::Display) {
        if let Some(events) = &self.events {
            events.sync_failed(error);
        }
    }

    /// The changes first received at `received` are in the kernel now:
    /// kube-proxy's network-programming latency, one sample from each
    /// trigger time (of a family the agent programs, not older than the
    /// agent), and a log line with the latency from receipt.
    pub fn network_programmed(
        &self,
        received: Instant,
        services: usize,
        trigger_times: &[TriggerTime],
    ) {
        let now = SystemTime::now();
        for (family, latency) in
            programming_latencies(trigger_times, self.started, self.families, now)
        {
            metrics::record_network_programming(family, latency);
        }
        let latency = received.elapsed();
        info!(
            services,
            event_to_ack_ms = latency.as_secs_f64() * 1e3,
            "network programmed"
        );
    }
}

/// The network-programming latencies at `now` of `trigger_times`, as
/// kube-proxy measures them: only those of a family the agent programs
/// (`families`) and not older than the agent (`started`: kube-proxy's
/// change tracker skips trigger times before its start, which a restart
/// would otherwise report as huge latencies). A trigger time in the
/// future (clock skew between the controller and this node) counts 0.
pub fn programming_latencies<'a>(
    trigger_times: &'a [TriggerTime],
    started: SystemTime,
    families: &'a [&'static str],
    now: SystemTime,
) -> impl Iterator<Item = (&'static str, std::time::Duration)> + 'a {
    trigger_times
        .iter()
        .filter(move |trigger| trigger.at >= started && families.contains(&trigger.family))
        .map(move |trigger| {
            (
                trigger.family,
                now.duration_since(trigger.at).unwrap_or_default(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn latencies_skip_old_and_other_family_trigger_times() {
        let at = |seconds| UNIX_EPOCH + Duration::from_secs(seconds);
        let trigger = |family, seconds| TriggerTime {
            service: ObjectRef::new("default", "web"),
            family,
            at: at(seconds),
        };
        let triggers = [
            trigger("IPv4", 90),  // before the start: skipped
            trigger("IPv4", 100), // at the start
            trigger("IPv4", 104),
            trigger("IPv6", 104), // a family not programmed
            trigger("IPv4", 200), // in the future: 0
        ];
        let latencies: Vec<_> =
            programming_latencies(&triggers, at(100), &["IPv4"], at(110)).collect();
        assert_eq!(
            latencies,
            [
                ("IPv4", Duration::from_secs(10)),
                ("IPv4", Duration::from_secs(6)),
                ("IPv4", Duration::ZERO),
            ]
        );
        let dual: Vec<_> =
            programming_latencies(&triggers, at(100), &["IPv4", "IPv6"], at(110)).collect();
        assert_eq!(dual.len(), 4);
    }
}
