//! Prometheus metrics: every metric kube-proxy registers in IPVS mode,
//! with kube-proxy's name, type, labels and buckets (the list, with its
//! source, is `integration/tests/kube_proxy_metrics.txt`; the guest test
//! `kube_proxy_metrics` checks a real scrape against it), `process_*`
//! as Prometheus' Go client writes them ([`super::process`]), and
//! `ipvs_agent_*` for the rest, through the `metrics` facade and
//! metrics-exporter-prometheus (rendered by the HTTP server in
//! [`super::http`]).
//!
//! kube-proxy's metrics in IPVS mode (`RegisterMetrics(mode)` of
//! `pkg/proxy/metrics/metrics.go`, labels as in the v1.34 metrics
//! reference):
//!
//! - `kubeproxy_sync_proxy_rules_duration_seconds` (histogram,
//!   `ip_family`, ExponentialBuckets(0.001, 2, 15)): each full or
//!   incremental sync (drain checks are the agent's own, not counted);
//! - `kubeproxy_sync_proxy_rules_last_timestamp_seconds` and
//!   `..._last_queued_timestamp_seconds` (gauges, `ip_family`);
//! - `kubeproxy_network_programming_duration_seconds` (histogram,
//!   `ip_family`, 0 to 300 s): from an EndpointSlice's
//!   `endpoints.kubernetes.io/last-change-trigger-time` to the sync that
//!   put it in the kernel;
//! - `kubeproxy_sync_proxy_rules_{endpoint,service}_changes_{pending,total}`
//!   (gauges and counters, no label);
//! - `kubeproxy_sync_proxy_rules_iptables_restore_failures_total`
//!   (counter, `ip_family`): the agent's nftables transactions that
//!   failed (its netfilter layer takes the place of iptables-restore);
//! - `kubeproxy_sync_proxy_rules_no_local_endpoints_total` (gauge,
//!   `ip_family`, `traffic_policy`);
//! - `kubeproxy_proxy_healthz_total`, `kubeproxy_proxy_livez_total`
//!   (counters, `code`);
//! - `kubeproxy_conntrack_reconciler_sync_duration_seconds` (histogram,
//!   `ip_family`) and `kubeproxy_conntrack_reconciler_deleted_entries_total`
//!   (counter, `ip_family`).
//!
//! kube-proxy's iptables-mode `sync_full_`/`sync_partial_proxy_rules_*`
//! are not registered in IPVS mode, so not here either.
//!
//! **`ip_family`** is `IPv4` or `IPv6`, as kube-proxy writes it. kube-proxy
//! runs one proxier per family (two in dual-stack), each recording its
//! own series; the agent syncs every family it programs in one sync, so
//! each series of that sync is recorded under each family the sync
//! covered ([`ip_family_labels`]: one in single-stack, both in
//! dual-stack, with the same values). The one exception is the network
//! programming latency, which belongs to one EndpointSlice and so is
//! recorded under that slice's `addressType` only, as the proxier of that
//! family records it.
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

use crate::engine::report::{SyncKind, SyncReport};
use crate::model::settings::IpFamilyMode;
use crate::model::Table;

/// `prometheus.ExponentialBuckets(0.001, 2, 15)`: kube-proxy's sync and
/// conntrack reconciler histograms (1 ms to ~16 s).
pub fn sync_duration_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// kube-proxy's `kubeproxy_network_programming_duration_seconds`
/// buckets: `MergeBuckets(LinearBuckets(0.25, 0.25, 2), LinearBuckets(1,
/// 1, 59), LinearBuckets(60, 5, 12), LinearBuckets(120, 30, 7))`, after a
/// leading 0 (its `merge` starts from a one-element slice).
pub fn network_programming_buckets() -> Vec<f64> {
    let linear =
        |start: f64, width: f64, count: u32| (0..count).map(move |i| start + width * f64::from(i));
    std::iter::once(0.0)
        .chain(linear(0.25, 0.25, 2))
        .chain(linear(1.0, 1.0, 59))
        .chain(linear(60.0, 5.0, 12))
        .chain(linear(120.0, 30.0, 7))
        .collect()
}

/// The histograms with kube-proxy's sync buckets.
const SYNC_HISTOGRAMS: [&str; 2] = [
    "kubeproxy_sync_proxy_rules_duration_seconds",
    "kubeproxy_conntrack_reconciler_sync_duration_seconds",
];

/// The `ip_family` label values of the families a sync covers (see the
/// module doc: every family the agent programs).
pub fn ip_family_labels(mode: IpFamilyMode) -> &'static [&'static str] {
    match mode {
        IpFamilyMode::Ipv4 => &["IPv4"],
        IpFamilyMode::Ipv6 => &["IPv6"],
        IpFamilyMode::Dual => &["IPv4", "IPv6"],
    }
}

/// Installs the global recorder and describes every metric; returns the
/// handle that renders them.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let mut builder = PrometheusBuilder::new();
    for name in SYNC_HISTOGRAMS {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(name.into()), &sync_duration_buckets())?;
    }
    let handle = builder
        .set_buckets_for_metric(
            Matcher::Full("kubeproxy_network_programming_duration_seconds".into()),
            &network_programming_buckets(),
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_histogram!(
        "kubeproxy_sync_proxy_rules_duration_seconds",
        metrics::Unit::Seconds,
        "SyncProxyRules latency in seconds"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        metrics::Unit::Seconds,
        "The last time proxy rules were successfully synced"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
        metrics::Unit::Seconds,
        "The last time a sync of proxy rules was queued"
    );
    describe_histogram!(
        "kubeproxy_network_programming_duration_seconds",
        metrics::Unit::Seconds,
        "In Cluster Network Programming Latency in seconds"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "Pending proxy rules Endpoint changes"
    );
    describe_counter!(
        "kubeproxy_sync_proxy_rules_endpoint_changes_total",
        "Cumulative proxy rules Endpoint changes"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_service_changes_pending",
        "Pending proxy rules Service changes"
    );
    describe_counter!(
        "kubeproxy_sync_proxy_rules_service_changes_total",
        "Cumulative proxy rules Service changes"
    );
    describe_counter!(
        "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
        "Cumulative proxy iptables restore failures (the agent's failed nftables transactions)"
    );
    describe_gauge!(
        "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
        "Number of services with a Local traffic policy and no endpoints"
    );
    describe_counter!(
        "kubeproxy_proxy_healthz_total",
        "Cumulative proxy healthz HTTP status"
    );
    describe_counter!(
        "kubeproxy_proxy_livez_total",
        "Cumulative proxy livez HTTP status"
    );
    describe_histogram!(
        "kubeproxy_conntrack_reconciler_sync_duration_seconds",
        metrics::Unit::Seconds,
        "ReconcileConntrackFlowsLatency latency in seconds"
    );
    describe_counter!(
        "kubeproxy_conntrack_reconciler_deleted_entries_total",
        "Cumulative conntrack flows deleted by conntrack reconciler"
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
        "ipvs_agent_undecodable_objects_total",
        "Objects received from the API server (listed or watched) that did not decode as their kind, by kind; their last good version is kept"
    );
    describe_counter!(
        "ipvs_agent_conntrack_failures_total",
        "Conntrack dumps that failed and entries that could not be deleted"
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

/// Counts an object of `kind` received that did not decode as its type.
pub fn record_undecodable(kind: &str) {
    counter!("ipvs_agent_undecodable_objects_total", "kind" => kind.to_owned()).increment(1);
}

/// How long the API server has been unreachable (0 while it answers).
pub fn record_api_unreachable(outage: Option<Duration>) {
    gauge!("ipvs_agent_api_unreachable_seconds").set(outage.map_or(0.0, |d| d.as_secs_f64()));
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// Records a completed sync of the families `families` (their
/// `ip_family` labels): kube-proxy's sync metrics (not for drain checks,
/// which kube-proxy does not have), then the agent's own: messages,
/// refusals, the size of the desired table.
pub fn record_sync(report: &SyncReport, families: &[&'static str]) {
    if report.kind != SyncKind::Drain {
        record_kube_proxy_sync(report, families);
    }
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
    gauge!("ipvs_agent_draining_real_servers").set(report.draining as f64);
    let totals = &report.totals;
    gauge!("ipvs_agent_virtual_servers").set(totals.virtual_servers as f64);
    gauge!("ipvs_agent_real_servers").set(totals.real_servers as f64);
}

fn record_kube_proxy_sync(report: &SyncReport, families: &[&'static str]) {
    let now = unix_now();
    let totals = &report.totals;
    for &family in families {
        histogram!("kubeproxy_sync_proxy_rules_duration_seconds", "ip_family" => family)
            .record(report.duration.as_secs_f64());
        // kube-proxy sets it only after a sync whose rules were written.
        if !report.netfilter.failed {
            gauge!("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "ip_family" => family)
                .set(now);
        }
        gauge!("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "ip_family" => family, "traffic_policy" => "internal")
        .set(totals.no_local_internal as f64);
        gauge!("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "ip_family" => family, "traffic_policy" => "external")
        .set(totals.no_local_external as f64);
        if report.conntrack.ran {
            histogram!("kubeproxy_conntrack_reconciler_sync_duration_seconds", "ip_family" => family)
                .record(report.phases.conntrack.as_secs_f64());
        }
    }
    // A failed nftables transaction and the deleted conntrack entries are
    // counted once, under the first family: one transaction covers both
    // tables and the cleanup does not tell entries apart by family, so
    // adding them under each family would count them twice in a sum.
    for (index, &family) in families.iter().enumerate() {
        let first = index == 0;
        counter!("kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "ip_family" => family)
            .increment(u64::from(first && report.netfilter.failed));
        counter!("kubeproxy_conntrack_reconciler_deleted_entries_total", "ip_family" => family)
            .increment(if first {
                report.conntrack.deleted as u64
            } else {
                0
            });
    }
}

/// Records one network programming latency of an EndpointSlice of
/// `family` (`IPv4` or `IPv6`: its `addressType`).
pub fn record_network_programming(family: &'static str, latency: Duration) {
    histogram!("kubeproxy_network_programming_duration_seconds", "ip_family" => family)
        .record(latency.as_secs_f64());
}

/// A sync was queued (a change that needs one arrived): kube-proxy's
/// `kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds`.
pub fn record_queued(families: &[&'static str]) {
    let now = unix_now();
    for &family in families {
        gauge!("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "ip_family" => family)
            .set(now);
    }
}

/// Records received changes (`endpoints`: EndpointSlice changes,
/// `services`: Service changes) and what is pending.
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
    fn buckets_are_kube_proxys() {
        let sync = sync_duration_buckets();
        assert_eq!(sync.len(), 15);
        assert_eq!((sync[0], sync[1], sync[14]), (0.001, 0.002, 16.384));
        let programming = network_programming_buckets();
        assert_eq!(programming.len(), 1 + 2 + 59 + 12 + 7);
        assert_eq!(&programming[..5], &[0.0, 0.25, 0.5, 1.0, 2.0]);
        assert_eq!(programming[61], 59.0);
        assert_eq!(&programming[62..64], &[60.0, 65.0]);
        assert_eq!(programming[73], 115.0);
        assert_eq!(
            &programming[74..],
            &[120.0, 150.0, 180.0, 210.0, 240.0, 270.0, 300.0]
        );
    }

    /// The buckets of `kube_proxy_metrics.txt` (which the guest test
    /// checks a real scrape against) are the ones installed here.
    #[test]
    fn the_list_files_buckets_are_the_installed_ones() {
        let list = include_str!("../../integration/tests/kube_proxy_metrics.txt");
        let buckets = |name: &str| -> Vec<f64> {
            let line = list
                .lines()
                .find(|line| line.starts_with(&format!("{name} |")))
                .unwrap_or_else(|| panic!("{name} is listed"));
            let field = line.rsplit('|').next().unwrap().trim();
            field.split(',').map(|b| b.parse().unwrap()).collect()
        };
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
        };
        for name in SYNC_HISTOGRAMS {
            assert!(close(&buckets(name), &sync_duration_buckets()), "{name}");
        }
        assert!(close(
            &buckets("kubeproxy_network_programming_duration_seconds"),
            &network_programming_buckets()
        ));
    }

    #[test]
    fn ip_family_labels_are_kube_proxys() {
        assert_eq!(ip_family_labels(IpFamilyMode::Ipv4), ["IPv4"]);
        assert_eq!(ip_family_labels(IpFamilyMode::Ipv6), ["IPv6"]);
        assert_eq!(ip_family_labels(IpFamilyMode::Dual), ["IPv4", "IPv6"]);
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
