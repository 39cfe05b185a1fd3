// SPDX-License-Identifier: MIT

//! ipvsadm-compatible text: `-Ln`, `-Ln --stats`, `-Ln --rate`, `-Sn`.
//!
//! Pure functions from a table (as [`crate::IpvsHandle::table`] and
//! [`crate::IpvsHandle::info`] read it) to the bytes ipvsadm 1.31 prints,
//! checked against the real ipvsadm on a real kernel
//! (`integration/tests/format_vs_ipvsadm.rs`).
//!
//! - [`list`]: [`format_list`] (`ipvsadm -L -n` and its `--stats`,
//!   `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info`,
//!   `--exact`, `--nosort` variants, chosen with [`IpvsListOptions`]) and
//!   [`format_list_service`] (`ipvsadm -L -n -t addr:port`).
//! - [`save`]: [`format_save`] (`ipvsadm -S -n`).
//! - [`sort`]: [`sort_table`], ipvsadm's order with its comparator quirks.
//! - `number` (counter scaling) and `name` (addresses, protocols,
//!   forwarding methods, flags) are shared by both.
//!
//! Only numeric output exists (`-n`): nothing here resolves names.
//!
//! ipvsadm 1.31 quirks kept on purpose. Checked on a real kernel:
//! fwmarks are printed with `%d` (3000000000 shows as `-1294967296`);
//! sorting subtracts unsigned values into an `int`, so marks or addresses
//! more than 2^31 apart sort "backwards" (see [`sort`]); thresholds are
//! never saved; IPv4-compatible IPv6 addresses are dotted
//! (`[::10.1.2.3]`). From the source only (not exercised on a test
//! kernel): the persistence engine is listed only for persistent services
//! but always saved; a real server's counters other than bytes are read
//! through 32
//! bits; its first three `--rate` columns are never scaled; a local-node
//! real server is saved as `-g`; an unknown forwarding method prints as
//! glibc's `(null)`.

pub mod list;
mod name;
mod number;
pub mod save;
pub mod sort;

pub use list::{format_list, format_list_service, IpvsListOptions};
pub use save::format_save;
pub use sort::{sort_destinations, sort_table};

#[cfg(test)]
mod tests;
