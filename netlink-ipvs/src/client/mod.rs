// SPDX-License-Identifier: MIT

//! The async client: connection, requests, batches and errors.

mod batch;
mod encode;
mod error;
mod family;
mod handle;
mod operation;

pub use batch::IpvsBatchOptions;
pub use error::IpvsError;
pub use handle::{new_connection, IpvsConnection, IpvsHandle, IpvsTableEntry, DUMPS_IN_FLIGHT};
pub use operation::IpvsOperation;
