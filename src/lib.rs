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
//! - [`sync`]: the sync engine: keeps the kernel and `kube-ipvs0` equal to
//!   the desired state, incrementally, with periodic full resyncs and
//!   drain checks. Source-agnostic.
//! - [`run`]: `ipvs-agent run --manifests`: the sync engine fed from files
//!   it watches.
//! - [`kubernetes`]: `ipvs-agent run` against an API server: kube-runtime
//!   watchers feeding the same sync engine.
//! - [`plan_output`]: what `ipvs-agent plan` prints (`ipvsadm -Sn` rules,
//!   the `-Ln` table and `kube-ipvs0` addresses, JSON). Pure.
//! - [`health`]: `/healthz` and `/livez` semantics (kube-proxy's, plus
//!   API-server staleness); pure verdicts and the shared state.
//! - [`metrics`]: the Prometheus metrics (kube-proxy's names where the
//!   meaning is the same) and the bounded per-server kernel counters.
//! - [`node_events`]: Kubernetes Events on the agent's Node (start, sync
//!   failures, kernel refusals).
//! - [`serve`]: the HTTP endpoints for health and metrics.
//! - [`admin`]: `ipvs-agent list` (the kernel's table as ipvsadm prints
//!   it) and `ipvs-agent cleanup` (removes only what the agent owns).
//! - [`config`]: `--config`: kube-proxy's `KubeProxyConfiguration`.
//! - [`settings`]: the agent's settings and what it knows of its node.
//! - [`system`]: the `kube-ipvs0` link and node addresses (rtnetlink) and
//!   the sysctls kube-proxy sets.

pub mod admin;
pub mod apply;
pub mod config;
pub mod desired;
pub mod diff;
pub mod health;
pub mod kubernetes;
pub mod manifests;
pub mod metrics;
pub mod node_events;
pub mod plan_output;
pub mod run;
pub mod serve;
pub mod settings;
pub mod sync;
pub mod system;
