//! `ipvs-agent list`: prints the kernel's table exactly as `ipvsadm -Ln`
//! (`--stats`, `--rate`, `--exact`) or `ipvsadm -Sn` would, so a node
//! without ipvsadm can still be inspected.

use netlink_ipvs::format::{format_list, format_save, IpvsListOptions};

use super::AdminError;
use crate::engine::kernel::connect_ipvs;

/// Which text `list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// `ipvsadm -Ln` with these column options.
    Table(IpvsListOptions),
    /// `ipvsadm -Sn`.
    Save,
}

/// The kernel's table as ipvsadm prints it.
pub async fn list_kernel(format: ListFormat) -> Result<String, AdminError> {
    let ipvs = connect_ipvs()?;
    let table = ipvs.table().await?;
    Ok(match format {
        ListFormat::Save => format_save(&table),
        ListFormat::Table(options) => format_list(&ipvs.info().await?, &table, &options),
    })
}
