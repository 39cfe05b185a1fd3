//! From two tables (desired, kernel) to the operations that make the
//! kernel's equal the desired one. Pure: no I/O, no errno; the apply layer
//! sends the operations.
//!
//! - [`ownership`]: which kernel virtual servers are the agent's to change.
//! - [`conntrack`]: which conntrack entries are stale (UDP, SCTP).
//! - [`netfilter`]: which nftables set elements to add and remove.
//! - [`plan`]: the diff itself, with graceful termination of real servers.

pub mod conntrack;
pub mod netfilter;
pub mod ownership;
pub mod plan;

pub use ownership::Ownership;
pub use plan::{plan_changes, DrainPolicy, Draining, Plan};
