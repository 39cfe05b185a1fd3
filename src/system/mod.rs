//! What the agent changes on the node besides IPVS.
//!
//! - [`link`]: the `kube-ipvs0` dummy link and its addresses, and the
//!   node's local addresses, over rtnetlink.
//! - [`sysctl`]: the kernel settings kube-proxy's IPVS mode needs.

pub mod link;
pub mod sysctl;
