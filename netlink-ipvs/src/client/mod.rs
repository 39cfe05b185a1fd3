// SPDX-License-Identifier: MIT

//! The async client: connection, requests, batches and errors.
//!
//! Its files depend on each other one way only (no circle):
//!
//! - `handle`: the verbs and `apply`; uses `batch`, `read`, `family`,
//!   `decode`, `operation`.
//! - `batch`: the batch socket; uses `encode`, `operation`.
//! - `read`: the blocking whole-table readers; uses `decode`.
//! - `family`: resolving the family id. `decode`: replies to the typed
//!   model. `encode`: operations straight to bytes, using `operation`.
//! - `error`, and under everything `wire`: netlink constants, buffer
//!   sizes, errno values and the walk over a datagram's messages. Every
//!   file but `operation` uses `wire`; `batch`, `decode`, `family`,
//!   `handle` and `read` use `error`; `wire` uses no other file.

mod batch;
mod decode;
mod encode;
mod error;
mod family;
mod handle;
mod operation;
mod read;
mod wire;

pub use self::{
    batch::IpvsBatchOptions,
    decode::IpvsTableEntry,
    error::IpvsError,
    handle::{new_connection, IpvsConnection, IpvsHandle},
    operation::IpvsOperation,
    read::TABLE_READERS,
};
