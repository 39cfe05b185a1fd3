//! What the agent changes on the node besides IPVS.
//!
//! - [`link`]: the `kube-ipvs0` dummy link and its addresses, and the
//!   node's local addresses, over rtnetlink.
//! - [`address_batch`]: many address changes in few datagrams.
//! - [`netfilter`]: the agent's nftables tables (masquerade, hairpin,
//!   the VIP filter, source ranges).
//! - [`conntrack`]: conntrack entries over ctnetlink (dump, delete),
//!   for the cleanup of stale UDP and SCTP flows.
//! - [`nfnetlink`]: opening a netfilter netlink socket (both above).
//! - [`sysctl`]: the kernel settings kube-proxy's IPVS mode needs.
//! - [`oom_score`]: the agent's own `oom_score_adj`.
//! - [`ipv6`]: whether the kernel has IPv6 (the family choice).
//! - [`errno`]: the kernel answers told apart there.
//! - [`capabilities`]: CAP_NET_ADMIN, checked at start.
//!
//! Depends on [`crate::model`] only.

pub mod address_batch;
pub mod capabilities;
pub mod conntrack;
pub mod errno;
pub mod ipv6;
pub mod kube_proxy_leftovers;
pub mod link;
pub mod netfilter;
pub mod nfnetlink;
pub mod oom_score;
pub mod sysctl;
