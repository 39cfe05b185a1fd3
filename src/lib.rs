//! ipvs-agent: the node agent that replaces kube-proxy's IPVS mode.
//!
//! # Layout
//!
//! - [`desired`]: pure. Services, EndpointSlices and Endpoints in, the IPVS
//!   table and the `kube-ipvs0` addresses out, by kube-proxy's rules.
//! - [`manifests`]: loads those objects from YAML files, reporting each bad
//!   one with its file, object and field.
//! - [`diff`]: pure. Two IPVS tables (what the agent wants, what the kernel
//!   holds) in, the minimal list of netlink operations out, touching only
//!   what the agent owns and draining removed TCP real servers.
//! - [`apply`]: sends a plan through the netlink-ipvs batch API, treats
//!   the kernel's EEXIST / ESRCH / ENOENT answers by level, and keeps the
//!   agent's view of the kernel in step. The only errno-aware part.
//! - [`plan_output`]: what `ipvs-agent plan` prints (`ipvsadm -Sn` rules,
//!   the `-Ln` table and `kube-ipvs0` addresses, JSON). Pure.
//! - [`settings`]: the agent's settings and what it knows of its node.

pub mod apply;
pub mod desired;
pub mod diff;
pub mod manifests;
pub mod plan_output;
pub mod settings;
