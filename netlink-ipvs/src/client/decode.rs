// SPDX-License-Identifier: MIT

//! Turning replies into the typed model, with no I/O: the services and real
//! servers of dump replies, shared by the async handle and the blocking
//! table readers, and the table entry they make together.

use netlink_packet_core::{DecodeError, NlasIterator, NLA_TYPE_MASK};

use super::error::IpvsError;
use super::wire::{GENL_HDRLEN, IPVS_CMD_ATTR_DEST, NLMSG_HDRLEN};
use crate::address::IpvsAddressFamily;
use crate::attribute::IpvsAttribute;
use crate::dest::IpvsDestination;
use crate::message::IpvsMessage;
use crate::service::IpvsService;
use crate::stats::IpvsCounters;

/// A service with its real servers, as one entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsTableEntry {
    /// The virtual service.
    pub service: IpvsService,
    /// Its real servers.
    pub destinations: Vec<IpvsDestination>,
}

pub(crate) fn parse_services(
    replies: Vec<IpvsMessage>,
    describe: impl Fn() -> String,
) -> Result<Vec<IpvsService>, IpvsError> {
    let mut services = Vec::with_capacity(replies.len());
    for reply in replies {
        for attribute in reply.attributes {
            if let IpvsAttribute::Service(nlas) = attribute {
                services.push(IpvsService::from_attributes(&nlas).map_err(|source| {
                    IpvsError::Decode {
                        request: describe(),
                        source,
                    }
                })?);
            }
        }
    }
    Ok(services)
}

/// The real servers in the replies to a real-server dump (each once).
pub(crate) fn parse_destinations(
    replies: Vec<IpvsMessage>,
    family: IpvsAddressFamily,
    describe: impl Fn() -> String,
) -> Result<Vec<IpvsDestination>, IpvsError> {
    let mut destinations = Vec::with_capacity(replies.len());
    for reply in replies {
        for attribute in reply.attributes {
            if let IpvsAttribute::Dest(nlas) = attribute {
                let destination =
                    IpvsDestination::from_attributes(&nlas, family).map_err(|source| {
                        IpvsError::Decode {
                            request: describe(),
                            source,
                        }
                    })?;
                destinations.push(destination);
            }
        }
    }
    keep_first_of_each(&mut destinations, |destination| destination.key);
    Ok(destinations)
}

/// The real servers in one reply to a real-server dump, decoded straight
/// from its attributes ([`IpvsDestination::decode_nest`]).
pub(crate) fn decode_destinations(
    reply: &[u8],
    family: IpvsAddressFamily,
    counters: IpvsCounters,
    destinations: &mut Vec<IpvsDestination>,
) -> Result<(), DecodeError> {
    let attributes = reply
        .get(NLMSG_HDRLEN + GENL_HDRLEN..)
        .ok_or_else(|| DecodeError::from("a reply shorter than its headers"))?;
    for nla in NlasIterator::new(attributes) {
        let nla = nla?;
        if nla.kind() & NLA_TYPE_MASK == IPVS_CMD_ATTR_DEST {
            destinations.push(IpvsDestination::decode_nest(nla.value(), family, counters)?);
        }
    }
    Ok(())
}

/// Keeps the first of the items sharing a `key`, in order (a dump that
/// resumes after a change can repeat an object).
pub(crate) fn keep_first_of_each<T, K: std::hash::Hash + Eq>(
    items: &mut Vec<T>,
    key: impl Fn(&T) -> K,
) {
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items.retain(|item| seen.insert(key(item)));
}
