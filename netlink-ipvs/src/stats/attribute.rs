// SPDX-License-Identifier: MIT

//! `IPVS_SVC_ATTR_STATS` / `IPVS_DEST_ATTR_STATS` (32-bit counters but for
//! the byte counters) and `..._STATS64` (every counter 64-bit) nests.

use netlink_packet_core::{
    parse_u32, parse_u64, DecodeError, DefaultNla, ErrorContext, Nla, NlaBuffer,
};

use crate::nla::{kind_of, other, put};

const IPVS_STATS_ATTR_CONNS: u16 = 1;
const IPVS_STATS_ATTR_INPKTS: u16 = 2;
const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
const IPVS_STATS_ATTR_INBYTES: u16 = 4;
const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
const IPVS_STATS_ATTR_CPS: u16 = 6;
const IPVS_STATS_ATTR_INPPS: u16 = 7;
const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
const IPVS_STATS_ATTR_INBPS: u16 = 9;
const IPVS_STATS_ATTR_OUTBPS: u16 = 10;
const IPVS_STATS_ATTR_PAD: u16 = 11;

/// Whether a stats nest is `STATS` (mixed widths) or `STATS64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvsStatsWidth {
    /// `IPVS_*_ATTR_STATS`: byte counters are u64, everything else u32.
    Legacy,
    /// `IPVS_*_ATTR_STATS64`: every counter is u64.
    Wide,
}

/// One counter of a stats nest. Values are widened to u64 whatever their
/// size on the wire; the nest they live in decides the width written back.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsStatsAttribute {
    /// `IPVS_STATS_ATTR_CONNS`: connections scheduled.
    Connections(u64),
    /// `IPVS_STATS_ATTR_INPKTS`: incoming packets.
    InPackets(u64),
    /// `IPVS_STATS_ATTR_OUTPKTS`: outgoing packets.
    OutPackets(u64),
    /// `IPVS_STATS_ATTR_INBYTES`: incoming bytes.
    InBytes(u64),
    /// `IPVS_STATS_ATTR_OUTBYTES`: outgoing bytes.
    OutBytes(u64),
    /// `IPVS_STATS_ATTR_CPS`: connections per second.
    ConnectionRate(u64),
    /// `IPVS_STATS_ATTR_INPPS`: incoming packets per second.
    InPacketRate(u64),
    /// `IPVS_STATS_ATTR_OUTPPS`: outgoing packets per second.
    OutPacketRate(u64),
    /// `IPVS_STATS_ATTR_INBPS`: incoming bytes per second.
    InByteRate(u64),
    /// `IPVS_STATS_ATTR_OUTBPS`: outgoing bytes per second.
    OutByteRate(u64),
    /// `IPVS_STATS_ATTR_PAD`: alignment padding (no value).
    Pad,
    /// An attribute this crate does not know, kept as it was.
    Other(DefaultNla),
}

impl IpvsStatsAttribute {
    /// Parses one counter of a nest of the given width.
    pub fn parse(buffer: &NlaBuffer<&[u8]>, width: IpvsStatsWidth) -> Result<Self, DecodeError> {
        let value = buffer.value();
        let kind = kind_of(buffer);
        let wide = |name: &str| parse_u64(value).with_context(|| format!("invalid {name}"));
        let counter = |name: &str| match width {
            IpvsStatsWidth::Legacy => parse_u32(value)
                .map(u64::from)
                .with_context(|| format!("invalid {name}")),
            IpvsStatsWidth::Wide => wide(name),
        };
        Ok(match kind {
            IPVS_STATS_ATTR_CONNS => Self::Connections(counter("IPVS_STATS_ATTR_CONNS")?),
            IPVS_STATS_ATTR_INPKTS => Self::InPackets(counter("IPVS_STATS_ATTR_INPKTS")?),
            IPVS_STATS_ATTR_OUTPKTS => Self::OutPackets(counter("IPVS_STATS_ATTR_OUTPKTS")?),
            IPVS_STATS_ATTR_INBYTES => Self::InBytes(wide("IPVS_STATS_ATTR_INBYTES")?),
            IPVS_STATS_ATTR_OUTBYTES => Self::OutBytes(wide("IPVS_STATS_ATTR_OUTBYTES")?),
            IPVS_STATS_ATTR_CPS => Self::ConnectionRate(counter("IPVS_STATS_ATTR_CPS")?),
            IPVS_STATS_ATTR_INPPS => Self::InPacketRate(counter("IPVS_STATS_ATTR_INPPS")?),
            IPVS_STATS_ATTR_OUTPPS => Self::OutPacketRate(counter("IPVS_STATS_ATTR_OUTPPS")?),
            IPVS_STATS_ATTR_INBPS => Self::InByteRate(counter("IPVS_STATS_ATTR_INBPS")?),
            IPVS_STATS_ATTR_OUTBPS => Self::OutByteRate(counter("IPVS_STATS_ATTR_OUTBPS")?),
            IPVS_STATS_ATTR_PAD if value.is_empty() => Self::Pad,
            _ => Self::Other(other(buffer).context("invalid IPVS stats attribute")?),
        })
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Connections(_) => IPVS_STATS_ATTR_CONNS,
            Self::InPackets(_) => IPVS_STATS_ATTR_INPKTS,
            Self::OutPackets(_) => IPVS_STATS_ATTR_OUTPKTS,
            Self::InBytes(_) => IPVS_STATS_ATTR_INBYTES,
            Self::OutBytes(_) => IPVS_STATS_ATTR_OUTBYTES,
            Self::ConnectionRate(_) => IPVS_STATS_ATTR_CPS,
            Self::InPacketRate(_) => IPVS_STATS_ATTR_INPPS,
            Self::OutPacketRate(_) => IPVS_STATS_ATTR_OUTPPS,
            Self::InByteRate(_) => IPVS_STATS_ATTR_INBPS,
            Self::OutByteRate(_) => IPVS_STATS_ATTR_OUTBPS,
            Self::Pad => IPVS_STATS_ATTR_PAD,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn value(&self) -> Option<u64> {
        match self {
            Self::Connections(v)
            | Self::InPackets(v)
            | Self::OutPackets(v)
            | Self::InBytes(v)
            | Self::OutBytes(v)
            | Self::ConnectionRate(v)
            | Self::InPacketRate(v)
            | Self::OutPacketRate(v)
            | Self::InByteRate(v)
            | Self::OutByteRate(v) => Some(*v),
            Self::Pad | Self::Other(_) => None,
        }
    }

    fn is_byte_counter(&self) -> bool {
        matches!(self, Self::InBytes(_) | Self::OutBytes(_))
    }
}

/// An [`IpvsStatsAttribute`] paired with the width of the nest it is
/// written into.
#[derive(Debug)]
pub(crate) struct IpvsStatsNla<'a> {
    pub(crate) attribute: &'a IpvsStatsAttribute,
    pub(crate) width: IpvsStatsWidth,
}

impl IpvsStatsNla<'_> {
    fn is_wide(&self) -> bool {
        self.width == IpvsStatsWidth::Wide || self.attribute.is_byte_counter()
    }
}

impl Nla for IpvsStatsNla<'_> {
    fn value_len(&self) -> usize {
        match (self.attribute, self.attribute.value()) {
            (IpvsStatsAttribute::Other(nla), _) => nla.value_len(),
            (_, None) => 0,
            (_, Some(_)) if self.is_wide() => 8,
            (_, Some(_)) => 4,
        }
    }

    fn kind(&self) -> u16 {
        self.attribute.kind()
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match (self.attribute, self.attribute.value()) {
            (IpvsStatsAttribute::Other(nla), _) => nla.emit_value(buffer),
            (_, None) => {}
            (_, Some(v)) if self.is_wide() => put(buffer, &v.to_ne_bytes()),
            // Legacy counters are u32 in the kernel; a wider value cannot
            // come from a parsed nest, so truncation only affects values a
            // caller built by hand.
            (_, Some(v)) => put(buffer, &(v as u32).to_ne_bytes()),
        }
    }
}

/// Parses a whole stats nest.
pub(crate) fn parse_stats(
    payload: &[u8],
    width: IpvsStatsWidth,
) -> Result<Vec<IpvsStatsAttribute>, DecodeError> {
    crate::nla::parse_nested(payload, |nla| IpvsStatsAttribute::parse(nla, width))
}

/// Pairs each attribute of a stats nest with the nest's width.
pub(crate) fn stats_nlas(
    attributes: &[IpvsStatsAttribute],
    width: IpvsStatsWidth,
) -> Vec<IpvsStatsNla<'_>> {
    attributes
        .iter()
        .map(|attribute| IpvsStatsNla { attribute, width })
        .collect()
}
