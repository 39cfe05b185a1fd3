// SPDX-License-Identifier: MIT

//! `IPVS_CMD_ATTR_DAEMON` nest attributes (`enum ipvs_daemon_attrs`): the
//! connection synchronisation daemon.

use netlink_packet_core::{
    parse_string, parse_u16, parse_u32, parse_u8, DecodeError, DefaultNla, ErrorContext, Nla,
    NlaBuffer,
};

use crate::nla::{kind_of, other, put, put_string};

const IPVS_DAEMON_ATTR_STATE: u16 = 1;
const IPVS_DAEMON_ATTR_MCAST_IFN: u16 = 2;
const IPVS_DAEMON_ATTR_SYNC_ID: u16 = 3;
const IPVS_DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
const IPVS_DAEMON_ATTR_MCAST_GROUP: u16 = 5;
const IPVS_DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
const IPVS_DAEMON_ATTR_MCAST_PORT: u16 = 7;
const IPVS_DAEMON_ATTR_MCAST_TTL: u16 = 8;

/// One attribute of a sync daemon nest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsDaemonAttribute {
    /// `IPVS_DAEMON_ATTR_STATE`: 1 master, 2 backup.
    State(u32),
    /// `IPVS_DAEMON_ATTR_MCAST_IFN`: multicast interface name.
    MulticastInterface(String),
    /// `IPVS_DAEMON_ATTR_SYNC_ID`: sync id.
    SyncId(u32),
    /// `IPVS_DAEMON_ATTR_SYNC_MAXLEN`: maximum sync message length.
    SyncMaxLength(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP`: IPv4 multicast group (4 raw bytes).
    MulticastGroup([u8; 4]),
    /// `IPVS_DAEMON_ATTR_MCAST_GROUP6`: IPv6 multicast group.
    MulticastGroup6([u8; 16]),
    /// `IPVS_DAEMON_ATTR_MCAST_PORT`: multicast port.
    MulticastPort(u16),
    /// `IPVS_DAEMON_ATTR_MCAST_TTL`: multicast TTL.
    MulticastTtl(u8),
    /// An attribute this crate does not know, kept as it was.
    Other(DefaultNla),
}

impl Nla for IpvsDaemonAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::State(_) | Self::SyncId(_) => 4,
            Self::MulticastInterface(name) => name.len() + 1,
            Self::SyncMaxLength(_) | Self::MulticastPort(_) => 2,
            Self::MulticastGroup(_) => 4,
            Self::MulticastGroup6(_) => 16,
            Self::MulticastTtl(_) => 1,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::State(_) => IPVS_DAEMON_ATTR_STATE,
            Self::MulticastInterface(_) => IPVS_DAEMON_ATTR_MCAST_IFN,
            Self::SyncId(_) => IPVS_DAEMON_ATTR_SYNC_ID,
            Self::SyncMaxLength(_) => IPVS_DAEMON_ATTR_SYNC_MAXLEN,
            Self::MulticastGroup(_) => IPVS_DAEMON_ATTR_MCAST_GROUP,
            Self::MulticastGroup6(_) => IPVS_DAEMON_ATTR_MCAST_GROUP6,
            Self::MulticastPort(_) => IPVS_DAEMON_ATTR_MCAST_PORT,
            Self::MulticastTtl(_) => IPVS_DAEMON_ATTR_MCAST_TTL,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::State(v) | Self::SyncId(v) => put(buffer, &v.to_ne_bytes()),
            Self::MulticastInterface(name) => put_string(buffer, name),
            Self::SyncMaxLength(v) | Self::MulticastPort(v) => put(buffer, &v.to_ne_bytes()),
            Self::MulticastGroup(group) => put(buffer, group),
            Self::MulticastGroup6(group) => put(buffer, group),
            Self::MulticastTtl(v) => buffer[0] = *v,
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpvsDaemonAttribute {
    /// Parses one attribute of a daemon nest.
    pub fn parse(buffer: &NlaBuffer<&[u8]>) -> Result<Self, DecodeError> {
        let value = buffer.value();
        Ok(match kind_of(buffer) {
            IPVS_DAEMON_ATTR_STATE => {
                Self::State(parse_u32(value).context("invalid IPVS_DAEMON_ATTR_STATE")?)
            }
            IPVS_DAEMON_ATTR_MCAST_IFN => Self::MulticastInterface(
                parse_string(value).context("invalid IPVS_DAEMON_ATTR_MCAST_IFN")?,
            ),
            IPVS_DAEMON_ATTR_SYNC_ID => {
                Self::SyncId(parse_u32(value).context("invalid IPVS_DAEMON_ATTR_SYNC_ID")?)
            }
            IPVS_DAEMON_ATTR_SYNC_MAXLEN => Self::SyncMaxLength(
                parse_u16(value).context("invalid IPVS_DAEMON_ATTR_SYNC_MAXLEN")?,
            ),
            IPVS_DAEMON_ATTR_MCAST_GROUP => Self::MulticastGroup(
                value
                    .try_into()
                    .map_err(|_| DecodeError::from("invalid IPVS_DAEMON_ATTR_MCAST_GROUP"))?,
            ),
            IPVS_DAEMON_ATTR_MCAST_GROUP6 => Self::MulticastGroup6(
                value
                    .try_into()
                    .map_err(|_| DecodeError::from("invalid IPVS_DAEMON_ATTR_MCAST_GROUP6"))?,
            ),
            IPVS_DAEMON_ATTR_MCAST_PORT => Self::MulticastPort(
                parse_u16(value).context("invalid IPVS_DAEMON_ATTR_MCAST_PORT")?,
            ),
            IPVS_DAEMON_ATTR_MCAST_TTL => {
                Self::MulticastTtl(parse_u8(value).context("invalid IPVS_DAEMON_ATTR_MCAST_TTL")?)
            }
            _ => Self::Other(other(buffer).context("invalid IPVS daemon attribute")?),
        })
    }
}
