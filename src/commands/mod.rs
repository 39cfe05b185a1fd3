//! The operator's commands besides `run`, one per file.
//!
//! - [`plan`]: `ipvs-agent plan`: what the agent would program, from
//!   manifests, without a kernel (`ipvsadm -Sn` rules, the `-Ln` table and
//!   the `kube-ipvs0` addresses, JSON). Pure.
//! - [`list`]: `ipvs-agent list`: the kernel's table as ipvsadm prints it.
//! - [`cleanup`]: `ipvs-agent cleanup`: removes only what the agent owns.
//!
//! Commands use whatever they need; nothing depends on them.

pub mod cleanup;
pub mod list;
pub mod plan;

use netlink_ipvs::IpvsError;

use crate::system::link::LinkError;
use crate::system::netfilter::NetfilterError;

/// What `list` and `cleanup` can fail on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The IPVS netlink request failed (no IPVS in the kernel, no
    /// permission).
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    /// An rtnetlink request failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Reading or deleting the agent's nftables tables failed.
    #[error("nftables: {0}")]
    Netfilter(#[from] NetfilterError),
}
