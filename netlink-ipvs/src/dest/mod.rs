// SPDX-License-Identifier: MIT

//! Destinations (real servers): the typed model and its attribute nest.

mod attribute;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use netlink_packet_core::{DecodeError, NlaBuffer, NlasIterator};

pub use attribute::IpvsDestAttribute;
use attribute::{IPVS_DEST_ATTR_ADDR, IPVS_DEST_ATTR_STATS, IPVS_DEST_ATTR_STATS64};

use crate::address::{decode_address, encode_address, IpvsAddressFamily};
use crate::nla::kind_of;
use crate::stats::{IpvsCounters, IpvsStats, IpvsStatsWidth};

const IP_VS_CONN_F_FWD_MASK: u32 = 0x0007;
const IP_VS_CONN_F_MASQ: u32 = 0;
const IP_VS_CONN_F_LOCALNODE: u32 = 1;
const IP_VS_CONN_F_TUNNEL: u32 = 2;
const IP_VS_CONN_F_DROUTE: u32 = 3;
const IP_VS_CONN_F_BYPASS: u32 = 4;

const IP_VS_CONN_F_TUNNEL_TYPE_IPIP: u8 = 0;
const IP_VS_CONN_F_TUNNEL_TYPE_GUE: u8 = 1;
const IP_VS_CONN_F_TUNNEL_TYPE_GRE: u8 = 2;

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsForwardingMethod {
    /// NAT (`-m`, `Masq`).
    Masquerade,
    /// Local node (`Local`).
    Local,
    /// IP-in-IP / GUE / GRE tunnel (`-i`, `Tunnel`).
    Tunnel,
    /// Direct routing (`-g`, `Route`).
    DirectRoute,
    /// Bypass.
    Bypass,
    /// Any other value of the forwarding bits.
    Other(u32),
}

impl From<IpvsForwardingMethod> for u32 {
    fn from(method: IpvsForwardingMethod) -> u32 {
        match method {
            IpvsForwardingMethod::Masquerade => IP_VS_CONN_F_MASQ,
            IpvsForwardingMethod::Local => IP_VS_CONN_F_LOCALNODE,
            IpvsForwardingMethod::Tunnel => IP_VS_CONN_F_TUNNEL,
            IpvsForwardingMethod::DirectRoute => IP_VS_CONN_F_DROUTE,
            IpvsForwardingMethod::Bypass => IP_VS_CONN_F_BYPASS,
            IpvsForwardingMethod::Other(value) => value,
        }
    }
}

impl From<u32> for IpvsForwardingMethod {
    /// Reads the forwarding bits (`IP_VS_CONN_F_FWD_MASK`) of `value`.
    fn from(value: u32) -> Self {
        match value & IP_VS_CONN_F_FWD_MASK {
            IP_VS_CONN_F_MASQ => Self::Masquerade,
            IP_VS_CONN_F_LOCALNODE => Self::Local,
            IP_VS_CONN_F_TUNNEL => Self::Tunnel,
            IP_VS_CONN_F_DROUTE => Self::DirectRoute,
            IP_VS_CONN_F_BYPASS => Self::Bypass,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for IpvsForwardingMethod {
    /// The word ipvsadm prints in the `Forward` column (`Bypass` for bypass
    /// and unknown methods, where ipvsadm prints `(null)`; `format` does as
    /// ipvsadm).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Masquerade => "Masq",
            Self::Local => "Local",
            Self::Tunnel => "Tunnel",
            Self::DirectRoute => "Route",
            Self::Bypass | Self::Other(_) => "Bypass",
        })
    }
}

/// Tunnel encapsulation of a tunnel-forwarded real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IpvsTunnelType {
    /// IP-in-IP (the default).
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (needs a port).
    Gue,
    /// GRE.
    Gre,
    /// Any other value.
    Other(u8),
}

impl From<IpvsTunnelType> for u8 {
    fn from(kind: IpvsTunnelType) -> u8 {
        match kind {
            IpvsTunnelType::Ipip => IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
            IpvsTunnelType::Gue => IP_VS_CONN_F_TUNNEL_TYPE_GUE,
            IpvsTunnelType::Gre => IP_VS_CONN_F_TUNNEL_TYPE_GRE,
            IpvsTunnelType::Other(value) => value,
        }
    }
}

impl From<u8> for IpvsTunnelType {
    fn from(value: u8) -> Self {
        match value {
            IP_VS_CONN_F_TUNNEL_TYPE_IPIP => Self::Ipip,
            IP_VS_CONN_F_TUNNEL_TYPE_GUE => Self::Gue,
            IP_VS_CONN_F_TUNNEL_TYPE_GRE => Self::Gre,
            other => Self::Other(other),
        }
    }
}

/// Tunnel checksum flags (`IP_VS_TUNNEL_ENCAP_FLAG_*`): 0 is "no checksum".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpvsTunnelFlags(pub u16);

impl IpvsTunnelFlags {
    /// `IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM`: no checksum (no bit set).
    pub const NO_CHECKSUM: u16 = 0;
    /// `IP_VS_TUNNEL_ENCAP_FLAG_CSUM`: checksum.
    pub const CHECKSUM: u16 = 1 << 0;
    /// `IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM`: remote checksum offload.
    pub const REMOTE_CHECKSUM: u16 = 1 << 1;
}

/// What identifies a real server within its service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpvsDestinationKey {
    /// Real server address (its family may differ from the service's).
    pub address: IpAddr,
    /// Real server port.
    pub port: u16,
}

impl fmt::Display for IpvsDestinationKey {
    /// `10.244.0.11:9376` or `[2001:db8::11]:9376`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V6(v6) => write!(f, "[{v6}]:{}", self.port),
            IpAddr::V4(v4) => write!(f, "{v4}:{}", self.port),
        }
    }
}

impl IpvsDestinationKey {
    /// The attributes `DEL_DEST` needs: `ADDR_FAMILY`, `ADDR`, `PORT`.
    pub fn to_attributes(&self) -> Vec<IpvsDestAttribute> {
        vec![
            IpvsDestAttribute::AddressFamily(IpvsAddressFamily::of(&self.address).into()),
            IpvsDestAttribute::Address(encode_address(&self.address)),
            IpvsDestAttribute::Port(self.port),
        ]
    }
}

/// A real server: what `ipvsadm -a` creates and `ipvsadm -Ln` lists under
/// its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsDestination {
    /// Address and port.
    pub key: IpvsDestinationKey,
    /// Forwarding method.
    pub forwarding: IpvsForwardingMethod,
    /// Weight; 0 quiesces the real server. The kernel holds an `int`, so
    /// values above `i32::MAX` are refused with `ERANGE`.
    pub weight: u32,
    /// Upper connection threshold (0 = no limit).
    pub upper_threshold: u32,
    /// Lower connection threshold.
    pub lower_threshold: u32,
    /// Tunnel encapsulation (tunnel forwarding only).
    pub tunnel_type: IpvsTunnelType,
    /// GUE destination port (tunnel forwarding with GUE only).
    pub tunnel_port: u16,
    /// Tunnel checksum flags.
    pub tunnel_flags: IpvsTunnelFlags,
    /// Active connections, when read from the kernel.
    pub active_connections: u32,
    /// Inactive connections, when read from the kernel.
    pub inactive_connections: u32,
    /// Persistence templates, when read from the kernel.
    pub persistent_connections: u32,
    /// Counters, when read from the kernel (`STATS64`, else `STATS`).
    /// Boxed: most tables of many real servers hold none, and inline
    /// they would cost 80 bytes in each.
    pub stats: Option<Box<IpvsStats>>,
}

impl IpvsDestination {
    /// A real server with `forwarding` and `weight`, no thresholds.
    pub fn new(address: IpAddr, port: u16, forwarding: IpvsForwardingMethod, weight: u32) -> Self {
        Self {
            key: IpvsDestinationKey { address, port },
            forwarding,
            weight,
            upper_threshold: 0,
            lower_threshold: 0,
            tunnel_type: IpvsTunnelType::default(),
            tunnel_port: 0,
            tunnel_flags: IpvsTunnelFlags::default(),
            active_connections: 0,
            inactive_connections: 0,
            persistent_connections: 0,
            stats: None,
        }
    }

    /// The full nest `NEW_DEST` and `SET_DEST` need, in ipvsadm's order.
    /// Counters and connection counts are never sent.
    pub fn to_attributes(&self) -> Vec<IpvsDestAttribute> {
        let mut attributes = self.key.to_attributes();
        attributes.extend([
            IpvsDestAttribute::ForwardingMethod(self.forwarding.into()),
            IpvsDestAttribute::Weight(self.weight),
            IpvsDestAttribute::TunnelType(self.tunnel_type.into()),
            IpvsDestAttribute::TunnelPort(self.tunnel_port),
            IpvsDestAttribute::TunnelFlags(self.tunnel_flags.0),
            IpvsDestAttribute::UpperThreshold(self.upper_threshold),
            IpvsDestAttribute::LowerThreshold(self.lower_threshold),
        ]);
        attributes
    }

    /// Reads a destination nest as the kernel sends it in a `NEW_DEST`
    /// reply. The address is decoded with `ADDR_FAMILY`, else with
    /// `service_family` (kernels before mixed-family support omit it).
    pub fn from_attributes(
        attributes: &[IpvsDestAttribute],
        service_family: IpvsAddressFamily,
    ) -> Result<Self, DecodeError> {
        let mut builder = DestinationBuilder::new(service_family);
        for attribute in attributes {
            match attribute {
                IpvsDestAttribute::Address(v) => builder.raw_address = Some(Cow::Borrowed(v)),
                other => builder.apply(other),
            }
        }
        builder.finish()
    }

    /// Decodes a real server straight from the value of an
    /// `IPVS_CMD_ATTR_DEST` nest, with no attribute list in between (the
    /// table reader's path: hundreds of thousands of real servers). Each
    /// attribute is parsed by [`IpvsDestAttribute::parse`] as in
    /// [`IpvsDestination::from_attributes`], except the counter nests,
    /// which are summed into [`IpvsStats`] as they are read (and the
    /// 32-bit one only when there is no 64-bit one), or skipped with
    /// [`IpvsCounters::Skip`]. With [`IpvsCounters::Keep`] it gives what
    /// `from_attributes` gives on the parsed nest (tested).
    pub fn decode_nest(
        nest: &[u8],
        service_family: IpvsAddressFamily,
        counters: IpvsCounters,
    ) -> Result<Self, DecodeError> {
        let mut builder = DestinationBuilder::new(service_family);
        let mut legacy_stats = None;
        for nla in NlasIterator::new(nest) {
            let nla = nla?;
            match kind_of(&nla) {
                IPVS_DEST_ATTR_ADDR => {
                    // As IpvsDestAttribute::parse checks it.
                    if nla.value().len() > 16 {
                        return Err(IpvsDestAttribute::parse(&nla)
                            .err()
                            .unwrap_or_else(|| DecodeError::from("invalid IPVS_DEST_ATTR_ADDR")));
                    }
                    builder.raw_address = Some(Cow::Borrowed(value_of(nla)));
                }
                IPVS_DEST_ATTR_STATS64 | IPVS_DEST_ATTR_STATS if counters == IpvsCounters::Skip => {
                }
                IPVS_DEST_ATTR_STATS64 => {
                    builder.stats64 =
                        Some(IpvsStats::decode_nest(nla.value(), IpvsStatsWidth::Wide)?)
                }
                IPVS_DEST_ATTR_STATS => legacy_stats = Some(value_of(nla)),
                _ => builder.apply(&IpvsDestAttribute::parse(&nla)?),
            }
        }
        if builder.stats64.is_none() {
            if let Some(value) = legacy_stats {
                builder.stats32 = Some(IpvsStats::decode_nest(value, IpvsStatsWidth::Legacy)?);
            }
        }
        builder.finish()
    }
}

/// The value of an attribute, for as long as the buffer it is in.
fn value_of(nla: NlaBuffer<&[u8]>) -> &[u8] {
    let length = nla.value_length();
    &nla.into_inner()[4..4 + length]
}

/// A real server being decoded, one attribute at a time.
struct DestinationBuilder<'a> {
    family: IpvsAddressFamily,
    raw_address: Option<Cow<'a, [u8]>>,
    port: Option<u16>,
    stats64: Option<IpvsStats>,
    stats32: Option<IpvsStats>,
    destination: IpvsDestination,
}

impl<'a> DestinationBuilder<'a> {
    fn new(service_family: IpvsAddressFamily) -> Self {
        Self {
            family: service_family,
            raw_address: None,
            port: None,
            stats64: None,
            stats32: None,
            destination: IpvsDestination::new(
                IpAddr::from([0, 0, 0, 0]),
                0,
                IpvsForwardingMethod::Masquerade,
                0,
            ),
        }
    }

    /// Takes in one attribute (the address is set by the caller, which
    /// knows how long it lives).
    fn apply(&mut self, attribute: &IpvsDestAttribute) {
        let destination = &mut self.destination;
        match attribute {
            IpvsDestAttribute::AddressFamily(v) => self.family = IpvsAddressFamily::from(*v),
            IpvsDestAttribute::Port(v) => self.port = Some(*v),
            IpvsDestAttribute::ForwardingMethod(v) => {
                destination.forwarding = IpvsForwardingMethod::from(*v)
            }
            IpvsDestAttribute::Weight(v) => destination.weight = *v,
            IpvsDestAttribute::UpperThreshold(v) => destination.upper_threshold = *v,
            IpvsDestAttribute::LowerThreshold(v) => destination.lower_threshold = *v,
            IpvsDestAttribute::ActiveConnections(v) => destination.active_connections = *v,
            IpvsDestAttribute::InactiveConnections(v) => destination.inactive_connections = *v,
            IpvsDestAttribute::PersistentConnections(v) => destination.persistent_connections = *v,
            IpvsDestAttribute::TunnelType(v) => destination.tunnel_type = IpvsTunnelType::from(*v),
            IpvsDestAttribute::TunnelPort(v) => destination.tunnel_port = *v,
            IpvsDestAttribute::TunnelFlags(v) => destination.tunnel_flags = IpvsTunnelFlags(*v),
            IpvsDestAttribute::Stats64(v) => self.stats64 = Some(IpvsStats::from_attributes(v)),
            IpvsDestAttribute::Stats(v) => self.stats32 = Some(IpvsStats::from_attributes(v)),
            _ => {}
        }
    }

    fn finish(mut self) -> Result<IpvsDestination, DecodeError> {
        let raw_address = self
            .raw_address
            .ok_or_else(|| DecodeError::from("missing IPVS_DEST_ATTR_ADDR"))?;
        self.destination.key = IpvsDestinationKey {
            address: decode_address(&raw_address, self.family, "IPVS_DEST_ATTR_ADDR")?,
            port: self
                .port
                .ok_or_else(|| DecodeError::from("missing IPVS_DEST_ATTR_PORT"))?,
        };
        self.destination.stats = self.stats64.or(self.stats32).map(Box::new);
        Ok(self.destination)
    }
}
