// SPDX-License-Identifier: MIT

//! `IPVS_CMD_ATTR_DEST` nest attributes (`enum ipvs_dest_attrs`).

use netlink_packet_core::{
    parse_u16, parse_u16_be, parse_u32, parse_u8, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer,
};

use crate::nla::{emit_list, kind_of, list_len, other, put};
use crate::stats::{parse_stats, stats_nlas, IpvsStatsAttribute, IpvsStatsWidth};

pub(crate) const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
pub(crate) const IPVS_DEST_ATTR_STATS: u16 = 10;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
pub(crate) const IPVS_DEST_ATTR_STATS64: u16 = 12;
const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

/// One attribute of a destination (real server) nest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsDestAttribute {
    /// `IPVS_DEST_ATTR_ADDR`: the real server's address, raw (16 bytes, an
    /// IPv4 address in the first 4). Decode it with `AddressFamily`, or the
    /// service's family when that is absent.
    Address(Vec<u8>),
    /// `IPVS_DEST_ATTR_PORT`: the real server's port.
    Port(u16),
    /// `IPVS_DEST_ATTR_FWD_METHOD`: forwarding method (`IP_VS_CONN_F_*`).
    ForwardingMethod(u32),
    /// `IPVS_DEST_ATTR_WEIGHT`: weight (an `int` in the kernel).
    Weight(u32),
    /// `IPVS_DEST_ATTR_U_THRESH`: upper connection threshold (0 = none).
    UpperThreshold(u32),
    /// `IPVS_DEST_ATTR_L_THRESH`: lower connection threshold.
    LowerThreshold(u32),
    /// `IPVS_DEST_ATTR_ACTIVE_CONNS`: active connections (read-only).
    ActiveConnections(u32),
    /// `IPVS_DEST_ATTR_INACT_CONNS`: inactive connections (read-only).
    InactiveConnections(u32),
    /// `IPVS_DEST_ATTR_PERSIST_CONNS`: persistence templates (read-only).
    PersistentConnections(u32),
    /// `IPVS_DEST_ATTR_STATS`: 32-bit counters (read-only).
    Stats(Vec<IpvsStatsAttribute>),
    /// `IPVS_DEST_ATTR_ADDR_FAMILY`: the real server's address family, which
    /// may differ from the service's (tunnel forwarding only).
    AddressFamily(u16),
    /// `IPVS_DEST_ATTR_STATS64`: 64-bit counters (read-only).
    Stats64(Vec<IpvsStatsAttribute>),
    /// `IPVS_DEST_ATTR_TUN_TYPE`: tunnel type (IPIP 0, GUE 1, GRE 2).
    TunnelType(u8),
    /// `IPVS_DEST_ATTR_TUN_PORT`: GUE tunnel destination port.
    TunnelPort(u16),
    /// `IPVS_DEST_ATTR_TUN_FLAGS`: tunnel checksum flags.
    TunnelFlags(u16),
    /// An attribute this crate does not know, kept as it was.
    Other(DefaultNla),
}

impl Nla for IpvsDestAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::Address(address) => address.len(),
            Self::Port(_) | Self::AddressFamily(_) | Self::TunnelPort(_) | Self::TunnelFlags(_) => {
                2
            }
            Self::ForwardingMethod(_)
            | Self::Weight(_)
            | Self::UpperThreshold(_)
            | Self::LowerThreshold(_)
            | Self::ActiveConnections(_)
            | Self::InactiveConnections(_)
            | Self::PersistentConnections(_) => 4,
            Self::TunnelType(_) => 1,
            Self::Stats(stats) => list_len(&stats_nlas(stats, IpvsStatsWidth::Legacy)),
            Self::Stats64(stats) => list_len(&stats_nlas(stats, IpvsStatsWidth::Wide)),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Address(_) => IPVS_DEST_ATTR_ADDR,
            Self::Port(_) => IPVS_DEST_ATTR_PORT,
            Self::ForwardingMethod(_) => IPVS_DEST_ATTR_FWD_METHOD,
            Self::Weight(_) => IPVS_DEST_ATTR_WEIGHT,
            Self::UpperThreshold(_) => IPVS_DEST_ATTR_U_THRESH,
            Self::LowerThreshold(_) => IPVS_DEST_ATTR_L_THRESH,
            Self::ActiveConnections(_) => IPVS_DEST_ATTR_ACTIVE_CONNS,
            Self::InactiveConnections(_) => IPVS_DEST_ATTR_INACT_CONNS,
            Self::PersistentConnections(_) => IPVS_DEST_ATTR_PERSIST_CONNS,
            Self::Stats(_) => IPVS_DEST_ATTR_STATS,
            Self::AddressFamily(_) => IPVS_DEST_ATTR_ADDR_FAMILY,
            Self::Stats64(_) => IPVS_DEST_ATTR_STATS64,
            Self::TunnelType(_) => IPVS_DEST_ATTR_TUN_TYPE,
            Self::TunnelPort(_) => IPVS_DEST_ATTR_TUN_PORT,
            Self::TunnelFlags(_) => IPVS_DEST_ATTR_TUN_FLAGS,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Address(address) => put(buffer, address),
            Self::Port(v) | Self::TunnelPort(v) => put(buffer, &v.to_be_bytes()),
            Self::AddressFamily(v) | Self::TunnelFlags(v) => put(buffer, &v.to_ne_bytes()),
            Self::ForwardingMethod(v)
            | Self::Weight(v)
            | Self::UpperThreshold(v)
            | Self::LowerThreshold(v)
            | Self::ActiveConnections(v)
            | Self::InactiveConnections(v)
            | Self::PersistentConnections(v) => put(buffer, &v.to_ne_bytes()),
            Self::TunnelType(v) => buffer[0] = *v,
            Self::Stats(stats) => emit_list(&stats_nlas(stats, IpvsStatsWidth::Legacy), buffer),
            Self::Stats64(stats) => emit_list(&stats_nlas(stats, IpvsStatsWidth::Wide), buffer),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpvsDestAttribute {
    /// Parses one attribute of a destination nest.
    pub fn parse(buffer: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let value = buffer.value();
        let u32_of = |name: &str| parse_u32(value).with_context(|| format!("invalid {name}"));
        Ok(match kind_of(buffer) {
            IPVS_DEST_ATTR_ADDR => {
                if value.len() > 16 {
                    return Err(DecodeError::from(format!(
                        "invalid IPVS_DEST_ATTR_ADDR: {} bytes, at most 16",
                        value.len()
                    )));
                }
                Self::Address(value.to_vec())
            }
            IPVS_DEST_ATTR_PORT => {
                Self::Port(parse_u16_be(value).context("invalid IPVS_DEST_ATTR_PORT")?)
            }
            IPVS_DEST_ATTR_FWD_METHOD => {
                Self::ForwardingMethod(u32_of("IPVS_DEST_ATTR_FWD_METHOD")?)
            }
            IPVS_DEST_ATTR_WEIGHT => Self::Weight(u32_of("IPVS_DEST_ATTR_WEIGHT")?),
            IPVS_DEST_ATTR_U_THRESH => Self::UpperThreshold(u32_of("IPVS_DEST_ATTR_U_THRESH")?),
            IPVS_DEST_ATTR_L_THRESH => Self::LowerThreshold(u32_of("IPVS_DEST_ATTR_L_THRESH")?),
            IPVS_DEST_ATTR_ACTIVE_CONNS => {
                Self::ActiveConnections(u32_of("IPVS_DEST_ATTR_ACTIVE_CONNS")?)
            }
            IPVS_DEST_ATTR_INACT_CONNS => {
                Self::InactiveConnections(u32_of("IPVS_DEST_ATTR_INACT_CONNS")?)
            }
            IPVS_DEST_ATTR_PERSIST_CONNS => {
                Self::PersistentConnections(u32_of("IPVS_DEST_ATTR_PERSIST_CONNS")?)
            }
            IPVS_DEST_ATTR_STATS => Self::Stats(
                parse_stats(value, IpvsStatsWidth::Legacy)
                    .context("invalid IPVS_DEST_ATTR_STATS")?,
            ),
            IPVS_DEST_ATTR_ADDR_FAMILY => {
                Self::AddressFamily(parse_u16(value).context("invalid IPVS_DEST_ATTR_ADDR_FAMILY")?)
            }
            IPVS_DEST_ATTR_STATS64 => Self::Stats64(
                parse_stats(value, IpvsStatsWidth::Wide)
                    .context("invalid IPVS_DEST_ATTR_STATS64")?,
            ),
            IPVS_DEST_ATTR_TUN_TYPE => {
                Self::TunnelType(parse_u8(value).context("invalid IPVS_DEST_ATTR_TUN_TYPE")?)
            }
            IPVS_DEST_ATTR_TUN_PORT => {
                Self::TunnelPort(parse_u16_be(value).context("invalid IPVS_DEST_ATTR_TUN_PORT")?)
            }
            IPVS_DEST_ATTR_TUN_FLAGS => {
                Self::TunnelFlags(parse_u16(value).context("invalid IPVS_DEST_ATTR_TUN_FLAGS")?)
            }
            _ => Self::Other(other(buffer).context("invalid IPVS destination attribute")?),
        })
    }
}
