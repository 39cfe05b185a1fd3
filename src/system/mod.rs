//! What the agent changes on the node besides IPVS.
//!
//! - [`link`]: the `kube-ipvs0` dummy link and its addresses, and the
//!   node's local addresses, over rtnetlink.
//! - [`address_batch`]: many address changes in few datagrams.
//! - [`sysctl`]: the kernel settings kube-proxy's IPVS mode needs.

pub mod address_batch;
pub mod link;
pub mod sysctl;
