// SPDX-License-Identifier: MIT

//! Virtual services: the typed model and its attribute nest.

mod attribute;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::DecodeError;

pub use attribute::{IpvsFlagsWithMask, IpvsServiceAttribute};

use crate::address::{decode_address, encode_address, IpvsAddressFamily};
use crate::stats::IpvsStats;

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const IPPROTO_SCTP: u16 = 132;

/// The transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IpvsProtocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// SCTP (132).
    Sctp,
    /// Any other IP protocol number.
    Other(u16),
}

impl From<IpvsProtocol> for u16 {
    fn from(protocol: IpvsProtocol) -> u16 {
        match protocol {
            IpvsProtocol::Tcp => IPPROTO_TCP,
            IpvsProtocol::Udp => IPPROTO_UDP,
            IpvsProtocol::Sctp => IPPROTO_SCTP,
            IpvsProtocol::Other(value) => value,
        }
    }
}

impl From<u16> for IpvsProtocol {
    fn from(value: u16) -> Self {
        match value {
            IPPROTO_TCP => Self::Tcp,
            IPPROTO_UDP => Self::Udp,
            IPPROTO_SCTP => Self::Sctp,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for IpvsProtocol {
    /// `TCP`, `UDP`, `SCTP` as ipvsadm prints them, and `IP` for any other
    /// protocol (ipvsadm 1.31 prints `?`; `format` does as ipvsadm).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
            Self::Other(_) => "IP",
        })
    }
}

/// What identifies a virtual service in the kernel. (Its `Ord` is for
/// maps and stable output; ipvsadm's listing order is `format::sort`'s.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpvsServiceKey {
    /// A service on an address, protocol and port (`-t`, `-u`, `--sctp-service`).
    Inet {
        /// Transport protocol.
        protocol: IpvsProtocol,
        /// Virtual address.
        address: IpAddr,
        /// Virtual port.
        port: u16,
    },
    /// A service matching a firewall mark (`-f`).
    Fwmark {
        /// Address family of the service.
        family: IpvsAddressFamily,
        /// The mark (non-zero).
        mark: u32,
    },
}

impl IpvsServiceKey {
    /// A TCP service on `address:port`.
    pub fn tcp(address: IpAddr, port: u16) -> Self {
        Self::Inet {
            protocol: IpvsProtocol::Tcp,
            address,
            port,
        }
    }

    /// A UDP service on `address:port`.
    pub fn udp(address: IpAddr, port: u16) -> Self {
        Self::Inet {
            protocol: IpvsProtocol::Udp,
            address,
            port,
        }
    }

    /// An SCTP service on `address:port`.
    pub fn sctp(address: IpAddr, port: u16) -> Self {
        Self::Inet {
            protocol: IpvsProtocol::Sctp,
            address,
            port,
        }
    }

    /// The service's address family.
    pub fn family(&self) -> IpvsAddressFamily {
        match self {
            Self::Inet { address, .. } => IpvsAddressFamily::of(address),
            Self::Fwmark { family, .. } => *family,
        }
    }

    /// The attributes that identify the service, in ipvsadm's order:
    /// `AF`, then `FWMARK` or `PROTOCOL`, `ADDR`, `PORT`.
    pub fn to_attributes(&self) -> Vec<IpvsServiceAttribute> {
        let mut attributes = vec![IpvsServiceAttribute::AddressFamily(self.family().into())];
        match self {
            Self::Inet {
                protocol,
                address,
                port,
            } => {
                attributes.push(IpvsServiceAttribute::Protocol((*protocol).into()));
                attributes.push(IpvsServiceAttribute::Address(encode_address(address)));
                attributes.push(IpvsServiceAttribute::Port(*port));
            }
            Self::Fwmark { mark, .. } => attributes.push(IpvsServiceAttribute::Fwmark(*mark)),
        }
        attributes
    }

    /// Reads the identifying attributes of a service nest. A non-zero
    /// `FWMARK` makes a fwmark service, as in the kernel.
    pub fn from_attributes(attributes: &[IpvsServiceAttribute]) -> Result<Self, DecodeError> {
        let mut family = None;
        let mut protocol = None;
        let mut raw_address = None;
        let mut port = None;
        let mut fwmark = 0;
        for attribute in attributes {
            match attribute {
                IpvsServiceAttribute::AddressFamily(v) => {
                    family = Some(IpvsAddressFamily::from(*v))
                }
                IpvsServiceAttribute::Protocol(v) => protocol = Some(IpvsProtocol::from(*v)),
                IpvsServiceAttribute::Address(v) => raw_address = Some(v.as_slice()),
                IpvsServiceAttribute::Port(v) => port = Some(*v),
                IpvsServiceAttribute::Fwmark(v) => fwmark = *v,
                _ => {}
            }
        }
        let family = family.ok_or_else(|| DecodeError::from("missing IPVS_SVC_ATTR_AF"))?;
        if fwmark != 0 {
            return Ok(Self::Fwmark {
                family,
                mark: fwmark,
            });
        }
        let missing = |name: &str| DecodeError::from(format!("missing {name}"));
        let raw_address = raw_address.ok_or_else(|| missing("IPVS_SVC_ATTR_ADDR"))?;
        Ok(Self::Inet {
            protocol: protocol.ok_or_else(|| missing("IPVS_SVC_ATTR_PROTOCOL"))?,
            address: decode_address(raw_address, family, "IPVS_SVC_ATTR_ADDR")?,
            port: port.ok_or_else(|| missing("IPVS_SVC_ATTR_PORT"))?,
        })
    }
}

impl fmt::Display for IpvsServiceKey {
    /// A short name for logs and errors: `TCP 10.0.0.1:80`,
    /// `UDP [2001:db8::1]:53`, `FWM 42`. (Not ipvsadm's column layout,
    /// which `format` prints.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inet {
                protocol,
                address: IpAddr::V6(v6),
                port,
            } => write!(f, "{protocol} [{v6}]:{port}"),
            Self::Inet {
                protocol,
                address,
                port,
            } => write!(f, "{protocol} {address}:{port}"),
            Self::Fwmark {
                family: IpvsAddressFamily::Inet6,
                mark,
            } => write!(f, "FWM {mark} IPv6"),
            Self::Fwmark { mark, .. } => write!(f, "FWM {mark}"),
        }
    }
}

/// Service flags (`IP_VS_SVC_F_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpvsServiceFlags(pub u32);

impl IpvsServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT`: persistent service.
    pub const PERSISTENT: u32 = 0x0001;
    /// `IP_VS_SVC_F_HASHED`: set by the kernel on every live service.
    pub const HASHED: u32 = 0x0002;
    /// `IP_VS_SVC_F_ONEPACKET`: one-packet scheduling (`-o`, UDP).
    pub const ONE_PACKET: u32 = 0x0004;
    /// `IP_VS_SVC_F_SCHED1`: scheduler flag 1 (`sh-fallback`, `mh-fallback`).
    pub const SCHED1: u32 = 0x0008;
    /// `IP_VS_SVC_F_SCHED2`: scheduler flag 2 (`sh-port`, `mh-port`).
    pub const SCHED2: u32 = 0x0010;
    /// `IP_VS_SVC_F_SCHED3`: scheduler flag 3.
    pub const SCHED3: u32 = 0x0020;

    /// Whether every bit of `flag` is set.
    pub fn contains(self, flag: u32) -> bool {
        self.0 & flag == flag
    }
}

/// Persistence granularity, as the kernel holds it: for IPv4 a mask whose
/// bytes are in network order (`/32` = `0xffffffff`), for IPv6 a prefix
/// length (`1..=128`, the kernel rejects anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpvsNetmask(pub u32);

impl IpvsNetmask {
    /// The IPv4 mask `mask` (for example 255.255.255.0).
    pub fn ipv4(mask: Ipv4Addr) -> Self {
        Self(u32::from_ne_bytes(mask.octets()))
    }

    /// The IPv6 prefix length `prefix`.
    pub fn ipv6_prefix(prefix: u8) -> Self {
        Self(u32::from(prefix))
    }

    /// ipvsadm's default for the family: `/32` for IPv4, `/128` for IPv6.
    pub fn full(family: IpvsAddressFamily) -> Self {
        match family {
            IpvsAddressFamily::Inet6 => Self::ipv6_prefix(128),
            _ => Self(u32::MAX),
        }
    }

    /// The mask as an IPv4 address (meaningful for IPv4 services).
    pub fn as_ipv4(self) -> Ipv4Addr {
        Ipv4Addr::from(self.0.to_ne_bytes())
    }
}

/// A virtual service: what `ipvsadm -A` creates and `ipvsadm -Ln` lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsService {
    /// What identifies the service.
    pub key: IpvsServiceKey,
    /// Scheduler name (`rr`, `wlc`, `sh`, ...).
    pub scheduler: String,
    /// Flags (`IP_VS_SVC_F_*`). `HASHED`, which every live service reports,
    /// is dropped when reading from the kernel.
    pub flags: IpvsServiceFlags,
    /// Persistence timeout in seconds (meaningful with `PERSISTENT`).
    pub timeout: u32,
    /// Persistence granularity.
    pub netmask: IpvsNetmask,
    /// Persistence engine (`sip`), if any.
    pub persistence_engine: Option<String>,
    /// Counters, when read from the kernel (`STATS64`, else `STATS`).
    /// Boxed, as in [`IpvsDestination`](crate::IpvsDestination).
    pub stats: Option<Box<IpvsStats>>,
}

impl IpvsService {
    /// A service with `scheduler`, no flags, no persistence, and ipvsadm's
    /// default netmask.
    pub fn new(key: IpvsServiceKey, scheduler: impl Into<String>) -> Self {
        Self {
            netmask: IpvsNetmask::full(key.family()),
            key,
            scheduler: scheduler.into(),
            flags: IpvsServiceFlags::default(),
            timeout: 0,
            persistence_engine: None,
            stats: None,
        }
    }

    /// Makes the service persistent for `timeout` seconds (`-p timeout`).
    pub fn persistent(mut self, timeout: u32) -> Self {
        self.flags.0 |= IpvsServiceFlags::PERSISTENT;
        self.timeout = timeout;
        self
    }

    /// Whether the service is persistent.
    pub fn is_persistent(&self) -> bool {
        self.flags.contains(IpvsServiceFlags::PERSISTENT)
    }

    /// The full nest `NEW_SERVICE` and `SET_SERVICE` need, in ipvsadm's
    /// order: identity, `SCHED_NAME`, `PE_NAME` (if any), `FLAGS` (mask all
    /// ones), `TIMEOUT`, `NETMASK`. Counters are never sent.
    pub fn to_attributes(&self) -> Vec<IpvsServiceAttribute> {
        let mut attributes = self.key.to_attributes();
        attributes.push(IpvsServiceAttribute::SchedulerName(self.scheduler.clone()));
        if let Some(engine) = &self.persistence_engine {
            attributes.push(IpvsServiceAttribute::PersistenceEngine(engine.clone()));
        }
        attributes.push(IpvsServiceAttribute::Flags(IpvsFlagsWithMask {
            flags: self.flags.0,
            mask: u32::MAX,
        }));
        attributes.push(IpvsServiceAttribute::Timeout(self.timeout));
        attributes.push(IpvsServiceAttribute::Netmask(self.netmask.0));
        attributes
    }

    /// Reads a service nest as the kernel sends it in a `NEW_SERVICE` reply.
    pub fn from_attributes(attributes: &[IpvsServiceAttribute]) -> Result<Self, DecodeError> {
        let key = IpvsServiceKey::from_attributes(attributes)?;
        let mut service = Self::new(key, String::new());
        let mut stats64 = None;
        let mut stats32 = None;
        let mut scheduler = None;
        for attribute in attributes {
            match attribute {
                IpvsServiceAttribute::SchedulerName(v) => scheduler = Some(v.clone()),
                IpvsServiceAttribute::Flags(v) => {
                    service.flags = IpvsServiceFlags(v.flags & !IpvsServiceFlags::HASHED)
                }
                IpvsServiceAttribute::Timeout(v) => service.timeout = *v,
                IpvsServiceAttribute::Netmask(v) => service.netmask = IpvsNetmask(*v),
                IpvsServiceAttribute::PersistenceEngine(v) => {
                    service.persistence_engine = Some(v.clone())
                }
                IpvsServiceAttribute::Stats64(v) => stats64 = Some(IpvsStats::from_attributes(v)),
                IpvsServiceAttribute::Stats(v) => stats32 = Some(IpvsStats::from_attributes(v)),
                _ => {}
            }
        }
        service.scheduler =
            scheduler.ok_or_else(|| DecodeError::from("missing IPVS_SVC_ATTR_SCHED_NAME"))?;
        service.stats = stats64.or(stats32).map(Box::new);
        Ok(service)
    }
}
