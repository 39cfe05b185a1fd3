//! Conntrack entries as the cleanup sees them: the original direction's
//! addresses and ports, the reply's source, and the zone (kept so that a
//! delete names the entry exactly).

use std::fmt;
use std::net::IpAddr;

use netlink_ipvs::IpvsProtocol;

/// One conntrack entry (`conntrack -L` shows it as `udp 17 29
/// src=A dst=B sport=P dport=Q src=R dst=S ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConntrackEntry {
    /// The transport protocol.
    pub protocol: IpvsProtocol,
    /// Original direction: source address (the client).
    pub source: IpAddr,
    /// Original direction: destination address (a Service address).
    pub destination: IpAddr,
    /// Original direction: source port.
    pub source_port: u16,
    /// Original direction: destination port.
    pub destination_port: u16,
    /// Reply direction: source address (the real server after IPVS
    /// rewrote the destination, or the original destination when nothing
    /// did).
    pub reply_source: IpAddr,
    /// Reply direction: source port (the real server's port).
    pub reply_source_port: u16,
    /// `CTA_ZONE` when the entry has one.
    pub zone: Option<u16>,
}

impl fmt::Display for ConntrackEntry {
    /// `udp src=10.244.1.14 dst=10.96.0.53 sport=40000 dport=53 reply-src=10.244.0.11`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            IpvsProtocol::Tcp => "tcp".to_owned(),
            IpvsProtocol::Udp => "udp".to_owned(),
            IpvsProtocol::Sctp => "sctp".to_owned(),
            other => format!("proto {}", u16::from(other)),
        };
        write!(
            f,
            "{protocol} src={} dst={} sport={} dport={} reply-src={}",
            self.source,
            self.destination,
            self.source_port,
            self.destination_port,
            self.reply_source
        )?;
        if let Some(zone) = self.zone {
            write!(f, " zone={zone}")?;
        }
        Ok(())
    }
}
