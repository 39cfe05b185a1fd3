// SPDX-License-Identifier: MIT

//! The async client: connection, requests, batches and errors.

mod batch;
mod encode;
mod error;
mod family;
mod handle;
mod operation;
mod read;

pub use batch::IpvsBatchOptions;
pub use error::IpvsError;
pub use handle::{new_connection, IpvsConnection, IpvsHandle, IpvsTableEntry};
pub use operation::IpvsOperation;
pub use read::TABLE_READERS;
