// SPDX-License-Identifier: MIT

//! Command-level attributes (`enum ipvs_cmd_attributes`, and
//! `enum ipvs_info_attrs` in the reply to `GET_INFO`).

use netlink_packet_core::{parse_u32, DecodeError, DefaultNla, ErrorContext, Nla, NlaBuffer};

use crate::command::IpvsCommand;
use crate::daemon::IpvsDaemonAttribute;
use crate::dest::IpvsDestAttribute;
use crate::nla::{emit_list, kind_of, list_len, other, parse_nested, put};
use crate::service::IpvsServiceAttribute;

const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;
const IPVS_CMD_ATTR_DAEMON: u16 = 3;
const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;

const IPVS_INFO_ATTR_VERSION: u16 = 1;
const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

/// One attribute at the top level of an IPVS message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsAttribute {
    /// `IPVS_CMD_ATTR_SERVICE`: a service nest.
    Service(Vec<IpvsServiceAttribute>),
    /// `IPVS_CMD_ATTR_DEST`: a destination (real server) nest.
    Dest(Vec<IpvsDestAttribute>),
    /// `IPVS_CMD_ATTR_DAEMON`: a sync daemon nest.
    Daemon(Vec<IpvsDaemonAttribute>),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP`: TCP session timeout, seconds.
    TimeoutTcp(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_TCP_FIN`: TCP timeout after FIN, seconds.
    TimeoutTcpFin(u32),
    /// `IPVS_CMD_ATTR_TIMEOUT_UDP`: UDP timeout, seconds.
    TimeoutUdp(u32),
    /// `IPVS_INFO_ATTR_VERSION` (only in `SET_INFO`/`GET_INFO` messages):
    /// the IPVS version code, 0x010201 for 1.2.1.
    InfoVersion(u32),
    /// `IPVS_INFO_ATTR_CONN_TAB_SIZE` (only in `SET_INFO`/`GET_INFO`
    /// messages): the size of the connection hash table.
    InfoConnectionTableSize(u32),
    /// An attribute this crate does not know, kept as it was.
    Other(DefaultNla),
}

impl Nla for IpvsAttribute {
    fn value_len(&self) -> usize {
        match self {
            Self::Service(nlas) => list_len(nlas),
            Self::Dest(nlas) => list_len(nlas),
            Self::Daemon(nlas) => list_len(nlas),
            Self::TimeoutTcp(_)
            | Self::TimeoutTcpFin(_)
            | Self::TimeoutUdp(_)
            | Self::InfoVersion(_)
            | Self::InfoConnectionTableSize(_) => 4,
            Self::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Self::Service(_) => IPVS_CMD_ATTR_SERVICE,
            Self::Dest(_) => IPVS_CMD_ATTR_DEST,
            Self::Daemon(_) => IPVS_CMD_ATTR_DAEMON,
            Self::TimeoutTcp(_) => IPVS_CMD_ATTR_TIMEOUT_TCP,
            Self::TimeoutTcpFin(_) => IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            Self::TimeoutUdp(_) => IPVS_CMD_ATTR_TIMEOUT_UDP,
            Self::InfoVersion(_) => IPVS_INFO_ATTR_VERSION,
            Self::InfoConnectionTableSize(_) => IPVS_INFO_ATTR_CONN_TAB_SIZE,
            Self::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Self::Service(nlas) => emit_list(nlas, buffer),
            Self::Dest(nlas) => emit_list(nlas, buffer),
            Self::Daemon(nlas) => emit_list(nlas, buffer),
            Self::TimeoutTcp(v)
            | Self::TimeoutTcpFin(v)
            | Self::TimeoutUdp(v)
            | Self::InfoVersion(v)
            | Self::InfoConnectionTableSize(v) => put(buffer, &v.to_ne_bytes()),
            Self::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl IpvsAttribute {
    /// Whether the attribute is a nest (service, destination, daemon).
    pub fn is_nest(&self) -> bool {
        matches!(self, Self::Service(_) | Self::Dest(_) | Self::Daemon(_))
    }

    /// Parses one top-level attribute of a message carrying `command`:
    /// attribute numbers 1 and 2 mean INFO attributes in `SET_INFO` and
    /// `GET_INFO` messages, a service or destination nest elsewhere.
    pub fn parse(buffer: &NlaBuffer<&[u8]>, command: IpvsCommand) -> Result<Self, DecodeError> {
        let value = buffer.value();
        let is_info = matches!(command, IpvsCommand::SetInfo | IpvsCommand::GetInfo);
        Ok(match kind_of(buffer) {
            IPVS_INFO_ATTR_VERSION if is_info => {
                Self::InfoVersion(parse_u32(value).context("invalid IPVS_INFO_ATTR_VERSION")?)
            }
            IPVS_INFO_ATTR_CONN_TAB_SIZE if is_info => Self::InfoConnectionTableSize(
                parse_u32(value).context("invalid IPVS_INFO_ATTR_CONN_TAB_SIZE")?,
            ),
            IPVS_CMD_ATTR_SERVICE => Self::Service(
                parse_nested(value, IpvsServiceAttribute::parse)
                    .context("invalid IPVS_CMD_ATTR_SERVICE")?,
            ),
            IPVS_CMD_ATTR_DEST => Self::Dest(
                parse_nested(value, IpvsDestAttribute::parse)
                    .context("invalid IPVS_CMD_ATTR_DEST")?,
            ),
            IPVS_CMD_ATTR_DAEMON => Self::Daemon(
                parse_nested(value, IpvsDaemonAttribute::parse)
                    .context("invalid IPVS_CMD_ATTR_DAEMON")?,
            ),
            IPVS_CMD_ATTR_TIMEOUT_TCP => {
                Self::TimeoutTcp(parse_u32(value).context("invalid IPVS_CMD_ATTR_TIMEOUT_TCP")?)
            }
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN => Self::TimeoutTcpFin(
                parse_u32(value).context("invalid IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?,
            ),
            IPVS_CMD_ATTR_TIMEOUT_UDP => {
                Self::TimeoutUdp(parse_u32(value).context("invalid IPVS_CMD_ATTR_TIMEOUT_UDP")?)
            }
            _ => Self::Other(other(buffer).context("invalid IPVS command attribute")?),
        })
    }
}
