// SPDX-License-Identifier: MIT

//! Traffic counters and rates of a service or a real server.

mod attribute;

pub(crate) use attribute::{parse_stats, stats_nlas};
pub use attribute::{IpvsStatsAttribute, IpvsStatsWidth};

/// Whether a read keeps the kernel's counters. Skipping them saves the
/// decoding and an allocation per object where nobody reads them (a sync
/// engine's view of a 220,000-object table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvsCounters {
    /// Decode `STATS64` (else `STATS`) into `stats`.
    Keep,
    /// Leave `stats` empty; real servers' counter nests are not even
    /// decoded (the few services' are decoded, then dropped).
    Skip,
}

/// The counters and rates the kernel keeps for a service or a real server
/// (`struct ip_vs_kstats`), as read from a `STATS64` nest (or a `STATS`
/// nest on kernels without `STATS64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IpvsStats {
    /// Connections scheduled.
    pub connections: u64,
    /// Incoming packets.
    pub in_packets: u64,
    /// Outgoing packets.
    pub out_packets: u64,
    /// Incoming bytes.
    pub in_bytes: u64,
    /// Outgoing bytes.
    pub out_bytes: u64,
    /// Connections per second (estimated by the kernel).
    pub connection_rate: u64,
    /// Incoming packets per second.
    pub in_packet_rate: u64,
    /// Outgoing packets per second.
    pub out_packet_rate: u64,
    /// Incoming bytes per second.
    pub in_byte_rate: u64,
    /// Outgoing bytes per second.
    pub out_byte_rate: u64,
}

impl IpvsStats {
    /// Collects the counters of a stats nest; unknown attributes are ignored.
    pub fn from_attributes(attributes: &[IpvsStatsAttribute]) -> Self {
        let mut stats = Self::default();
        for attribute in attributes {
            stats.apply(attribute);
        }
        stats
    }

    /// Decodes a counter nest of `width` straight into the counters, with
    /// no attribute list in between; each attribute is parsed by
    /// [`IpvsStatsAttribute::parse`].
    pub fn decode_nest(
        nest: &[u8],
        width: IpvsStatsWidth,
    ) -> Result<Self, netlink_packet_core::DecodeError> {
        let mut stats = Self::default();
        for nla in netlink_packet_core::NlasIterator::new(nest) {
            stats.apply(&IpvsStatsAttribute::parse(&nla?, width)?);
        }
        Ok(stats)
    }

    fn apply(&mut self, attribute: &IpvsStatsAttribute) {
        match *attribute {
            IpvsStatsAttribute::Connections(v) => self.connections = v,
            IpvsStatsAttribute::InPackets(v) => self.in_packets = v,
            IpvsStatsAttribute::OutPackets(v) => self.out_packets = v,
            IpvsStatsAttribute::InBytes(v) => self.in_bytes = v,
            IpvsStatsAttribute::OutBytes(v) => self.out_bytes = v,
            IpvsStatsAttribute::ConnectionRate(v) => self.connection_rate = v,
            IpvsStatsAttribute::InPacketRate(v) => self.in_packet_rate = v,
            IpvsStatsAttribute::OutPacketRate(v) => self.out_packet_rate = v,
            IpvsStatsAttribute::InByteRate(v) => self.in_byte_rate = v,
            IpvsStatsAttribute::OutByteRate(v) => self.out_byte_rate = v,
            _ => {}
        }
    }

    /// The nest the kernel writes for these counters, in its order.
    pub fn to_attributes(&self) -> Vec<IpvsStatsAttribute> {
        vec![
            IpvsStatsAttribute::Connections(self.connections),
            IpvsStatsAttribute::InPackets(self.in_packets),
            IpvsStatsAttribute::OutPackets(self.out_packets),
            IpvsStatsAttribute::InBytes(self.in_bytes),
            IpvsStatsAttribute::OutBytes(self.out_bytes),
            IpvsStatsAttribute::ConnectionRate(self.connection_rate),
            IpvsStatsAttribute::InPacketRate(self.in_packet_rate),
            IpvsStatsAttribute::OutPacketRate(self.out_packet_rate),
            IpvsStatsAttribute::InByteRate(self.in_byte_rate),
            IpvsStatsAttribute::OutByteRate(self.out_byte_rate),
        ]
    }
}
