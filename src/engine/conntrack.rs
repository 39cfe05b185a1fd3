//! The conntrack cleanup after a sync: deletes the UDP and SCTP entries
//! that would keep sending a client to a real server that is gone, or
//! that were made while a virtual server had none (which entries: the
//! pure `diff::conntrack`).
//!
//! It runs after the IPVS part of a sync succeeded (nothing refused), and
//! only when needed: at the first full sync, when a UDP or SCTP virtual
//! server got its first real server or lost one (kube-proxy's
//! `ConntrackCleanupRequired`, per virtual server), and to retry a cleanup
//! that failed or was held back by a refused IPVS operation. Periodic
//! resyncs do not dump the conntrack table when nothing changed: every
//! stale entry is made stale by such a change, and the change triggers
//! the cleanup (drift repaired by a resync is such a change too, seen
//! against the freshly read kernel table). A failure is logged and
//! counted in the report, never a failed sync.

use std::collections::BTreeSet;
use std::time::Instant;

use netlink_ipvs::IpvsServiceKey;
use tracing::{debug, warn};

use super::kernel::Kernel;
use super::netfilter::families;
use super::report::SyncReport;
use super::SyncEngine;
use crate::diff::conntrack::{cleanup_needed, stale_entries, CLEANED_PROTOCOLS};

impl<K: Kernel> SyncEngine<K> {
    /// Notes, before converging `keys`, whether the sync calls for a
    /// cleanup (the view still holds the kernel's table before it).
    pub(super) fn note_conntrack_changes(&mut self, keys: &BTreeSet<IpvsServiceKey>) {
        if cleanup_needed(self.desired.table(), &self.view, keys) {
            self.conntrack_pending = true;
        }
    }

    /// Runs the cleanup if one is pending and the IPVS part of this sync
    /// succeeded (`report` holds its refusals so far).
    pub(super) async fn clean_conntrack(&mut self, report: &mut SyncReport) {
        if !self.settings.conntrack_cleanup || !self.conntrack_pending {
            return;
        }
        if report.failed() > 0 {
            debug!("conntrack cleanup held back: the kernel refused IPVS operations");
            return;
        }
        let started = Instant::now();
        report.conntrack.ran = true;
        self.conntrack_pending = false;
        let families = families(self.settings.ip_family);
        let dump = match self
            .kernel
            .conntrack_entries(families, CLEANED_PROTOCOLS.to_vec())
            .await
        {
            Ok(dump) => dump,
            Err(error) => {
                warn!(%error, "conntrack cleanup: listing entries (retried by the next sync)");
                report.conntrack.failed += 1;
                self.conntrack_pending = true;
                report.phases.conntrack = started.elapsed();
                return;
            }
        };
        report.conntrack.listed = dump.entries.len();
        if dump.skipped > 0 {
            debug!(
                skipped = dump.skipped,
                "conntrack messages without ports or undecodable"
            );
        }
        let stale = stale_entries(self.desired.table(), &dump.entries);
        drop(dump);
        if !stale.is_empty() {
            for result in self.kernel.delete_conntrack(stale).await {
                match result {
                    Ok(()) => report.conntrack.deleted += 1,
                    Err(error) => {
                        warn!(%error, "conntrack cleanup (retried by the next sync)");
                        report.conntrack.failed += 1;
                        self.conntrack_pending = true;
                    }
                }
            }
        }
        report.phases.conntrack = started.elapsed();
    }
}
