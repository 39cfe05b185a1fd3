//! The seam between the engine and the kernel: everything the engine reads
//! or changes goes through [`Kernel`]. [`NetlinkKernel`] is the real one
//! (IPVS generic netlink, rtnetlink, nfnetlink reads, `nft -f` and ctnetlink); the engine's unit tests use an
//! in-memory kernel that answers as the real one does (EEXIST, ESRCH,
//! ENOENT), and the guest tests remain the proof that the real kernel
//! agrees.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::IpAddr;

use netlink_ipvs::{
    IpvsCounters, IpvsError, IpvsHandle, IpvsOperation, IpvsProtocol, IpvsServiceKey, IpvsTimeouts,
};

use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::NetfilterFamily;
use crate::model::settings::DatapathSettings;
use crate::model::table::entry_of;
use crate::model::{LocalAddress, Table, TableEntry};
use crate::system::conntrack::{self, ConntrackError, Dump};
use crate::system::link::{AddressChanges, LinkError, LinkManager};
use crate::system::netfilter::script::Transaction;
use crate::system::netfilter::{self, KernelTables, NetfilterError};

/// What the engine needs of the kernel.
pub trait Kernel {
    /// Reads the whole IPVS table (`counters`: whether the real servers'
    /// counters are decoded).
    fn read_table(
        &mut self,
        counters: IpvsCounters,
    ) -> impl Future<Output = Result<Table, IpvsError>>;

    /// Reads one virtual server and its real servers (`None`: the kernel
    /// has no such virtual server).
    fn read_virtual_server(
        &mut self,
        key: &IpvsServiceKey,
    ) -> impl Future<Output = Result<Option<TableEntry>, IpvsError>>;

    /// Sends `operations` in one batch; one result per operation, in order.
    fn apply(
        &mut self,
        operations: &[IpvsOperation],
    ) -> impl Future<Output = Vec<Result<(), IpvsError>>>;

    /// Sets the IPVS connection timeouts.
    fn set_timeouts(
        &mut self,
        timeouts: &IpvsTimeouts,
    ) -> impl Future<Output = Result<(), IpvsError>>;

    /// Makes sure the dummy link `name` exists (down).
    fn ensure_dummy(&mut self, name: &str) -> impl Future<Output = Result<(), LinkError>>;

    /// Every address on the node's interfaces.
    fn local_addresses(&mut self) -> impl Future<Output = Result<Vec<LocalAddress>, LinkError>>;

    /// Makes the addresses of the link `name` exactly `wanted`.
    fn sync_addresses(
        &mut self,
        name: &str,
        wanted: &BTreeSet<IpAddr>,
    ) -> impl Future<Output = Result<AddressChanges, LinkError>>;

    /// Reads the agent's nftables tables of `families` (set elements only
    /// with `elements`).
    fn read_netfilter(
        &mut self,
        families: Vec<NetfilterFamily>,
        elements: bool,
    ) -> impl Future<Output = Result<KernelTables, NetfilterError>>;

    /// Commits `transaction` on the agent's tables, all or nothing.
    fn apply_netfilter(
        &mut self,
        transaction: &Transaction,
        settings: &DatapathSettings,
    ) -> impl Future<Output = Result<(), NetfilterError>>;

    /// The conntrack entries of `families` whose protocol is one of
    /// `protocols` (like `conntrack -L -f ipv4 -p udp`).
    fn conntrack_entries(
        &mut self,
        families: Vec<NetfilterFamily>,
        protocols: Vec<IpvsProtocol>,
    ) -> impl Future<Output = Result<Dump, ConntrackError>>;

    /// Deletes `entries`; one result per entry, in order (an entry
    /// already gone is deleted).
    fn delete_conntrack(
        &mut self,
        entries: Vec<ConntrackEntry>,
    ) -> impl Future<Output = Vec<Result<(), ConntrackError>>>;
}

/// Opens an IPVS generic-netlink connection (its task spawned on the
/// current runtime).
pub fn connect_ipvs() -> Result<IpvsHandle, IpvsError> {
    let (connection, handle) = netlink_ipvs::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The real kernel: IPVS over generic netlink, links and addresses over
/// rtnetlink.
#[derive(Debug, Clone)]
pub struct NetlinkKernel {
    ipvs: IpvsHandle,
    links: LinkManager,
}

impl NetlinkKernel {
    /// The kernel behind these two connections.
    pub fn new(ipvs: IpvsHandle, links: LinkManager) -> Self {
        Self { ipvs, links }
    }
}

impl Kernel for NetlinkKernel {
    async fn read_table(&mut self, counters: IpvsCounters) -> Result<Table, IpvsError> {
        Ok(self
            .ipvs
            .table_with(counters, entry_of)
            .await?
            .into_iter()
            .collect())
    }

    async fn read_virtual_server(
        &mut self,
        key: &IpvsServiceKey,
    ) -> Result<Option<TableEntry>, IpvsError> {
        let service = match self.ipvs.service(key).await {
            Ok(service) => service,
            Err(error) if error.is_no_such_service() || error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let real_servers = self
            .ipvs
            .destinations(key)
            .await?
            .into_iter()
            .map(|destination| (destination.key, destination))
            .collect();
        Ok(Some(TableEntry {
            service,
            real_servers,
        }))
    }

    async fn apply(&mut self, operations: &[IpvsOperation]) -> Vec<Result<(), IpvsError>> {
        self.ipvs.apply(operations).await
    }

    async fn set_timeouts(&mut self, timeouts: &IpvsTimeouts) -> Result<(), IpvsError> {
        self.ipvs.set_timeouts(timeouts).await
    }

    async fn ensure_dummy(&mut self, name: &str) -> Result<(), LinkError> {
        self.links.ensure_dummy(name).await.map(|_| ())
    }

    async fn local_addresses(&mut self) -> Result<Vec<LocalAddress>, LinkError> {
        self.links.local_addresses().await
    }

    async fn sync_addresses(
        &mut self,
        name: &str,
        wanted: &BTreeSet<IpAddr>,
    ) -> Result<AddressChanges, LinkError> {
        self.links.sync_addresses(name, wanted).await
    }

    async fn read_netfilter(
        &mut self,
        families: Vec<NetfilterFamily>,
        elements: bool,
    ) -> Result<KernelTables, NetfilterError> {
        netfilter::read_tables(families, elements).await
    }

    async fn apply_netfilter(
        &mut self,
        transaction: &Transaction,
        settings: &DatapathSettings,
    ) -> Result<(), NetfilterError> {
        netfilter::apply(transaction.clone(), settings.clone()).await
    }

    async fn conntrack_entries(
        &mut self,
        families: Vec<NetfilterFamily>,
        protocols: Vec<IpvsProtocol>,
    ) -> Result<Dump, ConntrackError> {
        conntrack::dump_entries(families, protocols).await
    }

    async fn delete_conntrack(
        &mut self,
        entries: Vec<ConntrackEntry>,
    ) -> Vec<Result<(), ConntrackError>> {
        conntrack::delete_entries(entries).await
    }
}
