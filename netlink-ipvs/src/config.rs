// SPDX-License-Identifier: MIT

//! Connection timeouts (`ipvsadm --set tcp tcpfin udp`).

use crate::attribute::IpvsAttribute;

/// The TCP, TCP-after-FIN and UDP connection timeouts, in seconds.
///
/// In `SET_CONFIG`, 0 means "leave unchanged" (absent values are not sent).
/// Kernel defaults: 900, 120, 300.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IpvsTimeouts {
    /// Established TCP sessions.
    pub tcp: u32,
    /// TCP sessions after a FIN.
    pub tcp_fin: u32,
    /// UDP.
    pub udp: u32,
}

impl IpvsTimeouts {
    /// The top-level attributes of `SET_CONFIG` (ipvsadm sends all three).
    pub fn to_attributes(&self) -> Vec<IpvsAttribute> {
        vec![
            IpvsAttribute::TimeoutTcp(self.tcp),
            IpvsAttribute::TimeoutTcpFin(self.tcp_fin),
            IpvsAttribute::TimeoutUdp(self.udp),
        ]
    }

    /// Reads the timeouts of a `GET_CONFIG` reply.
    pub fn from_attributes(attributes: &[IpvsAttribute]) -> Self {
        let mut timeouts = Self::default();
        for attribute in attributes {
            match attribute {
                IpvsAttribute::TimeoutTcp(v) => timeouts.tcp = *v,
                IpvsAttribute::TimeoutTcpFin(v) => timeouts.tcp_fin = *v,
                IpvsAttribute::TimeoutUdp(v) => timeouts.udp = *v,
                _ => {}
            }
        }
        timeouts
    }
}
