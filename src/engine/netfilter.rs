//! Keeping the agent's nftables tables equal to the desired set elements
//! and the fixed rules, the way the IPVS table is kept: read at each full
//! sync, repaired when they drifted, and otherwise changed by the
//! elements of the recomputed Services only.
//!
//! - A full sync reads both tables (declarations, chains, rules and
//!   elements). The rules are written again, in the same transaction as
//!   the element changes, when the table is missing, a set or chain is
//!   not the agent's, or the rules differ from what the kernel held just
//!   after the agent last wrote them (always at start: the engine does
//!   not know yet; the flush-and-add is atomic, so no packet sees a gap).
//! - An incremental sync diffs only the elements its Services touched
//!   against the view; one with nothing to change sends nothing.
//! - More than [`ELEMENTS_PER_TRANSACTION`] element changes go in
//!   several transactions, the rules with the first, removals before
//!   additions: nft's memory grows with its script, and it runs in the
//!   agent's container.
//! - A refused transaction changed nothing (nft commits all or none):
//!   the view is marked stale (parts already committed included), the
//!   tables are read again and the changes computed again once, in the
//!   same sync.

use std::collections::BTreeMap;

use tracing::warn;

use super::kernel::Kernel;
use super::report::SyncReport;
use super::SyncEngine;
use crate::diff::netfilter::{element_changes, touched_changes, ElementChanges};
use crate::model::netfilter::{NetfilterFamily, NetfilterSet, SetElements};
use crate::model::settings::IpFamilyMode;
use crate::system::netfilter::script::{chain_names, expected_key, StaleObjects, Transaction};
use crate::system::netfilter::{write, KernelTable, KernelTables, NetfilterError};

/// The most element changes sent in one nft transaction (see
/// [`Transaction::split`]): nft's memory for one part stays near 15 MiB.
/// Only the elements a batch cannot carry (the interval set's) go that
/// way in bulk; the rest go as nfnetlink batches ([`write::parts`]).
pub const ELEMENTS_PER_TRANSACTION: usize = 16_384;

/// Rules as the kernel holds them: chain and expression bytes, in order.
type RuleBytes = Vec<(String, Vec<u8>)>;

/// What the engine knows of its nftables tables.
#[derive(Debug)]
pub struct NetfilterView {
    /// The elements the kernel's sets hold, as last read or written.
    elements: SetElements,
    /// Per family, the rules read just after the agent wrote them.
    rules: BTreeMap<NetfilterFamily, RuleBytes>,
    /// Whether `elements` must be read before an incremental diff.
    stale: bool,
}

impl Default for NetfilterView {
    fn default() -> Self {
        Self {
            elements: SetElements::new(),
            rules: BTreeMap::new(),
            stale: true,
        }
    }
}

/// The families the agent keeps tables for.
pub fn families(mode: IpFamilyMode) -> Vec<NetfilterFamily> {
    match mode {
        IpFamilyMode::Ipv4 => vec![NetfilterFamily::Ipv4],
        IpFamilyMode::Ipv6 => vec![NetfilterFamily::Ipv6],
        IpFamilyMode::Dual => NetfilterFamily::ALL.to_vec(),
    }
}

/// What must go from `family`'s kernel table before its rules are
/// written again, and whether they must be (`None`: they are right).
fn stale_objects(
    family: NetfilterFamily,
    table: Option<&KernelTable>,
    written: Option<&RuleBytes>,
) -> Option<StaleObjects> {
    let Some(table) = table else {
        return Some(StaleObjects::default());
    };
    let mut stale = StaleObjects {
        chains: table
            .chains
            .iter()
            .filter(|chain| !chain_names().any(|name| name == chain.as_str()))
            .cloned()
            .collect(),
        sets: Vec::new(),
    };
    let mut missing = false;
    for set in NetfilterSet::ALL {
        let (key_type, key_len, interval) = expected_key(family, set);
        match table.sets.get(set.name()) {
            None => missing = true,
            Some(declared)
                if (declared.key_type, declared.key_len, declared.interval)
                    != (key_type, key_len, interval)
                    || table.undecodable.contains(&set) =>
            {
                stale.sets.push(set)
            }
            Some(_) => {}
        }
    }
    missing |= chain_names().any(|name| !table.chains.contains(name));
    let rules_right = written.is_some_and(|rules| *rules == table.rules);
    if stale.chains.is_empty() && stale.sets.is_empty() && !missing && rules_right {
        None
    } else {
        Some(stale)
    }
}

impl<K: Kernel> SyncEngine<K> {
    /// Makes the agent's tables right; `full`: read them first and diff
    /// every element (else only the touched ones, unless the view is
    /// stale). Failures are counted and logged, never fatal: IPVS is
    /// synced either way, and the next sync tries again.
    pub(super) async fn sync_netfilter(&mut self, full: bool, report: &mut SyncReport) {
        let touched = self.desired.take_touched_elements();
        if !self.settings.datapath.enabled {
            return;
        }
        let mut read = full || self.netfilter.stale;
        loop {
            match self.try_sync_netfilter(read, &touched, report).await {
                Ok(()) => return,
                Err(error) if !read => {
                    warn!(%error, "nftables transaction refused; reading the tables again");
                    self.netfilter.stale = true;
                    read = true;
                }
                Err(error) => {
                    warn!(%error, "syncing the nftables tables (retried by the next sync)");
                    self.netfilter.stale = true;
                    *report.errors.entry(0).or_default() += 1;
                    report.netfilter.failed = true;
                    return;
                }
            }
        }
    }

    async fn try_sync_netfilter(
        &mut self,
        read: bool,
        touched: &SetElements,
        report: &mut SyncReport,
    ) -> Result<(), NetfilterError> {
        let families = families(self.settings.ip_family);
        let mut transaction = Transaction::default();
        let changes = if read {
            // The old view goes before the tables are read, and the read
            // elements are moved into the new one, not copied: at 20,000
            // Services each copy of 240,000 elements is 27 MiB, and
            // three were alive at the agent's peak (issue 16).
            self.netfilter.elements = SetElements::new();
            self.netfilter.stale = true;
            let mut tables: KernelTables =
                self.kernel.read_netfilter(families.clone(), true).await?;
            let mut held = SetElements::new();
            for family in &families {
                let table = tables.remove(family).flatten();
                let stale =
                    stale_objects(*family, table.as_ref(), self.netfilter.rules.get(family));
                if let Some(table) = table {
                    let recreated = stale.as_ref().map(|s| s.sets.as_slice()).unwrap_or(&[]);
                    let mut elements = table.elements;
                    elements.retain(|element| !recreated.contains(&element.set));
                    if held.is_empty() {
                        held = elements;
                    } else {
                        held.append(&mut elements);
                    }
                }
                if let Some(stale) = stale {
                    transaction.rules.push((*family, stale));
                }
            }
            self.netfilter.elements = held;
            self.netfilter.stale = false;
            element_changes(
                self.desired
                    .wanted_elements()
                    .filter(|element| families.contains(&element.family)),
                &self.netfilter.elements,
            )
        } else {
            touched_changes(
                touched,
                |element| families.contains(&element.family) && self.desired.wants_element(element),
                &self.netfilter.elements,
            )
        };
        let ElementChanges { remove, add } = changes;
        transaction.remove = remove;
        transaction.add = add;
        if transaction.is_empty() {
            return Ok(());
        }
        let written: Vec<NetfilterFamily> = transaction
            .rules
            .iter()
            .map(|(family, _)| *family)
            .collect();
        for part in write::parts(transaction, ELEMENTS_PER_TRANSACTION) {
            self.kernel
                .apply_netfilter(&part, &self.settings.datapath)
                .await?;
            report.netfilter.transactions += 1;
            report.netfilter.rules_written += part.rules.len();
            report.netfilter.elements_removed += part.remove.len();
            report.netfilter.elements_added += part.add.len();
            for element in &part.remove {
                self.netfilter.elements.remove(element);
            }
            self.netfilter.elements.extend(part.add.iter().copied());
        }
        if !written.is_empty() {
            let tables = self.kernel.read_netfilter(written, false).await?;
            for (family, table) in tables {
                match table {
                    Some(table) => {
                        self.netfilter.rules.insert(family, table.rules);
                    }
                    None => {
                        self.netfilter.rules.remove(&family);
                    }
                }
            }
        }
        Ok(())
    }
}
