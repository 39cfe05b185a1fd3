//! Plan, apply, re-read: the rounds that make the kernel's virtual servers
//! equal to the desired ones, a chunk of virtual servers at a time.
//!
//! A virtual server the kernel disagreed about (the view was wrong: EEXIST
//! on an add, ESRCH / ENOENT on an edit) is re-read and planned again, at
//! most [`REREAD_ROUNDS`] times in one sync; the next sync retries what
//! still disagrees.

use std::collections::BTreeSet;
use std::time::Instant;

use netlink_ipvs::IpvsServiceKey;
use tracing::{debug, warn};

use super::apply::{apply_batch, reread, service_key};
use super::kernel::Kernel;
use super::report::SyncReport;
use super::SyncEngine;
use crate::diff::plan::is_tcp;
use crate::diff::{plan_changes, DrainPolicy, Draining, Ownership};
use crate::model::Table;

/// How many times a virtual server whose view was wrong is re-read and
/// planned again within one sync.
pub const REREAD_ROUNDS: usize = 3;

/// How many virtual servers are planned and applied together: planning a
/// whole table at once held a copy of both tables and every operation
/// (hundreds of MiB for 220,000 objects) for no gain; the batches are
/// pipelined either way.
const VIRTUAL_SERVERS_PER_PLAN: usize = 2048;

impl<K: Kernel> SyncEngine<K> {
    /// Plans and applies the virtual servers `keys`, re-reading those the
    /// kernel disagreed about and planning them again.
    pub(super) async fn converge(
        &mut self,
        mut keys: BTreeSet<IpvsServiceKey>,
        report: &mut SyncReport,
    ) {
        let ownership = self.ownership();
        let policy = DrainPolicy {
            timeout: self.settings.drain_timeout,
        };
        self.read_leaving_real_servers(&keys).await;
        for round in 0..=REREAD_ROUNDS {
            if keys.is_empty() {
                return;
            }
            let mut disagreed = BTreeSet::new();
            let all: Vec<IpvsServiceKey> = keys.iter().copied().collect();
            for chunk in all.chunks(VIRTUAL_SERVERS_PER_PLAN) {
                let chunk: BTreeSet<IpvsServiceKey> = chunk.iter().copied().collect();
                disagreed.extend(
                    self.plan_and_apply(&chunk, &ownership, &policy, report)
                        .await,
                );
            }
            if disagreed.is_empty() || round == REREAD_ROUNDS {
                if !disagreed.is_empty() {
                    warn!(
                        virtual_servers = disagreed.len(),
                        "the kernel still disagrees after {REREAD_ROUNDS} re-reads; the next sync retries"
                    );
                }
                return;
            }
            debug!(
                virtual_servers = disagreed.len(),
                "re-reading what the kernel disagreed about"
            );
            report.reread += disagreed.len();
            if let Err(error) = reread(&mut self.kernel, &disagreed, &mut self.view).await {
                warn!(%error, "re-reading virtual servers failed; the next sync retries");
                return;
            }
            keys = disagreed;
        }
    }

    /// Real servers about to leave a TCP virtual server are drained only
    /// if they have connections: reads their current counts first (the
    /// view's are from the last read).
    async fn read_leaving_real_servers(&mut self, keys: &BTreeSet<IpvsServiceKey>) {
        let desired = self.desired.table();
        let leaving: BTreeSet<IpvsServiceKey> = keys
            .iter()
            .filter(|key| is_tcp(key))
            .filter(|key| match (desired.get(key), self.view.get(key)) {
                (Some(wanted), Some(current)) => current
                    .real_servers
                    .keys()
                    .any(|real| !wanted.real_servers.contains_key(real)),
                _ => false,
            })
            .copied()
            .collect();
        if leaving.is_empty() {
            return;
        }
        if let Err(error) = reread(&mut self.kernel, &leaving, &mut self.view).await {
            warn!(%error, "reading connection counts of leaving real servers");
        }
    }

    /// Plans and applies the virtual servers `keys` once; returns those
    /// the kernel disagreed about.
    async fn plan_and_apply(
        &mut self,
        keys: &BTreeSet<IpvsServiceKey>,
        ownership: &Ownership,
        policy: &DrainPolicy,
        report: &mut SyncReport,
    ) -> BTreeSet<IpvsServiceKey> {
        let desired = restrict(self.desired.table(), keys);
        let kernel = restrict(&self.view, keys);
        let draining: Draining = self
            .draining
            .iter()
            .filter(|((key, _), _)| keys.contains(key))
            .map(|(entry, started)| (*entry, *started))
            .collect();
        let plan = plan_changes(
            &desired,
            &kernel,
            ownership,
            &draining,
            policy,
            Instant::now(),
        );
        self.draining.retain(|(key, _), _| !keys.contains(key));
        self.draining.extend(plan.draining);
        let batch = apply_batch(&mut self.kernel, plan.operations, &mut self.view).await;
        report.sent.add(&batch.sent);
        for failed in &batch.failed {
            let key = service_key(&failed.operation);
            match key.as_ref().and_then(|key| self.desired.owner_of(key)) {
                Some(service) => warn!(
                    error = %failed.error,
                    %service,
                    "kernel refused: {} (Service {service}; the next resync retries it)",
                    failed.operation
                ),
                None => warn!(
                    error = %failed.error,
                    "kernel refused: {} (the next resync retries it)",
                    failed.operation
                ),
            }
            *report
                .errors
                .entry(failed.error.errno().unwrap_or(0))
                .or_default() += 1;
        }
        batch.reread
    }
}

/// The entries of `table` whose keys are in `keys`.
fn restrict(table: &Table, keys: &BTreeSet<IpvsServiceKey>) -> Table {
    keys.iter()
        .filter_map(|key| table.get(key).map(|entry| (*key, entry.clone())))
        .collect()
}
