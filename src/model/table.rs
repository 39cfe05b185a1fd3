//! An IPVS table as the diff sees it: virtual servers by key, each with its
//! real servers by key.

use std::collections::BTreeMap;

use netlink_ipvs::{
    IpvsDestination, IpvsDestinationKey, IpvsService, IpvsServiceKey, IpvsTableEntry,
};

/// One virtual server and its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// The virtual server.
    pub service: IpvsService,
    /// Its real servers.
    pub real_servers: BTreeMap<IpvsDestinationKey, IpvsDestination>,
}

/// Virtual servers by key.
pub type Table = BTreeMap<IpvsServiceKey, TableEntry>;

/// One entry of a kernel dump as an entry of a [`Table`] (the agent reads
/// the kernel with `IpvsHandle::table_with(counters, entry_of)`, turning
/// each entry as it is read).
pub fn entry_of(entry: IpvsTableEntry) -> (IpvsServiceKey, TableEntry) {
    let real_servers = entry
        .destinations
        .into_iter()
        .map(|destination| (destination.key, destination))
        .collect();
    (
        entry.service.key,
        TableEntry {
            service: entry.service,
            real_servers,
        },
    )
}
