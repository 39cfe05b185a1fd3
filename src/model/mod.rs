//! The shared nouns: the cluster's objects as the agent holds them, the
//! IPVS table, the node and the settings. Every other part of the agent
//! uses these; this module imports nothing else from the crate.
//!
//! - [`object_ref`]: `namespace/name` and the label and annotation names.
//! - [`cluster`]: [`ClusterState`], the Services and EndpointSlices the
//!   desired state is computed from, and [`changed_services`].
//! - [`table`]: [`Table`], an IPVS table as desired, diff, engine and
//!   commands see it.
//! - [`node`]: what the agent knows of its node, and `kube-ipvs0`.
//! - [`netfilter`]: the sets of the agent's nftables tables and their
//!   elements.
//! - [`conntrack`]: a conntrack entry as the cleanup sees it.
//! - [`settings`]: the agent's settings (kube-proxy's flags).
//! - [`ip_family`]: the families programmed without `--ip-family`.
//! - [`trigger_time`]: an EndpointSlice's `last-change-trigger-time`,
//!   where the network-programming latency starts.

pub mod cluster;
pub mod conntrack;
pub mod ip_family;
pub mod netfilter;
pub mod node;
pub mod object_ref;
pub mod settings;
pub mod table;
pub mod trigger_time;

pub use cluster::{changed_services, ClusterState, PrunedService, Slice};
pub use node::{LocalAddress, NodeContext, KUBE_IPVS_INTERFACE};
pub use object_ref::ObjectRef;
pub use settings::ProxySettings;
pub use table::{Table, TableEntry};
