// SPDX-License-Identifier: MIT

//! Address families and the raw 16-byte address IPVS puts on the wire.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::DecodeError;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// An address family as IPVS carries it (`AF_INET`, `AF_INET6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IpvsAddressFamily {
    /// `AF_INET` (2).
    Inet,
    /// `AF_INET6` (10).
    Inet6,
    /// Any other value.
    Other(u16),
}

impl IpvsAddressFamily {
    /// The family of `address`.
    pub fn of(address: &IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self::Inet,
            IpAddr::V6(_) => Self::Inet6,
        }
    }
}

impl From<IpvsAddressFamily> for u16 {
    fn from(family: IpvsAddressFamily) -> u16 {
        match family {
            IpvsAddressFamily::Inet => AF_INET,
            IpvsAddressFamily::Inet6 => AF_INET6,
            IpvsAddressFamily::Other(value) => value,
        }
    }
}

impl From<u16> for IpvsAddressFamily {
    fn from(value: u16) -> Self {
        match value {
            AF_INET => Self::Inet,
            AF_INET6 => Self::Inet6,
            other => Self::Other(other),
        }
    }
}

/// `union nf_inet_addr` as ipvsadm sends it: 16 bytes, an IPv4 address in
/// the first 4 and zeros after.
pub(crate) fn encode_address(address: &IpAddr) -> Vec<u8> {
    let mut raw = vec![0u8; 16];
    match address {
        IpAddr::V4(v4) => raw[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => raw.copy_from_slice(&v6.octets()),
    }
    raw
}

/// Decodes a raw address with its family (never from its length).
pub(crate) fn decode_address(
    raw: &[u8],
    family: IpvsAddressFamily,
    what: &str,
) -> Result<IpAddr, DecodeError> {
    match family {
        IpvsAddressFamily::Inet if raw.len() >= 4 => {
            Ok(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])))
        }
        IpvsAddressFamily::Inet6 if raw.len() >= 16 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&raw[..16]);
            Ok(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => Err(DecodeError::from(format!(
            "invalid {what}: {} bytes for address family {family:?}",
            raw.len()
        ))),
    }
}
