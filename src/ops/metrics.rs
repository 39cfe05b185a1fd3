//! Prometheus metrics: kube-proxy's names where the meaning is the same,
//! `ipvs_agent_*` for the rest, through the `metrics` facade and
//! metrics-exporter-prometheus (rendered by the HTTP server in
//! [`super::http`]).
//!
//! Per-server traffic counters come from the kernel's 64-bit counters,
//! read with the table at every full resync; they are rendered from a
//! snapshot (not registered series) so that a virtual server that goes
//! away takes its series with it, and they are bounded: at most
//! `limit` series rows, the rest counted in
//! `ipvs_agent_server_metrics_omitted`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use netlink_ipvs::{IpvsServiceKey, IpvsStats};

use crate::engine::report::SyncReport;
use crate::model::Table;

/// kube-proxy's buckets for its duration histograms (1 ms to ~16 s).
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192, 16.384,
];

/// Installs the global recorder and describes every metric; returns the
/// handle that renders them.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            &DURATION_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_histogram!(
        "kubeproxy_sync_proxy_rules_duration_seconds",
        metrics::Unit::Seconds,
        "SyncProxyRules latency: how long each sync (full, incremental or drain) took"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        metrics::Unit::Seconds,
        "The last time a sync completed (Unix seconds)"
    );
    describe_histogram!(
        "kubeproxy_network_programming_duration_seconds",
        metrics::Unit::Seconds,
        "In-cluster network programming latency: from the agent's receipt of a Service or EndpointSlice change to the kernel's ACK"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "EndpointSlice changes received and not yet synced"
    );
    describe_counter!(
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "EndpointSlice changes received"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_service_changes_pending",
        "Service changes received and not yet synced"
    );
    describe_counter!(
        "kubeproxy_sync_proxy_rules_service_changes_total",
        "Service changes received"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
        "Services with a Local traffic policy (label traffic_policy: internal or external) and no endpoint on this node"
    );
    describe_counter!(
        "kubeproxy_proxy_healthz_total",
        "/healthz answers, by HTTP code"
    );
    describe_counter!(
        "kubeproxy_proxy_livez_total",
        "/livez answers, by HTTP code"
    );
    describe_gauge!(
        "ipvs_agent_api_unreachable_seconds",
        metrics::Unit::Seconds,
        "How long the API server has been unreachable (0 while it answers); health checks do not depend on it"
    );
    describe_gauge!(
        "ipvs_agent_health_check_ports",
        "healthCheckNodePort servers open"
    );
    describe_counter!(
        "ipvs_agent_health_check_bind_failures_total",
        "Attempts to open a Service's healthCheckNodePort that failed (retried after each sync)"
    );
    describe_gauge!(
        "ipvs_agent_virtual_servers",
        "Virtual servers the agent programs"
    );
    describe_gauge!("ipvs_agent_real_servers", "Real servers the agent programs");
    describe_gauge!(
        "ipvs_agent_draining_real_servers",
        "Removed TCP real servers kept at weight 0 until their connections end"
    );
    describe_counter!(
        "ipvs_agent_netlink_messages_total",
        "IPVS write messages sent, by kind"
    );
    describe_counter!(
        "ipvs_agent_kernel_errors_total",
        "Operations the kernel refused, by errno (0: not a kernel answer)"
    );
    describe_counter!(
        "ipvs_agent_drift_repairs_total",
        "Write messages periodic full resyncs had to send to repair changes made behind the agent's back"
    );
    describe_counter!("ipvs_agent_syncs_total", "Syncs completed, by kind");
    describe_counter!(
        "ipvs_agent_nftables_transactions_total",
        "nft -f transactions committed on the agent's nftables tables"
    );
    describe_counter!(
        "ipvs_agent_nftables_elements_total",
        "nftables set elements sent, by operation (add, delete)"
    );
    describe_counter!(
        "ipvs_agent_nftables_rules_written_total",
        "Times a family's nftables rules were written (at start, and to repair drift)"
    );
    describe_counter!(
        "ipvs_agent_conntrack_entries_deleted_total",
        "Stale UDP and SCTP conntrack entries deleted"
    );
    describe_counter!(
        "ipvs_agent_conntrack_failures_total",
        "Conntrack dumps that failed and entries that could not be deleted"
    );
    describe_histogram!(
        "kubeproxy_conntrack_reconciler_sync_duration_seconds",
        "How long a conntrack cleanup took (kube-proxy's name)"
    );
}

/// Counts an answer of `/healthz` (`check_node`) or `/livez` by code
/// (kube-proxy's `kubeproxy_proxy_healthz_total`, `..._livez_total`).
pub fn record_health_check(check_node: bool, code: u16) {
    let name = if check_node {
        "kubeproxy_proxy_healthz_total"
    } else {
        "kubeproxy_proxy_livez_total"
    };
    counter!(name, "code" => code.to_string()).increment(1);
}

/// How long the API server has been unreachable (0 while it answers).
pub fn record_api_unreachable(outage: Option<Duration>) {
    gauge!("ipvs_agent_api_unreachable_seconds").set(outage.map_or(0.0, |d| d.as_secs_f64()));
}

/// Records a completed sync: its duration and messages, and the size of
/// the desired table after it (and the Local-policy Services without
/// local endpoints).
pub fn record_sync(report: &SyncReport) {
    histogram!("kubeproxy_sync_proxy_rules_duration_seconds").record(report.duration.as_secs_f64());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    gauge!("kubeproxy_sync_proxy_rules_last_timestamp_seconds").set(now.as_secs_f64());
    counter!("ipvs_agent_syncs_total", "kind" => report.kind.as_str()).increment(1);
    for (kind, count) in report.sent.iter() {
        counter!("ipvs_agent_netlink_messages_total", "kind" => kind.name()).increment(count);
    }
    for (errno, count) in &report.errors {
        counter!("ipvs_agent_kernel_errors_total", "errno" => errno.to_string())
            .increment(*count as u64);
    }
    if report.repair {
        counter!("ipvs_agent_drift_repairs_total").increment(report.sent.total());
    }
    let netfilter = &report.netfilter;
    counter!("ipvs_agent_nftables_transactions_total").increment(netfilter.transactions as u64);
    counter!("ipvs_agent_nftables_elements_total", "operation" => "add")
        .increment(netfilter.elements_added as u64);
    counter!("ipvs_agent_nftables_elements_total", "operation" => "delete")
        .increment(netfilter.elements_removed as u64);
    counter!("ipvs_agent_nftables_rules_written_total").increment(netfilter.rules_written as u64);
    let conntrack = &report.conntrack;
    counter!("ipvs_agent_conntrack_entries_deleted_total").increment(conntrack.deleted as u64);
    counter!("ipvs_agent_conntrack_failures_total").increment(conntrack.failed as u64);
    if conntrack.ran {
        histogram!("kubeproxy_conntrack_reconciler_sync_duration_seconds")
            .record(report.phases.conntrack.as_secs_f64());
    }
    gauge!("ipvs_agent_draining_real_servers").set(report.draining as f64);
    let totals = &report.totals;
    gauge!("ipvs_agent_virtual_servers").set(totals.virtual_servers as f64);
    gauge!("ipvs_agent_real_servers").set(totals.real_servers as f64);
    gauge!("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "traffic_policy" => "internal")
        .set(totals.no_local_internal as f64);
    gauge!("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "traffic_policy" => "external")
        .set(totals.no_local_external as f64);
}

/// Records one network programming latency.
pub fn record_network_programming(latency: Duration) {
    histogram!("kubeproxy_network_programming_duration_seconds").record(latency.as_secs_f64());
}

/// Records received changes (`endpoints`: EndpointSlice events,
/// `services`: Service events) and what is pending.
pub fn record_changes(
    endpoints: usize,
    services: usize,
    endpoints_pending: usize,
    services_pending: usize,
) {
    counter!("kubeproxy_sync_proxy_rules_endpoint_changes_total").increment(endpoints as u64);
    counter!("kubeproxy_sync_proxy_rules_service_changes_total").increment(services as u64);
    gauge!("kubeproxy_sync_proxy_rules_endpoint_changes_pending").set(endpoints_pending as f64);
    gauge!("kubeproxy_sync_proxy_rules_service_changes_pending").set(services_pending as f64);
}

/// The per-server counters of the agent's virtual servers, as last read
/// from the kernel; shared with the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    text: Arc<Mutex<String>>,
    enabled: bool,
    limit: usize,
}

impl ServerMetrics {
    /// Whether the series are exported (`--per-server-metrics`): the
    /// kernel view keeps counters only then.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// `enabled`: `--per-server-metrics`; `limit`: the most series rows
    /// (virtual plus real servers) rendered.
    pub fn new(enabled: bool, limit: usize) -> Self {
        Self {
            text: Arc::new(Mutex::new(String::new())),
            enabled,
            limit,
        }
    }

    /// Replaces the snapshot with the counters of `kernel`'s virtual
    /// servers that `owned` accepts.
    pub fn update(&self, kernel: &Table, owned: impl Fn(&IpvsServiceKey) -> bool) {
        if !self.enabled {
            return;
        }
        let text = render_server_metrics(kernel, owned, self.limit);
        *self.text.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    /// The rendered snapshot (Prometheus text format).
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

const SERVER_FAMILIES: [(&str, &str); 5] = [
    ("connections_total", "Connections scheduled"),
    ("packets_in_total", "Packets received"),
    ("packets_out_total", "Packets sent"),
    ("bytes_in_total", "Bytes received"),
    ("bytes_out_total", "Bytes sent"),
];

fn stat(stats: &IpvsStats, family: usize) -> u64 {
    match family {
        0 => stats.connections,
        1 => stats.in_packets,
        2 => stats.out_packets,
        3 => stats.in_bytes,
        _ => stats.out_bytes,
    }
}

/// Renders the per-virtual-server and per-real-server counters of
/// `kernel` (only the virtual servers `owned` accepts), at most `limit`
/// rows, in Prometheus text format.
pub fn render_server_metrics(
    kernel: &Table,
    owned: impl Fn(&IpvsServiceKey) -> bool,
    limit: usize,
) -> String {
    let mut rows: Vec<(String, bool, IpvsStats)> = Vec::new();
    let mut omitted = 0usize;
    for (key, entry) in kernel.iter().filter(|(key, _)| owned(key)) {
        let virtual_server = key.to_string();
        let service_stats = entry.service.stats.as_deref().copied().unwrap_or_default();
        if rows.len() < limit {
            rows.push((
                format!("virtual_server=\"{virtual_server}\""),
                true,
                service_stats,
            ));
        } else {
            omitted += 1;
        }
        for (real_key, real) in &entry.real_servers {
            if rows.len() < limit {
                rows.push((
                    format!(
                        "virtual_server=\"{virtual_server}\",real_server=\"{}\"",
                        real_key
                    ),
                    false,
                    real.stats.as_deref().copied().unwrap_or_default(),
                ));
            } else {
                omitted += 1;
            }
        }
    }
    let mut out = String::new();
    for (level, is_virtual) in [("virtual_server", true), ("real_server", false)] {
        for (index, (family, help)) in SERVER_FAMILIES.iter().enumerate() {
            let name = format!("ipvs_agent_{level}_{family}");
            let _ = writeln!(out, "# HELP {name} {help} (kernel counter)");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, _, stats) in rows.iter().filter(|row| row.1 == is_virtual) {
                let _ = writeln!(out, "{name}{{{labels}}} {}", stat(stats, index));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP ipvs_agent_server_metrics_omitted Virtual and real servers left out of the per-server metrics by the limit\n# TYPE ipvs_agent_server_metrics_omitted gauge\nipvs_agent_server_metrics_omitted {omitted}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TableEntry;
    use netlink_ipvs::{IpvsDestination, IpvsForwardingMethod, IpvsService};

    fn table() -> Table {
        let mut table = Table::new();
        for (address, connections) in [("10.96.0.10", 5), ("10.96.0.11", 7)] {
            let key = IpvsServiceKey::tcp(address.parse().unwrap(), 80);
            let mut service = IpvsService::new(key, "rr");
            service.stats = Some(Box::new(IpvsStats {
                connections,
                ..IpvsStats::default()
            }));
            let mut real = IpvsDestination::new(
                "10.244.0.1".parse().unwrap(),
                8080,
                IpvsForwardingMethod::Masquerade,
                1,
            );
            real.stats = Some(Box::new(IpvsStats {
                connections,
                in_bytes: 100,
                ..IpvsStats::default()
            }));
            table.insert(
                key,
                TableEntry {
                    service,
                    real_servers: [(real.key, real)].into(),
                },
            );
        }
        table
    }

    #[test]
    fn server_metrics_are_rendered_owned_only_and_bounded() {
        let text = render_server_metrics(&table(), |_| true, 100);
        assert!(
            text.contains("ipvs_agent_virtual_server_connections_total{virtual_server=\"TCP 10.96.0.10:80\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("ipvs_agent_real_server_bytes_in_total{virtual_server=\"TCP 10.96.0.11:80\",real_server=\"10.244.0.1:8080\"} 100\n"), "{text}");
        assert!(text.contains("ipvs_agent_server_metrics_omitted 0\n"));

        let owned_one =
            render_server_metrics(&table(), |key| key.to_string().contains("10.96.0.11"), 100);
        assert!(!owned_one.contains("10.96.0.10:80"), "{owned_one}");

        let bounded = render_server_metrics(&table(), |_| true, 3);
        assert!(
            bounded.contains("ipvs_agent_server_metrics_omitted 1\n"),
            "{bounded}"
        );
    }
}
