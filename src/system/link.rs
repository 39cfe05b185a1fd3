//! The `kube-ipvs0` dummy link and the node's addresses, over rtnetlink.
//!
//! [`address_changes`] (pure) decides what to add and remove;
//! [`LinkManager`] reads and writes the kernel (address changes go in
//! batches: [`crate::system::address_batch`]).

use std::collections::BTreeSet;
use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkDummy, LinkUnspec};

use super::address_batch::{send_address_datagrams, AddressRequest, ADDRESSES_PER_DATAGRAM};
use super::errno::{EEXIST, ENODEV};
use crate::model::node::{is_ipv6_link_local, LocalAddress};

/// A failed rtnetlink request, naming what it was about.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The rtnetlink socket could not be opened.
    #[error("opening an rtnetlink socket: {0}")]
    Socket(#[source] std::io::Error),
    /// The kernel refused a request sent in a batch.
    #[error("{what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Refused {
        /// What was asked (`adding 10.96.0.10/32 to kube-ipvs0`).
        what: String,
        /// The kernel's errno.
        errno: i32,
    },
    /// A batch of requests could not be sent or answered.
    #[error("{what}: {source}")]
    Batch {
        /// What was being done.
        what: String,
        /// The socket's error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Request {
        /// What was asked (`adding 10.96.0.10/32 to kube-ipvs0`).
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
}

fn errno(error: &rtnetlink::Error) -> Option<i32> {
    match error {
        rtnetlink::Error::NetlinkError(message) => Some(message.raw_code().abs()),
        _ => None,
    }
}

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Request { what, source }
}

/// What changed on the link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressChanges {
    /// Addresses added.
    pub added: Vec<IpAddr>,
    /// Addresses removed.
    pub removed: Vec<IpAddr>,
}

/// The addresses to add and to remove so that `current` becomes `wanted`.
pub fn address_changes(current: &BTreeSet<IpAddr>, wanted: &BTreeSet<IpAddr>) -> AddressChanges {
    AddressChanges {
        added: wanted.difference(current).copied().collect(),
        removed: current.difference(wanted).copied().collect(),
    }
}

/// rtnetlink access for the agent.
#[derive(Debug, Clone)]
pub struct LinkManager {
    handle: Handle,
}

impl LinkManager {
    /// Opens an rtnetlink connection (spawned on the current tokio runtime).
    pub fn new() -> Result<Self, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Socket)?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }

    /// The index of the link `name`, if it exists.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, LinkError> {
        Ok(self.link(name).await?.map(|link| link.header.index))
    }

    /// The link `name`, if it exists.
    async fn link(&self, name: &str) -> Result<Option<LinkMessage>, LinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(error) if errno(&error) == Some(ENODEV) => Ok(None),
            Err(error) => Err(request(format!("reading link {name}"))(error)),
        }
    }

    /// Creates the dummy link `name` if missing, and keeps it down (as
    /// kube-proxy does: addresses on a down dummy still get their `local`
    /// routes, IPv4 and IPv6 alike, and traffic to them is delivered; on a
    /// link that is up the kernel also re-checks every route through the
    /// link on each address added, which makes binding thousands of VIPs
    /// quadratic). A link found up (left by an older agent) is set down;
    /// the kernel drops its IPv6 addresses then, and the sync that follows
    /// adds back what is missing. Returns its index.
    pub async fn ensure_dummy(&self, name: &str) -> Result<u32, LinkError> {
        if let Some(link) = self.link(name).await? {
            if link.header.flags.contains(LinkFlags::Up) {
                self.handle
                    .link()
                    .set(LinkUnspec::new_with_index(link.header.index).down().build())
                    .execute()
                    .await
                    .map_err(request(format!("setting {name} down")))?;
            }
            return Ok(link.header.index);
        }
        let created = self
            .handle
            .link()
            .add(LinkDummy::new(name).build())
            .execute()
            .await;
        match created {
            Ok(()) => {}
            Err(error) if errno(&error) == Some(EEXIST) => {}
            Err(error) => return Err(request(format!("creating dummy link {name}"))(error)),
        }
        self.link_index(name)
            .await?
            .ok_or_else(|| LinkError::Request {
                what: format!("creating dummy link {name}"),
                source: rtnetlink::Error::RequestFailed,
            })
    }

    /// Every address on every interface, with the interface's name.
    pub async fn local_addresses(&self) -> Result<Vec<LocalAddress>, LinkError> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("listing links"))?;
        let name_of = |index: u32| {
            links
                .iter()
                .find(|link| link.header.index == index)
                .and_then(|link| {
                    link.attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            LinkAttribute::IfName(name) => Some(name.clone()),
                            _ => None,
                        })
                })
                .unwrap_or_default()
        };
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(request("listing addresses"))?;
        let mut addresses: Vec<LocalAddress> = messages
            .iter()
            .filter_map(|message| {
                address_of(message).map(|address| LocalAddress {
                    address,
                    interface: name_of(message.header.index),
                })
            })
            .collect();
        addresses.sort();
        addresses.dedup();
        Ok(addresses)
    }

    /// The addresses on the link `name` (empty when it does not exist),
    /// without the IPv6 link-local address the kernel gives every link
    /// that is up: it is not a VIP, and not the agent's to remove.
    pub async fn addresses_of(&self, name: &str) -> Result<BTreeSet<IpAddr>, LinkError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(BTreeSet::new());
        };
        let messages: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(request(format!("listing addresses of {name}")))?;
        Ok(messages
            .iter()
            .filter(|message| message.header.index == index)
            .filter_map(address_of)
            .filter(|address| !is_ipv6_link_local(address))
            .collect())
    }

    /// Makes the addresses on the link `name` exactly `wanted` (each as a
    /// /32 or /128): adds the missing, removes the stale. The link must
    /// exist ([`LinkManager::ensure_dummy`]).
    pub async fn sync_addresses(
        &self,
        name: &str,
        wanted: &BTreeSet<IpAddr>,
    ) -> Result<AddressChanges, LinkError> {
        let index = self.ensure_dummy(name).await?;
        let current = self.addresses_of(name).await?;
        let changes = address_changes(&current, wanted);
        // Batched: thousands of VIPs must not cost thousands of round
        // trips one after the other (see `address_batch`).
        let requests: Vec<AddressRequest> = changes
            .added
            .iter()
            .map(|address| AddressRequest::Add(*address))
            .chain(changes.removed.iter().map(|a| AddressRequest::Remove(*a)))
            .collect();
        if requests.is_empty() {
            return Ok(changes);
        }
        let (requests, refused) = tokio::task::spawn_blocking(move || {
            let refused = send_address_datagrams(index, &requests, ADDRESSES_PER_DATAGRAM);
            (requests, refused)
        })
        .await
        .map_err(|error| LinkError::Batch {
            what: format!("changing the addresses of {name}"),
            source: std::io::Error::other(error),
        })?;
        let refused = refused.map_err(|source| LinkError::Batch {
            what: format!("changing the addresses of {name}"),
            source,
        })?;
        match refused.first() {
            None => Ok(changes),
            Some(first) => Err(LinkError::Refused {
                what: format!(
                    "{} ({} of {} address changes refused)",
                    requests[first.position].describe(name),
                    refused.len(),
                    requests.len()
                ),
                errno: first.errno,
            }),
        }
    }

    /// Deletes the link `name`; nothing to do when it does not exist.
    pub async fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        let Some(index) = self.link_index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(error) if errno(&error) == Some(ENODEV) => Ok(()),
            Err(error) => Err(request(format!("deleting link {name}"))(error)),
        }
    }
}

/// The address of an address message: `IFA_LOCAL` when present (the
/// interface's own address on point-to-point links), else `IFA_ADDRESS`.
pub fn address_of(message: &AddressMessage) -> Option<IpAddr> {
    let local = message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Local(address) => Some(*address),
            _ => None,
        });
    local.or_else(|| {
        message
            .attributes
            .iter()
            .find_map(|attribute| match attribute {
                AddressAttribute::Address(address) => Some(*address),
                _ => None,
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(addresses: &[&str]) -> BTreeSet<IpAddr> {
        addresses.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn address_changes_add_missing_and_remove_stale() {
        let cases = [
            (set(&[]), set(&["10.96.0.10"]), vec!["10.96.0.10"], vec![]),
            (set(&["10.96.0.10"]), set(&["10.96.0.10"]), vec![], vec![]),
            (
                set(&["10.96.0.10", "fd00::10"]),
                set(&["10.96.0.11", "fd00::10"]),
                vec!["10.96.0.11"],
                vec!["10.96.0.10"],
            ),
            (set(&["10.96.0.10"]), set(&[]), vec![], vec!["10.96.0.10"]),
        ];
        assert!(is_ipv6_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_ipv6_link_local(&"fd00::1".parse().unwrap()));
        for (current, wanted, added, removed) in cases {
            let changes = address_changes(&current, &wanted);
            let strings = |list: &[IpAddr]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
            assert_eq!(strings(&changes.added), added, "{current:?} -> {wanted:?}");
            assert_eq!(
                strings(&changes.removed),
                removed,
                "{current:?} -> {wanted:?}"
            );
        }
    }
}
