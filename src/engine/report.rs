//! What the engine tells its observers: one [`SyncReport`] per sync, with
//! the messages it sent by kind, what the kernel refused, where the time
//! went and the totals of the desired table. The operator endpoints (in
//! `ops`) read these; the engine knows nothing of them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use netlink_ipvs::IpvsOperation;
use tracing::info;

/// The kinds of IPVS write message the agent sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageKind {
    /// `IPVS_CMD_NEW_SERVICE`.
    AddService,
    /// `IPVS_CMD_SET_SERVICE`.
    EditService,
    /// `IPVS_CMD_DEL_SERVICE`.
    DeleteService,
    /// `IPVS_CMD_NEW_DEST`.
    AddRealServer,
    /// `IPVS_CMD_SET_DEST`.
    EditRealServer,
    /// `IPVS_CMD_DEL_DEST`.
    DeleteRealServer,
}

impl MessageKind {
    /// Every kind, in the order logs and metrics list them.
    pub const ALL: [MessageKind; 6] = [
        MessageKind::AddService,
        MessageKind::EditService,
        MessageKind::DeleteService,
        MessageKind::AddRealServer,
        MessageKind::EditRealServer,
        MessageKind::DeleteRealServer,
    ];

    /// The name in logs and metric labels (`add_service`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::AddService => "add_service",
            MessageKind::EditService => "edit_service",
            MessageKind::DeleteService => "delete_service",
            MessageKind::AddRealServer => "add_real_server",
            MessageKind::EditRealServer => "edit_real_server",
            MessageKind::DeleteRealServer => "delete_real_server",
        }
    }

    /// The kind of an operation (`None` only for operation kinds a newer
    /// netlink-ipvs may add).
    pub fn of(operation: &IpvsOperation) -> Option<MessageKind> {
        Some(match operation {
            IpvsOperation::AddService(_) => MessageKind::AddService,
            IpvsOperation::EditService(_) => MessageKind::EditService,
            IpvsOperation::DeleteService(_) => MessageKind::DeleteService,
            IpvsOperation::AddDestination(..) => MessageKind::AddRealServer,
            IpvsOperation::EditDestination(..) => MessageKind::EditRealServer,
            IpvsOperation::DeleteDestination(..) => MessageKind::DeleteRealServer,
            _ => return None,
        })
    }
}

/// Write messages sent, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts([u64; MessageKind::ALL.len()]);

impl MessageCounts {
    /// The messages of one kind.
    pub fn get(&self, kind: MessageKind) -> u64 {
        self.0[kind as usize]
    }

    /// Counts one operation.
    pub fn count(&mut self, operation: &IpvsOperation) {
        if let Some(kind) = MessageKind::of(operation) {
            self.0[kind as usize] += 1;
        }
    }

    /// Every write message.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &MessageCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }

    /// Each kind with its count.
    pub fn iter(&self) -> impl Iterator<Item = (MessageKind, u64)> + '_ {
        MessageKind::ALL
            .into_iter()
            .map(|kind| (kind, self.get(kind)))
    }
}

impl fmt::Display for MessageCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, (kind, count)) in self.iter().enumerate() {
            let space = if at == 0 { "" } else { " " };
            write!(f, "{space}{}={count}", kind.name())?;
        }
        Ok(())
    }
}

/// Which kind of sync a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Everything re-read and recomputed.
    Full,
    /// Some Services recomputed.
    Incremental,
    /// Draining real servers checked.
    Drain,
}

impl SyncKind {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Incremental => "incremental",
            SyncKind::Drain => "drain",
        }
    }
}

/// The time of each part of a sync (profiling evidence in the log).
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncPhases {
    /// Reading the kernel (kube-ipvs0, node addresses, the IPVS table).
    pub read: Duration,
    /// Computing the desired state.
    pub compute: Duration,
    /// Planning and sending IPVS messages (with re-reads).
    pub apply: Duration,
    /// Changing addresses on kube-ipvs0.
    pub addresses: Duration,
    /// Reading and changing the nftables tables.
    pub netfilter: Duration,
    /// Dumping conntrack and deleting stale UDP/SCTP entries.
    pub conntrack: Duration,
}

/// Totals over the desired state after a sync (the table gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DesiredTotals {
    /// Virtual servers.
    pub virtual_servers: usize,
    /// Real servers.
    pub real_servers: usize,
    /// Services with `internalTrafficPolicy: Local` and no local endpoint.
    pub no_local_internal: usize,
    /// Services with `externalTrafficPolicy: Local` and no local endpoint.
    pub no_local_external: usize,
}

/// What a sync sent to the agent's nftables tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetfilterCounts {
    /// `nft -f` transactions committed.
    pub transactions: usize,
    /// Families whose rules were written again.
    pub rules_written: usize,
    /// Set elements added.
    pub elements_added: usize,
    /// Set elements removed.
    pub elements_removed: usize,
    /// Whether syncing them failed (counted in `errors` under 0).
    pub failed: bool,
}

/// What the conntrack cleanup of a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConntrackCounts {
    /// Whether the cleanup ran (it runs only when a UDP or SCTP virtual
    /// server got its first real server or lost one, at start, and to
    /// retry a failed one).
    pub ran: bool,
    /// UDP and SCTP entries read.
    pub listed: usize,
    /// Stale entries deleted.
    pub deleted: usize,
    /// Failures: a dump that failed, or entries that could not be
    /// deleted (never counted in `errors`: IPVS was synced either way).
    pub failed: usize,
}

/// What one sync did.
#[derive(Debug, Clone)]
pub struct SyncReport {
    /// The kind of sync.
    pub kind: SyncKind,
    /// Whether it was a periodic audit (a full sync after the first):
    /// what it sent repaired drift.
    pub repair: bool,
    /// Services recomputed.
    pub services: usize,
    /// IPVS write messages sent, by kind.
    pub sent: MessageCounts,
    /// Operations the kernel refused (retried by the next sync), by errno
    /// (0: not a kernel answer).
    pub errors: BTreeMap<i32, usize>,
    /// Virtual servers re-read because the kernel disagreed with the view.
    pub reread: usize,
    /// Addresses added to `kube-ipvs0`.
    pub addresses_added: usize,
    /// Addresses removed from `kube-ipvs0`.
    pub addresses_removed: usize,
    /// Real servers draining after the sync.
    pub draining: usize,
    /// What was sent to the nftables tables.
    pub netfilter: NetfilterCounts,
    /// What the conntrack cleanup did.
    pub conntrack: ConntrackCounts,
    /// The desired table after the sync.
    pub totals: DesiredTotals,
    /// How long the sync took.
    pub duration: Duration,
    /// Where that time went.
    pub phases: SyncPhases,
}

impl SyncReport {
    /// An empty report of a sync of `kind`.
    pub fn new(kind: SyncKind) -> Self {
        Self {
            kind,
            repair: false,
            services: 0,
            sent: MessageCounts::default(),
            errors: BTreeMap::new(),
            reread: 0,
            addresses_added: 0,
            addresses_removed: 0,
            netfilter: NetfilterCounts::default(),
            conntrack: ConntrackCounts::default(),
            draining: 0,
            totals: DesiredTotals::default(),
            duration: Duration::ZERO,
            phases: SyncPhases::default(),
        }
    }

    /// Operations the kernel refused.
    pub fn failed(&self) -> usize {
        self.errors.values().sum()
    }

    /// Whether the sync did anything worth a log line and the metrics (a
    /// drain check that found nothing to do does not).
    pub fn is_worth_reporting(&self) -> bool {
        self.kind != SyncKind::Drain || self.sent.total() > 0 || self.failed() > 0
    }

    /// The `synced` log line (tests and operators read its fields).
    pub fn log(&self) {
        let sent = |kind| self.sent.get(kind);
        info!(
            kind = self.kind.as_str(),
            services = self.services,
            writes = self.sent.total(),
            add_service = sent(MessageKind::AddService),
            edit_service = sent(MessageKind::EditService),
            delete_service = sent(MessageKind::DeleteService),
            add_real_server = sent(MessageKind::AddRealServer),
            edit_real_server = sent(MessageKind::EditRealServer),
            delete_real_server = sent(MessageKind::DeleteRealServer),
            failed = self.failed(),
            reread = self.reread,
            addresses_added = self.addresses_added,
            addresses_removed = self.addresses_removed,
            nft_transactions = self.netfilter.transactions,
            nft_rules_written = self.netfilter.rules_written,
            nft_elements_added = self.netfilter.elements_added,
            nft_elements_removed = self.netfilter.elements_removed,
            conntrack_deleted = self.conntrack.deleted,
            conntrack_failed = self.conntrack.failed,
            draining = self.draining,
            duration_ms = self.duration.as_secs_f64() * 1e3,
            read_ms = self.phases.read.as_secs_f64() * 1e3,
            compute_ms = self.phases.compute.as_secs_f64() * 1e3,
            apply_ms = self.phases.apply.as_secs_f64() * 1e3,
            addresses_ms = self.phases.addresses.as_secs_f64() * 1e3,
            netfilter_ms = self.phases.netfilter.as_secs_f64() * 1e3,
            conntrack_ms = self.phases.conntrack.as_secs_f64() * 1e3,
            "synced"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_ipvs::{IpvsService, IpvsServiceKey};

    #[test]
    fn message_counts_add_up() {
        let key = IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80);
        let mut counts = MessageCounts::default();
        counts.count(&IpvsOperation::DeleteService(key));
        counts.count(&IpvsOperation::AddService(IpvsService::new(key, "rr")));
        counts.count(&IpvsOperation::AddService(IpvsService::new(key, "rr")));
        assert_eq!(
            (
                counts.get(MessageKind::AddService),
                counts.get(MessageKind::DeleteService)
            ),
            (2, 1)
        );
        assert_eq!(counts.total(), 3);
        let mut twice = counts;
        twice.add(&counts);
        assert_eq!(twice.total(), 6);
        assert_eq!(
            counts.to_string(),
            "add_service=2 edit_service=0 delete_service=1 add_real_server=0 edit_real_server=0 delete_real_server=0"
        );
    }
}
