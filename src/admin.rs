//! `ipvs-agent list` and `ipvs-agent cleanup`: looking at and removing
//! what is in the kernel, for operators.
//!
//! - [`list_kernel`] prints the kernel's table exactly as `ipvsadm -Ln`
//!   (`--stats`, `--rate`, `--exact`) or `ipvsadm -Sn` would, so a node
//!   without ipvsadm can still be inspected.
//! - [`cleanup`] removes only what the agent owns (the rules of
//!   [`Ownership`]: virtual servers on `kube-ipvs0` addresses, NodePort
//!   virtual servers on node addresses, never inside the excluded CIDRs),
//!   then `kube-ipvs0` itself. kube-proxy's `--cleanup` flushes the whole
//!   table; this never touches another tool's virtual servers.

use std::collections::BTreeSet;

use netlink_ipvs::format::{format_list, format_save, IpvsListOptions};
use netlink_ipvs::{IpvsError, IpvsHandle, IpvsServiceKey};
use tracing::info;

use crate::desired::node_addresses::KUBE_IPVS_INTERFACE;
use crate::diff::Ownership;
use crate::settings::ProxySettings;
use crate::system::link::{LinkError, LinkManager};

/// What `list` and `cleanup` can fail on.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The IPVS netlink request failed (no IPVS in the kernel, no
    /// permission).
    #[error("IPVS: {0}")]
    Ipvs(#[from] IpvsError),
    /// An rtnetlink request failed.
    #[error(transparent)]
    Link(#[from] LinkError),
}

/// Which text `list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    /// `ipvsadm -Ln` with these column options.
    Table(IpvsListOptions),
    /// `ipvsadm -Sn`.
    Save,
}

fn open_ipvs() -> Result<IpvsHandle, AdminError> {
    let (connection, handle) = netlink_ipvs::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The kernel's table as ipvsadm prints it.
pub async fn list_kernel(format: ListFormat) -> Result<String, AdminError> {
    let ipvs = open_ipvs()?;
    let table = ipvs.table().await?;
    Ok(match format {
        ListFormat::Save => format_save(&table),
        ListFormat::Table(options) => format_list(&ipvs.info().await?, &table, &options),
    })
}

/// What [`cleanup`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// The virtual servers deleted (with their real servers).
    pub deleted: Vec<IpvsServiceKey>,
    /// Virtual servers left because the agent does not own them.
    pub kept: Vec<IpvsServiceKey>,
    /// Whether `kube-ipvs0` existed and was deleted.
    pub link_deleted: bool,
}

/// Removes the agent's virtual servers and `kube-ipvs0`; leaves every other
/// virtual server, the sysctls and the IPVS timeouts as they are.
pub async fn cleanup(settings: &ProxySettings) -> Result<CleanupReport, AdminError> {
    let ipvs = open_ipvs()?;
    let links = LinkManager::new()?;
    let bound_addresses = links.addresses_of(KUBE_IPVS_INTERFACE).await?;
    let node_addresses: BTreeSet<_> = links
        .local_addresses()
        .await?
        .into_iter()
        .filter(|local| local.interface != KUBE_IPVS_INTERFACE)
        .map(|local| local.address)
        .collect();
    let ownership = Ownership {
        bound_addresses,
        node_addresses,
        node_port_range: Some(settings.node_port_range.clone()),
        excluded: settings.exclude_cidrs.clone(),
    };
    let mut report = CleanupReport::default();
    for service in ipvs.services().await? {
        if !ownership.owns(&service.key) {
            report.kept.push(service.key);
            continue;
        }
        match ipvs.delete_service(&service.key).await {
            // Gone already (another cleanup won the race): the same outcome.
            Err(error) if error.is_no_such_service() => {}
            Err(error) => return Err(error.into()),
            Ok(()) => {}
        }
        info!(virtual_server = %service.key, "deleted");
        report.deleted.push(service.key);
    }
    report.link_deleted = links.link_index(KUBE_IPVS_INTERFACE).await?.is_some();
    links.delete_link(KUBE_IPVS_INTERFACE).await?;
    Ok(report)
}
