//! The engine against an in-memory kernel: its logic (adoption, incremental
//! sync, re-read rounds, drain, drift repair, conflicts) on the host, in
//! milliseconds. The in-memory kernel answers as IPVS does (EEXIST for an
//! add of what is there, ESRCH for a missing virtual server, ENOENT for a
//! missing real server or an unknown scheduler) and records every message;
//! the guest tests remain the proof that the real kernel agrees.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use netlink_ipvs::{
    IpvsCounters, IpvsDestination, IpvsError, IpvsForwardingMethod, IpvsOperation, IpvsProtocol,
    IpvsService, IpvsServiceKey, IpvsTimeouts,
};
use serde_json::json;

use super::kernel::Kernel;
use super::report::{MessageKind, SyncKind, SyncReport};
use super::SyncEngine;
use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::{ElementKey, NetfilterFamily, NetfilterSet, SetElement, SetElements};
use crate::model::settings::DatapathSettings;
use crate::model::{ClusterState, LocalAddress, ObjectRef, ProxySettings, Table, TableEntry};
use crate::system::conntrack::{ConntrackError, Dump};
use crate::system::errno::{EEXIST, ENOENT, ESRCH};
use crate::system::link::{address_changes, AddressChanges, LinkError};
use crate::system::netfilter::read::SetDeclaration;
use crate::system::netfilter::script::{chain_names, expected_key, Transaction};
use crate::system::netfilter::{KernelTable, KernelTables, NetfilterError};

/// Schedulers the in-memory kernel knows (the others are ENOENT on add).
const SCHEDULERS: [&str; 6] = ["rr", "wrr", "lc", "wlc", "sh", "dh"];

/// EINVAL: an operation kind the in-memory kernel does not know.
const EINVAL: i32 = 22;

/// The node's own address in these tests.
const NODE_IP: &str = "192.168.0.10";

/// The state of the in-memory kernel, shared between the engine and the
/// test (which inspects it and changes it behind the engine's back).
#[derive(Debug, Default)]
struct MemoryState {
    table: Table,
    /// Links by name, with their addresses.
    links: BTreeMap<String, BTreeSet<IpAddr>>,
    /// Every write message the engine sent, in order.
    sent: Vec<IpvsOperation>,
    /// The agent's nftables tables.
    netfilter: BTreeMap<NetfilterFamily, KernelTable>,
    /// Every nftables transaction committed, in order.
    transactions: Vec<Transaction>,
    /// The conntrack table.
    conntrack: Vec<ConntrackEntry>,
    /// Conntrack dumps asked for.
    conntrack_dumps: usize,
    /// Whether conntrack dumps fail (as with no nf_conntrack_netlink).
    conntrack_broken: bool,
}

#[derive(Debug, Clone, Default)]
struct MemoryKernel(Rc<RefCell<MemoryState>>);

fn errno(errno: i32) -> IpvsError {
    IpvsError::Kernel {
        request: "in-memory kernel".to_owned(),
        errno,
        source: io::Error::from_raw_os_error(errno),
    }
}

/// The rules an in-memory table holds once the agent wrote them.
fn memory_rules() -> Vec<(String, Vec<u8>)> {
    vec![("services".to_owned(), b"the agent's rules".to_vec())]
}

impl MemoryState {
    /// Commits `transaction` all or nothing, as nft does: removing an
    /// element that is not there refuses the whole of it (ENOENT).
    fn commit(&mut self, transaction: &Transaction) -> Result<(), NetfilterError> {
        let mut tables = self.netfilter.clone();
        for (family, stale) in &transaction.rules {
            let table = tables.entry(*family).or_default();
            table.chains = chain_names().map(str::to_owned).collect();
            table.rules = memory_rules();
            table
                .elements
                .retain(|element| !stale.sets.contains(&element.set));
            table.undecodable.clear();
            for set in NetfilterSet::ALL {
                let (key_type, key_len, interval) = expected_key(*family, set);
                table.sets.insert(
                    set.name().to_owned(),
                    SetDeclaration {
                        key_type,
                        key_len,
                        interval,
                    },
                );
            }
        }
        for element in &transaction.remove {
            let removed = tables
                .get_mut(&element.family)
                .is_some_and(|table| table.elements.remove(element));
            if !removed {
                return Err(NetfilterError::Refused {
                    what: format!("deleting {element:?}"),
                    errno: ENOENT,
                });
            }
        }
        for element in &transaction.add {
            let Some(table) = tables.get_mut(&element.family) else {
                return Err(NetfilterError::Refused {
                    what: format!("adding {element:?}"),
                    errno: ENOENT,
                });
            };
            table.elements.insert(*element);
        }
        self.netfilter = tables;
        self.transactions.push(transaction.clone());
        Ok(())
    }

    fn apply(&mut self, operation: &IpvsOperation) -> Result<(), IpvsError> {
        match operation {
            IpvsOperation::AddService(service) => {
                if self.table.contains_key(&service.key) {
                    return Err(errno(EEXIST));
                }
                if !SCHEDULERS.contains(&service.scheduler.as_str()) {
                    return Err(errno(ENOENT));
                }
                self.table.insert(
                    service.key,
                    TableEntry {
                        service: service.clone(),
                        real_servers: BTreeMap::new(),
                    },
                );
            }
            IpvsOperation::EditService(service) => {
                let entry = self.table.get_mut(&service.key).ok_or(errno(ESRCH))?;
                entry.service = service.clone();
            }
            IpvsOperation::DeleteService(key) => {
                self.table.remove(key).ok_or(errno(ESRCH))?;
            }
            IpvsOperation::AddDestination(key, real) => {
                let entry = self.table.get_mut(key).ok_or(errno(ESRCH))?;
                if entry.real_servers.contains_key(&real.key) {
                    return Err(errno(EEXIST));
                }
                entry.real_servers.insert(real.key, real.clone());
            }
            IpvsOperation::EditDestination(key, real) => {
                let entry = self.table.get_mut(key).ok_or(errno(ESRCH))?;
                let existing = entry.real_servers.get_mut(&real.key).ok_or(errno(ENOENT))?;
                let connections = (existing.active_connections, existing.inactive_connections);
                *existing = real.clone();
                (existing.active_connections, existing.inactive_connections) = connections;
            }
            IpvsOperation::DeleteDestination(key, real) => {
                let entry = self.table.get_mut(key).ok_or(errno(ESRCH))?;
                entry.real_servers.remove(real).ok_or(errno(ENOENT))?;
            }
            _ => return Err(errno(EINVAL)),
        }
        Ok(())
    }
}

impl Kernel for MemoryKernel {
    async fn read_table(&mut self, _counters: IpvsCounters) -> Result<Table, IpvsError> {
        Ok(self.0.borrow().table.clone())
    }

    async fn read_virtual_server(
        &mut self,
        key: &IpvsServiceKey,
    ) -> Result<Option<TableEntry>, IpvsError> {
        Ok(self.0.borrow().table.get(key).cloned())
    }

    async fn apply(&mut self, operations: &[IpvsOperation]) -> Vec<Result<(), IpvsError>> {
        let mut state = self.0.borrow_mut();
        operations
            .iter()
            .map(|operation| {
                state.sent.push(operation.clone());
                state.apply(operation)
            })
            .collect()
    }

    async fn set_timeouts(&mut self, _timeouts: &IpvsTimeouts) -> Result<(), IpvsError> {
        Ok(())
    }

    async fn ensure_dummy(&mut self, name: &str) -> Result<(), LinkError> {
        self.0
            .borrow_mut()
            .links
            .entry(name.to_owned())
            .or_default();
        Ok(())
    }

    async fn local_addresses(&mut self) -> Result<Vec<LocalAddress>, LinkError> {
        let state = self.0.borrow();
        Ok(state
            .links
            .iter()
            .flat_map(|(name, addresses)| {
                addresses.iter().map(|address| LocalAddress {
                    address: *address,
                    interface: name.clone(),
                })
            })
            .collect())
    }

    async fn sync_addresses(
        &mut self,
        name: &str,
        wanted: &BTreeSet<IpAddr>,
    ) -> Result<AddressChanges, LinkError> {
        let mut state = self.0.borrow_mut();
        let link = state.links.entry(name.to_owned()).or_default();
        let changes = address_changes(link, wanted);
        *link = wanted.clone();
        Ok(changes)
    }

    async fn read_netfilter(
        &mut self,
        families: Vec<NetfilterFamily>,
        elements: bool,
    ) -> Result<KernelTables, NetfilterError> {
        let state = self.0.borrow();
        Ok(families
            .into_iter()
            .map(|family| {
                let table = state.netfilter.get(&family).map(|table| KernelTable {
                    elements: if elements {
                        table.elements.clone()
                    } else {
                        SetElements::new()
                    },
                    ..table.clone()
                });
                (family, table)
            })
            .collect())
    }

    async fn apply_netfilter(
        &mut self,
        transaction: &Transaction,
        _settings: &DatapathSettings,
    ) -> Result<(), NetfilterError> {
        self.0.borrow_mut().commit(transaction)
    }

    async fn conntrack_entries(
        &mut self,
        families: Vec<NetfilterFamily>,
        protocols: Vec<IpvsProtocol>,
    ) -> Result<Dump, ConntrackError> {
        let mut state = self.0.borrow_mut();
        state.conntrack_dumps += 1;
        if state.conntrack_broken {
            return Err(ConntrackError::Refused {
                what: "dumping the ip conntrack entries".to_owned(),
                errno: 93,
            });
        }
        let family_of = |address: &IpAddr| match address {
            IpAddr::V4(_) => NetfilterFamily::Ipv4,
            IpAddr::V6(_) => NetfilterFamily::Ipv6,
        };
        Ok(Dump {
            entries: state
                .conntrack
                .iter()
                .filter(|entry| {
                    protocols.contains(&entry.protocol)
                        && families.contains(&family_of(&entry.source))
                })
                .copied()
                .collect(),
            skipped: 0,
        })
    }

    async fn delete_conntrack(
        &mut self,
        entries: Vec<ConntrackEntry>,
    ) -> Vec<Result<(), ConntrackError>> {
        let mut state = self.0.borrow_mut();
        entries
            .iter()
            .map(|entry| {
                // Gone already (ENOENT) counts as deleted, as in the agent.
                state.conntrack.retain(|held| held != entry);
                Ok(())
            })
            .collect()
    }
}

impl MemoryKernel {
    /// A kernel whose node has `eth0` with [`NODE_IP`].
    fn node() -> Self {
        let kernel = Self::default();
        kernel
            .0
            .borrow_mut()
            .links
            .insert("eth0".to_owned(), [ip(NODE_IP)].into());
        kernel
    }

    fn table(&self) -> Table {
        self.0.borrow().table.clone()
    }

    /// Forgets the messages sent so far.
    fn take_sent(&self) -> Vec<IpvsOperation> {
        std::mem::take(&mut self.0.borrow_mut().sent)
    }

    fn with<T>(&self, change: impl FnOnce(&mut MemoryState) -> T) -> T {
        change(&mut self.0.borrow_mut())
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn key(vip: &str, port: u16) -> IpvsServiceKey {
    IpvsServiceKey::tcp(ip(vip), port)
}

fn real(address: &str, port: u16) -> IpvsDestination {
    IpvsDestination::new(ip(address), port, IpvsForwardingMethod::Masquerade, 1)
}

fn entry(
    vip: &str,
    port: u16,
    scheduler: &str,
    reals: &[(&str, u16)],
) -> (IpvsServiceKey, TableEntry) {
    let key = key(vip, port);
    let real_servers = reals
        .iter()
        .map(|(address, port)| {
            let real = real(address, *port);
            (real.key, real)
        })
        .collect();
    (
        key,
        TableEntry {
            service: IpvsService::new(key, scheduler),
            real_servers,
        },
    )
}

fn service(name: &str, cluster_ip: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": cluster_ip, "ports": [{"port": port, "targetPort": 8080}]}
    }))
    .unwrap()
}

fn slice(service: &str, addresses: &[&str]) -> EndpointSlice {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|address| json!({"addresses": [address], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": endpoints
    }))
    .unwrap()
}

fn cluster(services: &[(&str, &str, &[&str])]) -> ClusterState {
    let mut cluster = ClusterState::default();
    for (name, cluster_ip, endpoints) in services {
        cluster.insert_service(service(name, cluster_ip, 80));
        cluster.insert_slice(&slice(name, endpoints));
    }
    cluster
}

fn engine(kernel: &MemoryKernel, settings: ProxySettings) -> SyncEngine<MemoryKernel> {
    SyncEngine::new(
        settings,
        "node1".to_owned(),
        vec![ip(NODE_IP)],
        kernel.clone(),
    )
}

fn refs(names: &[&str]) -> BTreeSet<ObjectRef> {
    names
        .iter()
        .map(|name| ObjectRef::new("default", *name))
        .collect()
}

fn count(operations: &[IpvsOperation], kind: MessageKind) -> usize {
    operations
        .iter()
        .filter(|operation| MessageKind::of(operation) == Some(kind))
        .count()
}

/// Runs `future` on a current-thread runtime (the in-memory kernel is not
/// `Send`, and needs no other thread).
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

/// The kernel holds exactly the desired table (plus `foreign` entries), the
/// hand-kept state of the index recounts the same, and the view is true.
fn assert_converged(
    engine: &SyncEngine<MemoryKernel>,
    kernel: &MemoryKernel,
    foreign: &[IpvsServiceKey],
) {
    engine.desired.check().unwrap();
    let mut in_kernel = kernel.table();
    for key in foreign {
        assert!(in_kernel.remove(key).is_some(), "foreign {key} was removed");
    }
    assert_eq!(&in_kernel, engine.desired.table(), "kernel == desired");
    let mut view = engine.kernel_view().clone();
    for key in foreign {
        view.remove(key);
    }
    assert_eq!(view, in_kernel, "the engine's view is the kernel's table");
}

#[test]
fn first_sync_adopts_the_table_and_leaves_foreign_and_excluded_entries() {
    let kernel = MemoryKernel::node();
    // Before the agent starts: a's virtual server as it should be (adopted,
    // no message), b's with a stale real server, a virtual server the agent
    // programmed for a Service since deleted (its VIP still on kube-ipvs0),
    // another tool's virtual server, and one inside --ipvs-exclude-cidrs on
    // a kube-ipvs0 address.
    kernel.with(|state| {
        state.table.extend([
            entry("10.96.0.1", 80, "rr", &[("10.244.1.1", 8080)]),
            entry(
                "10.96.0.2",
                80,
                "rr",
                &[("10.244.2.1", 8080), ("10.244.2.9", 8080)],
            ),
            entry("10.96.0.3", 80, "rr", &[("10.244.3.1", 8080)]),
            entry("10.9.9.9", 80, "wlc", &[("10.9.0.1", 80)]),
            entry("10.200.0.1", 80, "rr", &[]),
        ]);
        state.links.insert(
            "kube-ipvs0".to_owned(),
            [
                ip("10.96.0.1"),
                ip("10.96.0.2"),
                ip("10.96.0.3"),
                ip("10.200.0.1"),
            ]
            .into(),
        );
    });
    let settings = ProxySettings {
        exclude_cidrs: vec!["10.200.0.0/16".parse::<IpNetwork>().unwrap()],
        ..ProxySettings::default()
    };
    let mut engine = engine(&kernel, settings);
    let cluster = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1"]),
        ("b", "10.96.0.2", &["10.244.2.1"]),
    ]);
    let report = block_on(engine.full_sync(&cluster)).unwrap();

    let sent = kernel.take_sent();
    // b's stale real server (TCP without connections: no drain) and the
    // deleted Service's virtual server; a is adopted as it is.
    assert_eq!(sent.len(), 2, "only the differences are sent: {sent:?}");
    assert!(sent.contains(&IpvsOperation::DeleteDestination(
        key("10.96.0.2", 80),
        real("10.244.2.9", 8080).key
    )));
    assert!(sent.contains(&IpvsOperation::DeleteService(key("10.96.0.3", 80))));
    assert_eq!(
        (report.kind, report.repair, report.services),
        (SyncKind::Full, false, 2)
    );
    assert_eq!(
        report.addresses_removed, 2,
        "10.96.0.3 and the excluded 10.200.0.1 leave kube-ipvs0"
    );
    assert_converged(
        &engine,
        &kernel,
        &[key("10.9.9.9", 80), key("10.200.0.1", 80)],
    );
}

#[test]
fn one_endpoint_change_is_one_message() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1", "10.244.1.2"]),
        ("b", "10.96.0.2", &["10.244.2.1"]),
    ]);
    block_on(engine.full_sync(&state)).unwrap();
    assert_eq!(count(&kernel.take_sent(), MessageKind::AddService), 2);

    let touched = state.insert_slice(&slice("a", &["10.244.1.1", "10.244.1.2", "10.244.1.3"]));
    assert_eq!(touched, refs(&["a"]));
    let report = block_on(engine.sync_services(&state, &touched)).unwrap();
    assert_eq!(
        kernel.take_sent(),
        vec![IpvsOperation::AddDestination(
            key("10.96.0.1", 80),
            real("10.244.1.3", 8080)
        )]
    );
    assert_eq!(
        (report.sent.total(), report.failed(), report.reread),
        (1, 0, 0)
    );
    assert_eq!(report.totals.real_servers, 4);

    // Unchanged: nothing at all.
    let report = block_on(engine.sync_services(&state, &touched)).unwrap();
    assert_eq!(report.sent.total(), 0);
    assert!(kernel.take_sent().is_empty());
    assert_converged(&engine, &kernel, &[]);
}

#[test]
fn a_wrong_view_is_reread_after_eexist_and_enoent() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[("a", "10.96.0.1", &["10.244.1.1"])]);
    block_on(engine.full_sync(&state)).unwrap();
    kernel.take_sent();

    // Behind the engine's back: b's virtual server appears (another
    // writer raced the agent) with another scheduler.
    kernel.with(|state| state.table.extend([entry("10.96.0.2", 80, "wlc", &[])]));
    state.insert_service(service("b", "10.96.0.2", 80));
    state.insert_slice(&slice("b", &["10.244.2.1"]));
    let report = block_on(engine.sync_services(&state, &refs(&["a", "b"]))).unwrap();

    let sent = kernel.take_sent();
    assert_eq!(report.failed(), 0, "{:?}", report.errors);
    assert_eq!(
        report.reread, 1,
        "b's virtual server was re-read after EEXIST"
    );
    assert_eq!(
        sent[0],
        IpvsOperation::AddService(IpvsService::new(key("10.96.0.2", 80), "rr"))
    );
    assert!(
        sent.contains(&IpvsOperation::EditService(IpvsService::new(
            key("10.96.0.2", 80),
            "rr"
        ))),
        "after the re-read the scheduler is edited in place: {sent:?}"
    );
    assert_converged(&engine, &kernel, &[]);

    // ENOENT: a's real server is edited (weight) but gone in the kernel.
    kernel.with(|state| {
        let a = state.table.get_mut(&key("10.96.0.1", 80)).unwrap();
        a.real_servers.clear();
        let mut heavy = real("10.244.1.1", 8080);
        heavy.weight = 7;
        engine
            .view
            .get_mut(&key("10.96.0.1", 80))
            .unwrap()
            .real_servers
            .insert(heavy.key, heavy);
    });
    let report = block_on(engine.sync_services(&state, &refs(&["a"]))).unwrap();
    assert_eq!(
        kernel.take_sent(),
        vec![
            IpvsOperation::EditDestination(key("10.96.0.1", 80), real("10.244.1.1", 8080)),
            IpvsOperation::AddDestination(key("10.96.0.1", 80), real("10.244.1.1", 8080)),
        ],
        "ENOENT on the edit: re-read, then added"
    );
    assert_eq!((report.reread, report.failed()), (1, 0));
    assert_converged(&engine, &kernel, &[]);
}

#[test]
fn a_refused_operation_is_reported_and_the_rest_applied() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[("a", "10.96.0.1", &["10.244.1.1"])]);
    let mut odd = service("b", "10.96.0.2", 80);
    odd.metadata.annotations =
        Some([("ipvs-agent.io/scheduler".to_owned(), "mh".to_owned())].into());
    state.insert_service(odd);
    state.insert_slice(&slice("b", &["10.244.2.1"]));
    let report = block_on(engine.full_sync(&state)).unwrap();
    // The in-memory kernel has no `mh` scheduler: ENOENT on b's add (a
    // failure: no re-read helps), and its real server's ESRCH follows from
    // it (no re-read either: that would only send the refused add again).
    assert_eq!(report.errors, [(ENOENT, 1)].into(), "one refusal");
    assert_eq!(report.reread, 0, "a refused add is no disagreement");
    assert!(
        kernel.table().contains_key(&key("10.96.0.1", 80)),
        "a is programmed"
    );
    assert!(!kernel.table().contains_key(&key("10.96.0.2", 80)));
    assert_eq!(engine.kernel_view(), &kernel.table(), "the view stays true");
    // A resync retries b only: its add and its real server, once.
    kernel.take_sent();
    let report = block_on(engine.full_sync(&state)).unwrap();
    let sent = kernel.take_sent();
    assert!(
        matches!(
            sent.as_slice(),
            [IpvsOperation::AddService(b), IpvsOperation::AddDestination(to, _)]
                if b.key == key("10.96.0.2", 80) && *to == b.key
        ),
        "the retry: {sent:?}"
    );
    assert_eq!((report.failed(), report.reread), (1, 0));
    assert_eq!(engine.kernel_view(), &kernel.table(), "the view stays true");
}

#[test]
fn a_draining_real_server_goes_when_its_drain_times_out() {
    let kernel = MemoryKernel::node();
    let settings = ProxySettings {
        drain_timeout: Duration::from_millis(50),
        ..ProxySettings::default()
    };
    let mut engine = engine(&kernel, settings);
    let mut state = cluster(&[("a", "10.96.0.1", &["10.244.1.1", "10.244.1.2"])]);
    block_on(engine.full_sync(&state)).unwrap();
    kernel.take_sent();
    // 10.244.1.2 has live connections when its endpoint goes.
    kernel.with(|state| {
        let a = state.table.get_mut(&key("10.96.0.1", 80)).unwrap();
        a.real_servers
            .get_mut(&real("10.244.1.2", 8080).key)
            .unwrap()
            .active_connections = 3;
    });
    let touched = state.insert_slice(&slice("a", &["10.244.1.1"]));
    let report = block_on(engine.sync_services(&state, &touched)).unwrap();
    let mut quiesced = real("10.244.1.2", 8080);
    quiesced.weight = 0;
    quiesced.active_connections = 3;
    assert_eq!(
        kernel.take_sent(),
        vec![IpvsOperation::EditDestination(
            key("10.96.0.1", 80),
            quiesced
        )],
        "weight 0, not deleted: its connections drain"
    );
    assert_eq!(report.draining, 1);
    assert!(engine.has_draining());

    // Before the timeout, still connected: nothing.
    let report = block_on(engine.check_draining()).unwrap();
    assert_eq!((report.sent.total(), report.draining), (0, 1));
    assert!(
        !report.is_worth_reporting(),
        "a drain check that did nothing is not reported"
    );

    std::thread::sleep(Duration::from_millis(60));
    let report = block_on(engine.check_draining()).unwrap();
    assert_eq!(
        kernel.take_sent(),
        vec![IpvsOperation::DeleteDestination(
            key("10.96.0.1", 80),
            real("10.244.1.2", 8080).key
        )],
        "timed out with connections left: deleted"
    );
    assert_eq!((report.kind, report.draining), (SyncKind::Drain, 0));
    assert!(!engine.has_draining());
    assert_converged(&engine, &kernel, &[]);
}

#[test]
fn a_resync_repairs_drift() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let state = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1"]),
        ("b", "10.96.0.2", &["10.244.2.1", "10.244.2.2"]),
    ]);
    block_on(engine.full_sync(&state)).unwrap();
    kernel.take_sent();
    let report = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert_eq!(
        (report.sent.total(), report.repair),
        (0, true),
        "no drift: no write"
    );

    // Someone runs `ipvsadm -D` on a, sets b's weights, removes b's VIP.
    kernel.with(|state| {
        state.table.remove(&key("10.96.0.1", 80));
        let b = state.table.get_mut(&key("10.96.0.2", 80)).unwrap();
        b.real_servers.values_mut().for_each(|real| real.weight = 5);
        state
            .links
            .get_mut("kube-ipvs0")
            .unwrap()
            .remove(&ip("10.96.0.2"));
    });
    let report = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    let sent = kernel.take_sent();
    assert_eq!(count(&sent, MessageKind::AddService), 1);
    assert_eq!(count(&sent, MessageKind::AddRealServer), 1);
    assert_eq!(count(&sent, MessageKind::EditRealServer), 2);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(
        (report.repair, report.services, report.addresses_added),
        (true, 0, 1)
    );
    assert_converged(&engine, &kernel, &[]);
}

#[test]
fn two_services_claiming_one_virtual_server_keep_the_first() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1"]),
        ("b", "10.96.0.1", &["10.244.2.1"]),
    ]);
    let report = block_on(engine.full_sync(&state)).unwrap();
    let table = kernel.table();
    let reals: Vec<_> = table[&key("10.96.0.1", 80)]
        .real_servers
        .keys()
        .copied()
        .collect();
    assert_eq!(
        reals,
        vec![real("10.244.1.1", 8080).key],
        "a (first by name) keeps it"
    );
    assert_eq!(report.totals.virtual_servers, 1);
    assert_converged(&engine, &kernel, &[]);

    // b changes: a's virtual server is untouched.
    kernel.take_sent();
    let touched = state.insert_slice(&slice("b", &["10.244.2.1", "10.244.2.2"]));
    block_on(engine.sync_services(&state, &touched)).unwrap();
    assert!(
        kernel.take_sent().is_empty(),
        "b has no virtual server of its own"
    );

    // a goes: the VIP stays on kube-ipvs0 while b still wants it, and b,
    // recomputed, takes the virtual server over.
    state.remove_service(&ObjectRef::new("default", "a"));
    block_on(engine.sync_services(&state, &refs(&["a", "b"]))).unwrap();
    let table = kernel.table();
    let reals: Vec<_> = table[&key("10.96.0.1", 80)]
        .real_servers
        .keys()
        .copied()
        .collect();
    assert_eq!(
        reals,
        vec![real("10.244.2.1", 8080).key, real("10.244.2.2", 8080).key]
    );
    assert!(kernel.0.borrow().links["kube-ipvs0"].contains(&ip("10.96.0.1")));
    assert_converged(&engine, &kernel, &[]);
}

#[test]
fn reports_carry_what_the_observers_need() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let state = cluster(&[("a", "10.96.0.1", &["10.244.1.1", "10.244.1.2"])]);
    let report: SyncReport = block_on(engine.full_sync(&state)).unwrap();
    assert_eq!(report.sent.get(MessageKind::AddService), 1);
    assert_eq!(report.sent.get(MessageKind::AddRealServer), 2);
    assert_eq!(
        (report.totals.virtual_servers, report.totals.real_servers),
        (1, 2)
    );
    assert_eq!(report.addresses_added, 1);
    assert!(engine.ownership().owns(&key("10.96.0.1", 80)));
    assert!(!engine.ownership().owns(&key("10.9.9.9", 80)));
}

/// The elements the in-memory kernel's IPv4 table holds.
fn held_elements(kernel: &MemoryKernel) -> SetElements {
    kernel.with(|state| {
        state
            .netfilter
            .get(&NetfilterFamily::Ipv4)
            .map(|table| table.elements.clone())
            .unwrap_or_default()
    })
}

fn take_transactions(kernel: &MemoryKernel) -> Vec<Transaction> {
    kernel.with(|state| std::mem::take(&mut state.transactions))
}

fn cluster_ip_element(address: &str, port: u16) -> SetElement {
    SetElement {
        family: NetfilterFamily::Ipv4,
        set: NetfilterSet::ClusterIps,
        key: ElementKey::Service {
            address: ip(address),
            protocol: IpvsProtocol::Tcp,
            port,
        },
    }
}

fn vip_element(address: &str) -> SetElement {
    SetElement {
        family: NetfilterFamily::Ipv4,
        set: NetfilterSet::Vips,
        key: ElementKey::Address(ip(address)),
    }
}

#[test]
fn many_element_changes_go_in_bounded_parts_rules_first() {
    use super::netfilter::ELEMENTS_PER_TRANSACTION;
    use crate::system::netfilter::write::MAX_NETLINK_ELEMENTS;
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    // Two elements per Service (its ClusterIP and port, its VIP).
    let count = ELEMENTS_PER_TRANSACTION / 2 + 10;
    let mut state = ClusterState::default();
    for index in 0..count {
        let name = format!("s{index}");
        let address = format!("10.96.{}.{}", index / 250, index % 250 + 1);
        state.insert_service(service(&name, &address, 80));
    }
    let report = block_on(engine.full_sync(&state)).unwrap();
    let transactions = take_transactions(&kernel);
    let sizes: Vec<(usize, usize)> = transactions
        .iter()
        .map(|part| (part.rules.len(), part.add.len()))
        .collect();
    // The rules by script, then the elements as batches of at most
    // MAX_NETLINK_ELEMENTS (none of them is an interval set's).
    let batches = (2 * count).div_ceil(MAX_NETLINK_ELEMENTS);
    let mut expected = vec![(1, 0)];
    expected.extend(vec![(0, MAX_NETLINK_ELEMENTS); batches - 1]);
    expected.push((0, 2 * count - (batches - 1) * MAX_NETLINK_ELEMENTS));
    assert_eq!(sizes, expected, "the rules first, then bounded batches");
    assert_eq!(
        (
            report.netfilter.transactions,
            report.netfilter.elements_added
        ),
        (batches + 1, 2 * count)
    );
    assert_eq!(held_elements(&kernel).len(), 2 * count);
}

#[test]
fn netfilter_sets_follow_the_services_and_endpoint_changes_send_nothing() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1"]),
        ("b", "10.96.0.2", &["10.244.2.1"]),
    ]);
    let report = block_on(engine.full_sync(&state)).unwrap();
    let transactions = take_transactions(&kernel);
    assert_eq!(transactions.len(), 1, "one transaction: rules and elements");
    assert_eq!(transactions[0].rules.len(), 1, "IPv4 only");
    let expected: SetElements = [
        cluster_ip_element("10.96.0.1", 80),
        cluster_ip_element("10.96.0.2", 80),
        vip_element("10.96.0.1"),
        vip_element("10.96.0.2"),
    ]
    .into();
    assert_eq!(held_elements(&kernel), expected);
    assert_eq!(
        (
            report.netfilter.transactions,
            report.netfilter.elements_added
        ),
        (1, 4)
    );

    // An endpoint change (to a remote endpoint) changes no set element:
    // no netfilter message at all.
    let touched = state.insert_slice(&slice("a", &["10.244.1.1", "10.244.1.9"]));
    let report = block_on(engine.sync_services(&state, &touched)).unwrap();
    assert_eq!(report.sent.total(), 1);
    assert_eq!(report.netfilter.transactions, 0);
    assert!(take_transactions(&kernel).is_empty());

    // A Service removed: its elements only, and no rules.
    state.remove_service(&ObjectRef::new("default", "b"));
    let report = block_on(engine.sync_services(&state, &refs(&["b"]))).unwrap();
    let transactions = take_transactions(&kernel);
    assert_eq!(transactions.len(), 1);
    assert!(transactions[0].rules.is_empty());
    assert_eq!(
        transactions[0].remove,
        vec![
            cluster_ip_element("10.96.0.2", 80),
            vip_element("10.96.0.2")
        ]
    );
    assert_eq!(report.netfilter.elements_removed, 2);

    // The periodic audit finds nothing to do: the rules read back are
    // what the agent wrote.
    let report = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert_eq!(report.netfilter.transactions, 0);
    assert!(take_transactions(&kernel).is_empty());
    engine.desired.check().unwrap();
}

#[test]
fn a_flushed_or_edited_table_is_repaired_by_the_resync() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let state = cluster(&[("a", "10.96.0.1", &["10.244.1.1"])]);
    block_on(engine.full_sync(&state)).unwrap();
    take_transactions(&kernel);
    let wanted = held_elements(&kernel);

    // `nft flush ruleset`: the table is gone.
    kernel.with(|state| state.netfilter.clear());
    let report = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert!(report.repair);
    assert_eq!(
        (
            report.netfilter.rules_written,
            report.netfilter.elements_added
        ),
        (1, wanted.len())
    );
    assert_eq!(held_elements(&kernel), wanted);

    // Someone edits a rule: the rules are written again, the elements
    // (still right) are not sent.
    kernel.with(|state| {
        let table = state.netfilter.get_mut(&NetfilterFamily::Ipv4).unwrap();
        table.rules.push(("services".into(), b"accept".to_vec()));
    });
    let report = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert_eq!(
        (
            report.netfilter.rules_written,
            report.netfilter.elements_added
        ),
        (1, 0)
    );
    // A set of the wrong type is declared again and filled.
    kernel.with(|state| {
        let table = state.netfilter.get_mut(&NetfilterFamily::Ipv4).unwrap();
        table.sets.get_mut("vips").unwrap().key_len = 16;
    });
    take_transactions(&kernel);
    block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    let transactions = take_transactions(&kernel);
    assert_eq!(transactions[0].rules[0].1.sets, vec![NetfilterSet::Vips]);
    assert_eq!(transactions[0].add, vec![vip_element("10.96.0.1")]);
    assert_eq!(held_elements(&kernel), wanted);
}

#[test]
fn a_refused_transaction_is_read_again_and_retried_once() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = cluster(&[
        ("a", "10.96.0.1", &["10.244.1.1"]),
        ("b", "10.96.0.2", &["10.244.2.1"]),
    ]);
    block_on(engine.full_sync(&state)).unwrap();
    take_transactions(&kernel);
    // Someone deleted b's VIP element behind the agent's back: deleting it
    // again is refused, which refuses the whole transaction.
    kernel.with(|state| {
        let table = state.netfilter.get_mut(&NetfilterFamily::Ipv4).unwrap();
        table.elements.remove(&vip_element("10.96.0.2"));
    });
    state.remove_service(&ObjectRef::new("default", "b"));
    let report = block_on(engine.sync_services(&state, &refs(&["b"]))).unwrap();
    assert_eq!(report.failed(), 0, "the retry on a fresh read succeeded");
    let transactions = take_transactions(&kernel);
    assert_eq!(transactions.len(), 1);
    assert_eq!(
        transactions[0].remove,
        vec![cluster_ip_element("10.96.0.2", 80)]
    );
    assert_eq!(
        held_elements(&kernel),
        [
            cluster_ip_element("10.96.0.1", 80),
            vip_element("10.96.0.1")
        ]
        .into()
    );
}

#[test]
fn without_netfilter_no_table_is_made() {
    let kernel = MemoryKernel::node();
    let mut settings = ProxySettings::default();
    settings.datapath.enabled = false;
    let mut engine = engine(&kernel, settings);
    let state = cluster(&[("a", "10.96.0.1", &["10.244.1.1"])]);
    let report = block_on(engine.full_sync(&state)).unwrap();
    assert_eq!(report.netfilter.transactions, 0);
    assert!(kernel.with(|state| state.netfilter.is_empty()));
}

#[test]
fn a_zone_change_recomputes_the_services_with_the_new_zone() {
    // What the driver does when the Node's topology.kubernetes.io/zone
    // changes: the engine takes the zone, every Service is recomputed.
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let mut state = ClusterState::default();
    state.insert_service(service("a", "10.96.0.1", 80));
    let hinted = |address: &str, zone: &str| {
        json!({"addresses": [address], "conditions": {"ready": true},
               "hints": {"forZones": [{"name": zone}]}})
    };
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "a-1", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "a"}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": [hinted("10.244.1.1", "zone-a"), hinted("10.244.2.1", "zone-b")]
    }))
    .unwrap();
    state.insert_slice(&slice);
    block_on(engine.full_sync(&state)).unwrap();
    assert_eq!(
        kernel.table(),
        [entry(
            "10.96.0.1",
            80,
            "rr",
            &[("10.244.1.1", 8080), ("10.244.2.1", 8080)]
        )]
        .into(),
        "no zone yet: every endpoint"
    );
    kernel.take_sent();

    engine.set_node_zone(Some("zone-b".to_owned()));
    assert_eq!(engine.node_zone(), Some("zone-b"));
    block_on(engine.sync_services(&state, &refs(&["a"]))).unwrap();
    assert_eq!(
        kernel.take_sent(),
        vec![IpvsOperation::DeleteDestination(
            key("10.96.0.1", 80),
            real("10.244.1.1", 8080).key
        )]
    );
    assert_converged(&engine, &kernel, &[]);
}

fn udp_cluster(endpoints: &[&str]) -> ClusterState {
    let mut cluster = ClusterState::default();
    cluster.insert_service(
        serde_json::from_value(json!({
            "metadata": {"name": "dns", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.53",
                     "ports": [{"port": 53, "protocol": "UDP", "targetPort": 5353}]}
        }))
        .unwrap(),
    );
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|address| json!({"addresses": [address], "conditions": {"ready": true}}))
        .collect();
    cluster.insert_slice(
        &serde_json::from_value(json!({
            "metadata": {"name": "dns-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4",
            "ports": [{"port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints
        }))
        .unwrap(),
    );
    cluster
}

fn flow(protocol: IpvsProtocol, reply_source: &str) -> ConntrackEntry {
    ConntrackEntry {
        protocol,
        source: ip("10.244.1.14"),
        destination: ip("10.96.0.53"),
        source_port: 40000,
        destination_port: 53,
        reply_source: ip(reply_source),
        reply_source_port: if reply_source == "10.96.0.53" {
            53
        } else {
            5353
        },
        zone: None,
    }
}

#[test]
fn conntrack_cleanup_runs_when_a_udp_virtual_server_loses_or_gets_real_servers() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    // No endpoint yet: the client's packets left an entry not rewritten.
    let mut state = udp_cluster(&[]);
    kernel.with(|k| k.conntrack = vec![flow(IpvsProtocol::Udp, "10.96.0.53")]);
    let first = block_on(engine.full_sync(&state)).unwrap();
    assert!(first.conntrack.ran, "the first sync always cleans");
    assert_eq!(
        first.conntrack.deleted, 1,
        "not rewritten: deleted even with no endpoint"
    );

    // A resync with nothing changed does not dump.
    let dumps = kernel.with(|k| k.conntrack_dumps);
    let quiet = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert!(!quiet.conntrack.ran);
    assert_eq!(kernel.with(|k| k.conntrack_dumps), dumps);

    // The first endpoint: the entry made meanwhile goes.
    kernel.with(|k| k.conntrack = vec![flow(IpvsProtocol::Udp, "10.96.0.53")]);
    state = udp_cluster(&["10.244.0.11"]);
    let got = block_on(engine.sync_services(&state, &refs(&["dns"]))).unwrap();
    assert_eq!((got.conntrack.ran, got.conntrack.deleted), (true, 1));

    // The endpoint replaced: its flow goes, TCP and fresh flows stay.
    kernel.with(|k| {
        k.conntrack = vec![
            flow(IpvsProtocol::Udp, "10.244.0.11"),
            flow(IpvsProtocol::Tcp, "10.244.0.11"),
        ]
    });
    state = udp_cluster(&["10.244.0.12"]);
    let replaced = block_on(engine.sync_services(&state, &refs(&["dns"]))).unwrap();
    assert_eq!(replaced.conntrack.deleted, 1);
    assert_eq!(replaced.failed(), 0);
    assert_eq!(
        kernel.with(|k| k.conntrack.clone()),
        vec![flow(IpvsProtocol::Tcp, "10.244.0.11")]
    );

    // A second endpoint added: nothing is stale, no dump.
    let dumps = kernel.with(|k| k.conntrack_dumps);
    state = udp_cluster(&["10.244.0.12", "10.244.0.13"]);
    let added = block_on(engine.sync_services(&state, &refs(&["dns"]))).unwrap();
    assert!(!added.conntrack.ran);
    assert_eq!(kernel.with(|k| k.conntrack_dumps), dumps);
}

#[test]
fn a_failed_conntrack_cleanup_is_counted_never_fatal_and_retried() {
    let kernel = MemoryKernel::node();
    let mut engine = engine(&kernel, ProxySettings::default());
    let state = udp_cluster(&["10.244.0.11"]);
    kernel.with(|k| k.conntrack_broken = true);
    let report = block_on(engine.full_sync(&state)).unwrap();
    assert_eq!(report.conntrack.failed, 1);
    assert_eq!(
        report.failed(),
        0,
        "IPVS synced; the failure is not an IPVS one"
    );
    assert_converged(&engine, &kernel, &[]);
    kernel.with(|k| {
        k.conntrack_broken = false;
        k.conntrack = vec![flow(IpvsProtocol::Udp, "10.244.9.9")];
    });
    let retry = block_on(engine.resync(&state, &BTreeSet::new())).unwrap();
    assert_eq!((retry.conntrack.ran, retry.conntrack.deleted), (true, 1));
}

#[test]
fn conntrack_cleanup_can_be_turned_off() {
    let kernel = MemoryKernel::node();
    let settings = ProxySettings {
        conntrack_cleanup: false,
        ..ProxySettings::default()
    };
    let mut engine = engine(&kernel, settings);
    kernel.with(|k| k.conntrack = vec![flow(IpvsProtocol::Udp, "10.96.0.53")]);
    let report = block_on(engine.full_sync(&udp_cluster(&["10.244.0.11"]))).unwrap();
    assert!(!report.conntrack.ran);
    assert_eq!(kernel.with(|k| k.conntrack_dumps), 0);
}
