//! ipvs-agent: the node agent that replaces kube-proxy's IPVS mode.
//!
//! # Layout
//!
//! Data flows one way: **sources → driver → engine → kernel**; the
//! operator endpoints observe what the engine reports; commands stand
//! aside.
//!
//! ```text
//!   sources::manifests ─┐                     ┌─ desired (pure) ─┐
//!   sources::kubernetes ┴─> ClusterState ─> driver ─> engine ────┤─ diff (pure)
//!                                              │          └─ engine::kernel ─> IPVS, kube-ipvs0, nftables
//!                                              └─> ops (health, metrics, events, HTTP)
//! ```
//!
//! - [`model`]: the shared nouns (`ObjectRef`, `ClusterState`, `Table`,
//!   the node, the settings); imports nothing else of the crate.
//! - [`desired`]: pure. Services, EndpointSlices and Endpoints in, the IPVS
//!   table, the `kube-ipvs0` addresses and the nftables set elements out,
//!   by kube-proxy's rules.
//! - [`diff`]: pure. Two IPVS tables (wanted, kernel) in, the minimal list
//!   of netlink operations out, touching only what the agent owns and
//!   draining removed TCP real servers; the set elements to add and remove.
//! - [`engine`]: keeps the kernel equal to the desired state: the
//!   per-Service index, plan/apply/re-read rounds, the only errno-aware
//!   code (`engine::apply`), and the [`engine::Kernel`] seam through which
//!   it reaches the kernel (netlink in the agent, in memory in its tests).
//! - [`sources`]: where the cluster state comes from: manifest files, or
//!   the API server's watches; each yields changes over one
//!   `ClusterState`.
//! - [`driver`]: the one run loop for either source: first sync,
//!   coalescing, resync, drain checks, shutdown.
//! - [`ops`]: observers of sync reports: `/healthz` and `/livez`,
//!   `/metrics`, Node Events, the HTTP servers. The engine imports nothing
//!   from here.
//! - [`commands`]: `plan`, `list`, `cleanup`, one per file.
//! - [`system`]: what the agent changes on the node besides IPVS:
//!   `kube-ipvs0` and its addresses, sysctls, its nftables tables.
//! - [`config`]: kube-proxy's `KubeProxyConfiguration`, decoded,
//!   defaulted and validated as kube-proxy does.
//! - [`invariants`]: what every desired state must satisfy whatever the
//!   objects (the fuzz targets' and tests' checker); reads `desired` and
//!   `diff`'s ownership rules.
//! - The command line lives in the binary (`src/main.rs` and its
//!   `src/cli/`): kube-proxy's flags (no subcommand means `run`), the
//!   agent's own, and their resolution into the plain values the library's
//!   entry points take.
//!
//! Dependency rule: `model` ← {`desired`, `diff`} ← `engine` ← `driver` →
//! `sources`; `ops` reads `engine::report` (and `model`); `system` depends
//! on `model` only; nothing depends on `commands`. The one edge from
//! `sources` to `ops`: the API watchers tell `ops::health` whether the API
//! server answers. `integration/scripts/check-imports.py` (in CI) fails on
//! any import circle between sibling modules. Names differ from the
//! layout document where the code said better: the per-Service state is
//! `engine::index::DesiredIndex`, the HTTP servers `ops::http`.

pub mod commands;
pub mod config;
pub mod desired;
pub mod diff;
pub mod driver;
pub mod engine;
pub mod invariants;
pub mod model;
pub mod ops;
pub mod sources;
pub mod system;
