// SPDX-License-Identifier: MIT

//! `IPVS_CMD_ATTR_SERVICE` nest attributes (`enum ipvs_svc_attrs`).

use netlink_packet_core::{
    parse_string, parse_u16, parse_u16_be, parse_u32, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer,
};

use crate::nla::{emit_list, kind_of, list_len, other, put, put_string};
use crate::stats::{parse_stats, stats_nlas, IpvsStatsAttribute, IpvsStatsWidth};

const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_FWMARK: u16 = 5;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_SVC_ATTR_STATS: u16 = 10;
const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
const IPVS_SVC_ATTR_STATS64: u16 = 12;

/// `struct ip_vs_flags`: the new flags and the mask of bits to change.
///
/// The kernel computes `(current & !mask) | (flags & mask)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpvsFlagsWithMask {
    /// Flag bits (`IP_VS_SVC_F_*`).
    pub flags: u32,
    /// The bits of `flags` that apply.
    pub mask: u32,
}

/// One attribute of a service nest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsServiceAttribute {
    /// `IPVS_SVC_ATTR_AF`: address family (`AF_INET` 2, `AF_INET6` 10).
    AddressFamily(u16),
    /// `IPVS_SVC_ATTR_PROTOCOL`: IP protocol number.
    Protocol(u16),
    /// `IPVS_SVC_ATTR_ADDR`: the virtual address, raw (`union nf_inet_addr`,
    /// 16 bytes, an IPv4 address in the first 4). Decode it with the
    /// service's address family.
    Address(Vec<u8>),
    /// `IPVS_SVC_ATTR_PORT`: the virtual port.
    Port(u16),
    /// `IPVS_SVC_ATTR_FWMARK`: the firewall mark of a fwmark service.
    Fwmark(u32),
    /// `IPVS_SVC_ATTR_SCHED_NAME`: the scheduler (`rr`, `wlc`, ...).
    SchedulerName(String),
    /// `IPVS_SVC_ATTR_FLAGS`: flags with the mask of bits to change.
    Flags(IpvsFlagsWithMask),
    /// `IPVS_SVC_ATTR_TIMEOUT`: persistence timeout in seconds.
    Timeout(u32),
    /// `IPVS_SVC_ATTR_NETMASK`: persistence granularity, as the kernel holds
    /// it: for IPv4 the mask in network byte order, for IPv6 the prefix
    /// length (read here as a host-order u32 either way).
    Netmask(u32),
    /// `IPVS_SVC_ATTR_STATS`: 32-bit counters (read-only).
    Stats(Vec<IpvsStatsAttribute>),
    /// `IPVS_SVC_ATTR_PE_NAME`: persistence engine (`sip`).
    PersistenceEngine(String),
    /// `IPVS_SVC_ATTR_STATS64`: 64-bit counters (read-only).
    Stats64(Vec<IpvsStatsAttribute>),
    /// An attribute this crate does not know, kept as it was.
    Other(DefaultNla),
}

impl Nla for IpvsServiceAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::AddressFamily(_) | Self::Protocol(_) | Self::Port(_) => 2,
            Self::Fwmark(_) | Self::Timeout(_) | Self::Netmask(_) => 4,
            Self::Address(address) => address.len(),
            Self::SchedulerName(name) | Self::PersistenceEngine(name) => name.len() + 1,
            Self::Flags(_) => 8,
            Self::Stats(stats) => list_len(&stats_nlas(stats, IpvsStatsWidth::Legacy)),
            Self::Stats64(stats) => list_len(&stats_nlas(stats, IpvsStatsWidth::Wide)),
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::AddressFamily(_) => IPVS_SVC_ATTR_AF,
            Self::Protocol(_) => IPVS_SVC_ATTR_PROTOCOL,
            Self::Address(_) => IPVS_SVC_ATTR_ADDR,
            Self::Port(_) => IPVS_SVC_ATTR_PORT,
            Self::Fwmark(_) => IPVS_SVC_ATTR_FWMARK,
            Self::SchedulerName(_) => IPVS_SVC_ATTR_SCHED_NAME,
            Self::Flags(_) => IPVS_SVC_ATTR_FLAGS,
            Self::Timeout(_) => IPVS_SVC_ATTR_TIMEOUT,
            Self::Netmask(_) => IPVS_SVC_ATTR_NETMASK,
            Self::Stats(_) => IPVS_SVC_ATTR_STATS,
            Self::PersistenceEngine(_) => IPVS_SVC_ATTR_PE_NAME,
            Self::Stats64(_) => IPVS_SVC_ATTR_STATS64,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::AddressFamily(v) | Self::Protocol(v) => put(buffer, &v.to_ne_bytes()),
            Self::Port(v) => put(buffer, &v.to_be_bytes()),
            Self::Fwmark(v) | Self::Timeout(v) | Self::Netmask(v) => put(buffer, &v.to_ne_bytes()),
            Self::Address(address) => put(buffer, address),
            Self::SchedulerName(name) | Self::PersistenceEngine(name) => put_string(buffer, name),
            Self::Flags(IpvsFlagsWithMask { flags, mask }) => {
                put(buffer, &flags.to_ne_bytes());
                put(&mut buffer[4..], &mask.to_ne_bytes());
            }
            Self::Stats(stats) => emit_list(&stats_nlas(stats, IpvsStatsWidth::Legacy), buffer),
            Self::Stats64(stats) => emit_list(&stats_nlas(stats, IpvsStatsWidth::Wide), buffer),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpvsServiceAttribute {
    /// Parses one attribute of a service nest.
    pub fn parse(buffer: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let value = buffer.value();
        Ok(match kind_of(buffer) {
            IPVS_SVC_ATTR_AF => {
                Self::AddressFamily(parse_u16(value).context("invalid IPVS_SVC_ATTR_AF")?)
            }
            IPVS_SVC_ATTR_PROTOCOL => {
                Self::Protocol(parse_u16(value).context("invalid IPVS_SVC_ATTR_PROTOCOL")?)
            }
            IPVS_SVC_ATTR_ADDR => {
                if value.len() > 16 {
                    return Err(DecodeError::from(format!(
                        "invalid IPVS_SVC_ATTR_ADDR: {} bytes, at most 16",
                        value.len()
                    )));
                }
                Self::Address(value.to_vec())
            }
            IPVS_SVC_ATTR_PORT => {
                Self::Port(parse_u16_be(value).context("invalid IPVS_SVC_ATTR_PORT")?)
            }
            IPVS_SVC_ATTR_FWMARK => {
                Self::Fwmark(parse_u32(value).context("invalid IPVS_SVC_ATTR_FWMARK")?)
            }
            IPVS_SVC_ATTR_SCHED_NAME => Self::SchedulerName(
                parse_string(value).context("invalid IPVS_SVC_ATTR_SCHED_NAME")?,
            ),
            IPVS_SVC_ATTR_FLAGS => {
                if value.len() != 8 {
                    return Err(DecodeError::from(format!(
                        "invalid IPVS_SVC_ATTR_FLAGS: {} bytes, expected 8",
                        value.len()
                    )));
                }
                Self::Flags(IpvsFlagsWithMask {
                    flags: parse_u32(&value[..4]).context("invalid IPVS_SVC_ATTR_FLAGS")?,
                    mask: parse_u32(&value[4..]).context("invalid IPVS_SVC_ATTR_FLAGS")?,
                })
            }
            IPVS_SVC_ATTR_TIMEOUT => {
                Self::Timeout(parse_u32(value).context("invalid IPVS_SVC_ATTR_TIMEOUT")?)
            }
            IPVS_SVC_ATTR_NETMASK => {
                Self::Netmask(parse_u32(value).context("invalid IPVS_SVC_ATTR_NETMASK")?)
            }
            IPVS_SVC_ATTR_STATS => Self::Stats(
                parse_stats(value, IpvsStatsWidth::Legacy)
                    .context("invalid IPVS_SVC_ATTR_STATS")?,
            ),
            IPVS_SVC_ATTR_PE_NAME => Self::PersistenceEngine(
                parse_string(value).context("invalid IPVS_SVC_ATTR_PE_NAME")?,
            ),
            IPVS_SVC_ATTR_STATS64 => Self::Stats64(
                parse_stats(value, IpvsStatsWidth::Wide)
                    .context("invalid IPVS_SVC_ATTR_STATS64")?,
            ),
            _ => Self::Other(other(buffer).context("invalid IPVS service attribute")?),
        })
    }
}
