// SPDX-License-Identifier: MIT

//! IPVS (IP Virtual Server) over generic netlink: packets, an async
//! pipelined client, and ipvsadm-compatible text.
//!
//! # Layout
//!
//! The packet layer does no I/O:
//!
//! - [`message`]: [`IpvsMessage`], the payload of a `GenlMessage` of the
//!   `IPVS` family, and [`command`]: the commands.
//! - [`attribute`]: command-level attributes (nests, timeouts, info).
//! - [`service`], [`dest`], [`daemon`], [`stats`]: one folder per kernel
//!   object, each with its attribute enum (`attribute.rs`, unknown
//!   attributes kept as `Other`) and its typed model ([`IpvsService`],
//!   [`IpvsDestination`], [`IpvsDaemon`], [`IpvsStats`]) with conversions to
//!   and from attributes.
//! - [`config`] (timeouts) and [`info`] (version): small command-level
//!   models. [`address`]: address families and the raw 16-byte address.
//!
//! Over it:
//!
//! - [`client`]: [`new_connection`] resolves the family once and returns a
//!   netlink-proto connection task and an [`IpvsHandle`]: get/dump, add,
//!   edit, delete, config, info, zero, flush, and the pipelined batch API
//!   ([`IpvsHandle::apply`]). Errors are [`IpvsError`], keeping the errno
//!   and naming the object.
//! - [`format`](mod@format): the text `ipvsadm -Ln`, `-Ln --stats`, `-Ln --rate` and
//!   `-Sn` print for a table, byte for byte.

#![warn(missing_docs)]

pub mod address;
pub mod attribute;
pub mod client;
pub mod command;
pub mod config;
pub mod daemon;
pub mod dest;
pub mod format;
pub mod info;
pub mod message;
mod nla;
pub mod service;
pub mod stats;

pub use address::IpvsAddressFamily;
pub use attribute::IpvsAttribute;
pub use client::{
    new_connection, IpvsBatchOptions, IpvsConnection, IpvsError, IpvsHandle, IpvsOperation,
    IpvsTableEntry, TABLE_READERS,
};
pub use command::IpvsCommand;
pub use config::IpvsTimeouts;
pub use daemon::{IpvsDaemon, IpvsDaemonAttribute, IpvsDaemonState};
pub use dest::{
    IpvsDestAttribute, IpvsDestination, IpvsDestinationKey, IpvsForwardingMethod, IpvsTunnelFlags,
    IpvsTunnelType,
};
pub use info::{IpvsInfo, IpvsVersion};
pub use message::{IpvsMessage, IPVS_GENL_NAME, IPVS_GENL_VERSION};
pub use service::{
    IpvsFlagsWithMask, IpvsNetmask, IpvsProtocol, IpvsService, IpvsServiceAttribute,
    IpvsServiceFlags, IpvsServiceKey,
};
pub use stats::{IpvsCounters, IpvsStats, IpvsStatsAttribute, IpvsStatsWidth};
