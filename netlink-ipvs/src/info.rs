// SPDX-License-Identifier: MIT

//! IPVS version and connection table size (`GET_INFO`).

use std::fmt;

use netlink_packet_core::DecodeError;

use crate::attribute::IpvsAttribute;

/// What `GET_INFO` reports: ipvsadm's first line,
/// `IP Virtual Server version 1.2.1 (size=4096)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpvsInfo {
    /// Version code: `0x010201` for 1.2.1.
    pub version: u32,
    /// Connection hash table size.
    pub connection_table_size: u32,
}

/// Formats a version code as ipvsadm does: `1.2.1`.
#[derive(Debug, Clone, Copy)]
pub struct IpvsVersion(pub u32);

impl fmt::Display for IpvsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(f, "{}.{}.{}", (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff)
    }
}

impl IpvsInfo {
    /// Reads a `GET_INFO` reply.
    pub fn from_attributes(attributes: &[IpvsAttribute]) -> Result<Self, DecodeError> {
        let mut version = None;
        let mut size = None;
        for attribute in attributes {
            match attribute {
                IpvsAttribute::InfoVersion(v) => version = Some(*v),
                IpvsAttribute::InfoConnectionTableSize(v) => size = Some(*v),
                _ => {}
            }
        }
        Ok(Self {
            version: version.ok_or_else(|| DecodeError::from("missing IPVS_INFO_ATTR_VERSION"))?,
            connection_table_size: size
                .ok_or_else(|| DecodeError::from("missing IPVS_INFO_ATTR_CONN_TAB_SIZE"))?,
        })
    }
}
