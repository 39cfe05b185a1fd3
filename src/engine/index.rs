//! The desired state as the engine keeps it between syncs: what each
//! Service contributed, the merged table, which Service owns each virtual
//! server (the first to claim it), and how many Services want each address
//! on `kube-ipvs0`.
//!
//! Recomputing one Service touches only its own entries, so an endpoint
//! change at 20,000 Services costs one Service's work. The totals (real
//! servers, Services without local endpoints) and the address reference
//! counts are kept as entries come and go: walking the whole table on
//! every event was measurably slower at that size. [`DesiredIndex::check`]
//! recounts them from scratch, and the engine's tests call it after every
//! step.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use netlink_ipvs::IpvsServiceKey;
use tracing::warn;

use super::report::DesiredTotals;
use crate::desired::health_check::HealthCheck;
use crate::desired::{conflict, desired_for_service, FieldError, NoLocalEndpoints};
use crate::model::netfilter::{SetElement, SetElements};
use crate::model::{ClusterState, NodeContext, ObjectRef, ProxySettings, Table};

/// Takes one reference to `key` out of `counts`, dropping it at zero.
fn release<K: Ord>(counts: &mut BTreeMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// What one Service contributed to the desired state.
#[derive(Debug, Clone, Default)]
struct ServiceRecord {
    /// Its virtual servers (without those another Service had first).
    keys: Vec<IpvsServiceKey>,
    /// The addresses it needs on `kube-ipvs0`.
    bound_addresses: BTreeSet<IpAddr>,
    /// Whether a Local traffic policy left it without local endpoints.
    no_local_endpoints: NoLocalEndpoints,
    /// The nftables set elements it needs, sorted (a vector: a small
    /// B-tree per Service cost twice the elements' own bytes).
    elements: Vec<SetElement>,
}

/// The desired state, per Service and merged; see the module docs.
#[derive(Debug, Default)]
pub struct DesiredIndex {
    /// What each Service contributed, as last computed (its entries are
    /// in `table`, not held twice).
    services: BTreeMap<ObjectRef, ServiceRecord>,
    /// The merged desired table.
    table: Table,
    /// Which Service each virtual server came from.
    owner: BTreeMap<IpvsServiceKey, ObjectRef>,
    /// How many Services want each address on `kube-ipvs0`.
    wanted_addresses: BTreeMap<IpAddr, usize>,
    /// How many Services want each nftables set element.
    wanted_elements: BTreeMap<SetElement, usize>,
    /// The elements of the Services recomputed since the last
    /// [`DesiredIndex::take_touched_elements`] (old and new ones).
    touched_elements: SetElements,
    /// The health-check ports Services need served, with their counts.
    health_checks: BTreeMap<ObjectRef, HealthCheck>,
    /// Totals over `services` and `table`, kept as they change.
    totals: DesiredTotals,
    /// The problems last reported per Service (to log each only once).
    problems: BTreeMap<ObjectRef, Vec<FieldError>>,
}

impl DesiredIndex {
    /// The Service a desired virtual server came from.
    pub fn owner_of(&self, key: &IpvsServiceKey) -> Option<&ObjectRef> {
        self.owner.get(key)
    }

    /// The merged desired table.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The totals after the last change.
    pub fn totals(&self) -> DesiredTotals {
        DesiredTotals {
            virtual_servers: self.table.len(),
            ..self.totals
        }
    }

    /// The addresses some Service needs on `kube-ipvs0`.
    pub fn wanted_addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.wanted_addresses.keys()
    }

    /// The nftables set elements some Service needs (sorted by family,
    /// set and key).
    pub fn wanted_elements(&self) -> impl Iterator<Item = &SetElement> {
        self.wanted_elements.keys()
    }

    /// Whether some Service needs `element`.
    pub fn wants_element(&self, element: &SetElement) -> bool {
        self.wanted_elements.contains_key(element)
    }

    /// The `healthCheckNodePort` servers Services need, by Service.
    pub fn health_checks(&self) -> &BTreeMap<ObjectRef, HealthCheck> {
        &self.health_checks
    }

    /// The elements whose wanted state may have changed since the last
    /// call (those of the Services recomputed in between).
    pub fn take_touched_elements(&mut self) -> SetElements {
        std::mem::take(&mut self.touched_elements)
    }

    /// Forgets everything and recomputes every Service of `cluster`;
    /// returns them.
    pub fn recompute_all(
        &mut self,
        cluster: &ClusterState,
        node: &NodeContext,
        settings: &ProxySettings,
    ) -> BTreeSet<ObjectRef> {
        let problems = std::mem::take(&mut self.problems);
        *self = Self::default();
        let all: BTreeSet<ObjectRef> = cluster.services().keys().cloned().collect();
        self.problems = problems;
        self.problems.retain(|service, _| all.contains(service));
        for service in &all {
            self.recompute(service, cluster, node, settings);
        }
        // A full sync diffs every element: the touched ones (all of them,
        // 27 MiB at 20,000 Services) are not needed.
        self.touched_elements = SetElements::new();
        all
    }

    /// Recomputes one Service; returns the virtual servers whose desired
    /// state may have changed (its old and new ones).
    pub fn recompute(
        &mut self,
        service: &ObjectRef,
        cluster: &ClusterState,
        node: &NodeContext,
        settings: &ProxySettings,
    ) -> BTreeSet<IpvsServiceKey> {
        let mut touched = self.forget(service);
        if !cluster.services().contains_key(service) {
            self.problems.remove(service);
            return touched;
        }
        let Some(mut new) = desired_for_service(service, cluster, node, settings) else {
            return touched;
        };
        self.report_problems(service, &new.problems);
        new.table.retain(|key, _| match self.owner.get(key) {
            Some(first) if first != service => {
                warn!("{}", conflict(service, key, first));
                false
            }
            _ => true,
        });
        let keys: Vec<IpvsServiceKey> = new.table.keys().copied().collect();
        for (key, entry) in std::mem::take(&mut new.table) {
            self.owner.insert(key, service.clone());
            self.totals.real_servers += entry.real_servers.len();
            if let Some(replaced) = self.table.insert(key, entry) {
                self.totals.real_servers -= replaced.real_servers.len();
            }
            touched.insert(key);
        }
        for address in &new.bound_addresses {
            *self.wanted_addresses.entry(*address).or_default() += 1;
        }
        for element in &new.elements {
            *self.wanted_elements.entry(*element).or_default() += 1;
        }
        self.touched_elements.extend(new.elements.iter().copied());
        if let Some(check) = new.health_check {
            self.health_checks.insert(service.clone(), check);
        }
        self.totals.no_local_internal += usize::from(new.no_local_endpoints.internal);
        self.totals.no_local_external += usize::from(new.no_local_endpoints.external);
        self.services.insert(
            service.clone(),
            ServiceRecord {
                keys,
                bound_addresses: new.bound_addresses,
                no_local_endpoints: new.no_local_endpoints,
                elements: new.elements.into_iter().collect(),
            },
        );
        touched
    }

    /// Takes out what `service` contributed; returns its virtual servers.
    fn forget(&mut self, service: &ObjectRef) -> BTreeSet<IpvsServiceKey> {
        let mut touched = BTreeSet::new();
        self.health_checks.remove(service);
        let Some(old) = self.services.remove(service) else {
            return touched;
        };
        self.totals.no_local_internal -= usize::from(old.no_local_endpoints.internal);
        self.totals.no_local_external -= usize::from(old.no_local_endpoints.external);
        for key in &old.keys {
            if self.owner.get(key) == Some(service) {
                self.owner.remove(key);
                if let Some(entry) = self.table.remove(key) {
                    self.totals.real_servers -= entry.real_servers.len();
                }
            }
            touched.insert(*key);
        }
        for address in &old.bound_addresses {
            release(&mut self.wanted_addresses, address);
        }
        for element in &old.elements {
            release(&mut self.wanted_elements, element);
        }
        self.touched_elements.extend(old.elements);
        touched
    }

    /// Logs a Service's problems when they differ from the last ones.
    fn report_problems(&mut self, service: &ObjectRef, problems: &[FieldError]) {
        if problems.is_empty() {
            self.problems.remove(service);
            return;
        }
        if self.problems.get(service).map(Vec::as_slice) != Some(problems) {
            for problem in problems {
                warn!(service = %service, "skipped: {problem}");
            }
        }
        self.problems.insert(service.clone(), problems.to_vec());
    }

    /// Recounts the state kept by hand (totals, owners, address counts)
    /// and says what disagrees with it, if anything.
    pub fn check(&self) -> Result<(), String> {
        let mut totals = DesiredTotals {
            virtual_servers: self.table.len(),
            ..DesiredTotals::default()
        };
        let mut wanted: BTreeMap<IpAddr, usize> = BTreeMap::new();
        let mut elements: BTreeMap<SetElement, usize> = BTreeMap::new();
        for (service, record) in &self.services {
            for element in &record.elements {
                *elements.entry(*element).or_default() += 1;
            }
            totals.no_local_internal += usize::from(record.no_local_endpoints.internal);
            totals.no_local_external += usize::from(record.no_local_endpoints.external);
            for address in &record.bound_addresses {
                *wanted.entry(*address).or_default() += 1;
            }
            for key in &record.keys {
                if self.owner.get(key) != Some(service) {
                    return Err(format!(
                        "{key} is {service}'s but owned by {:?}",
                        self.owner.get(key)
                    ));
                }
            }
        }
        totals.real_servers = self
            .table
            .values()
            .map(|entry| entry.real_servers.len())
            .sum();
        if totals != self.totals() {
            return Err(format!("totals {:?}, recounted {totals:?}", self.totals()));
        }
        if wanted != self.wanted_addresses {
            return Err(format!(
                "address counts {:?}, recounted {wanted:?}",
                self.wanted_addresses
            ));
        }
        if elements != self.wanted_elements {
            return Err(format!(
                "{} element counts, recounted {}",
                self.wanted_elements.len(),
                elements.len()
            ));
        }
        if self.owner.len() != self.table.len() {
            return Err(format!(
                "{} owners for {} virtual servers",
                self.owner.len(),
                self.table.len()
            ));
        }
        Ok(())
    }
}
