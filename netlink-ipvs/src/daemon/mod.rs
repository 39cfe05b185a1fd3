// SPDX-License-Identifier: MIT

//! The connection synchronisation daemon (`ipvsadm --start-daemon`).

mod attribute;

use netlink_packet_core::DecodeError;

pub use attribute::IpvsDaemonAttribute;

const IP_VS_STATE_MASTER: u32 = 1;
const IP_VS_STATE_BACKUP: u32 = 2;

/// Whether a sync daemon sends (master) or receives (backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IpvsDaemonState {
    /// `IP_VS_STATE_MASTER`.
    Master,
    /// `IP_VS_STATE_BACKUP`.
    Backup,
    /// Any other value.
    Other(u32),
}

impl From<IpvsDaemonState> for u32 {
    fn from(state: IpvsDaemonState) -> u32 {
        match state {
            IpvsDaemonState::Master => IP_VS_STATE_MASTER,
            IpvsDaemonState::Backup => IP_VS_STATE_BACKUP,
            IpvsDaemonState::Other(value) => value,
        }
    }
}

impl From<u32> for IpvsDaemonState {
    fn from(value: u32) -> Self {
        match value {
            IP_VS_STATE_MASTER => Self::Master,
            IP_VS_STATE_BACKUP => Self::Backup,
            other => Self::Other(other),
        }
    }
}

/// A sync daemon: the state, interface and sync id that start or stop it
/// (the kernel also reports the multicast settings, kept in `extra`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsDaemon {
    /// Master or backup.
    pub state: IpvsDaemonState,
    /// Multicast interface name.
    pub interface: String,
    /// Sync id.
    pub sync_id: u32,
    /// Every other attribute the kernel sent (max length, group, port, TTL).
    pub extra: Vec<IpvsDaemonAttribute>,
}

impl IpvsDaemon {
    /// The nest for `NEW_DAEMON`: `STATE`, `MCAST_IFN`, `SYNC_ID`, then
    /// `extra`. `DEL_DAEMON` needs only `STATE`.
    pub fn to_attributes(&self) -> Vec<IpvsDaemonAttribute> {
        let mut attributes = vec![
            IpvsDaemonAttribute::State(self.state.into()),
            IpvsDaemonAttribute::MulticastInterface(self.interface.clone()),
            IpvsDaemonAttribute::SyncId(self.sync_id),
        ];
        attributes.extend(self.extra.iter().cloned());
        attributes
    }

    /// Reads a daemon nest.
    pub fn from_attributes(attributes: &[IpvsDaemonAttribute]) -> Result<Self, DecodeError> {
        let mut state = None;
        let mut interface = String::new();
        let mut sync_id = 0;
        let mut extra = Vec::new();
        for attribute in attributes {
            match attribute {
                IpvsDaemonAttribute::State(v) => state = Some(IpvsDaemonState::from(*v)),
                IpvsDaemonAttribute::MulticastInterface(v) => interface = v.clone(),
                IpvsDaemonAttribute::SyncId(v) => sync_id = *v,
                other => extra.push(other.clone()),
            }
        }
        Ok(Self {
            state: state.ok_or_else(|| DecodeError::from("missing IPVS_DAEMON_ATTR_STATE"))?,
            interface,
            sync_id,
            extra,
        })
    }
}
