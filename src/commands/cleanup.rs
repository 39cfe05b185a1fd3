//! `ipvs-agent cleanup` (and `run --cleanup`): removes only what the agent
//! owns (the rules of [`Ownership`]: virtual servers on `kube-ipvs0`
//! addresses, NodePort virtual servers on node addresses, never inside the
//! excluded CIDRs), then `kube-ipvs0` itself, then the agent's nftables
//! tables (`ip`/`ip6 ipvs-agent`, whichever exist). kube-proxy's
//! `--cleanup` flushes the whole table; this never touches another tool's
//! virtual servers, tables or rules.

use netlink_ipvs::IpvsServiceKey;
use tracing::info;

use super::AdminError;
use crate::diff::Ownership;
use crate::engine::kernel::connect_ipvs;
use crate::model::netfilter::{NetfilterFamily, NETFILTER_TABLE};
use crate::model::{ProxySettings, KUBE_IPVS_INTERFACE};
use crate::system::link::LinkManager;
use crate::system::netfilter::script::delete_table;
use crate::system::netfilter::{read_tables, run_nft};

/// What [`cleanup`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// The virtual servers deleted (with their real servers).
    pub deleted: Vec<IpvsServiceKey>,
    /// Virtual servers left because the agent does not own them.
    pub kept: Vec<IpvsServiceKey>,
    /// Whether `kube-ipvs0` existed and was deleted.
    pub link_deleted: bool,
    /// The families whose nftables table existed and was deleted.
    pub tables_deleted: Vec<NetfilterFamily>,
}

/// Removes the agent's virtual servers and `kube-ipvs0`; leaves every other
/// virtual server, the sysctls and the IPVS timeouts as they are.
pub async fn cleanup(settings: &ProxySettings) -> Result<CleanupReport, AdminError> {
    let ipvs = connect_ipvs()?;
    let links = LinkManager::new()?;
    let bound_addresses = links.addresses_of(KUBE_IPVS_INTERFACE).await?;
    let local = links.local_addresses().await?;
    let ownership = Ownership::new(settings, bound_addresses, &local);
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
    let tables = read_tables(NetfilterFamily::ALL.to_vec(), false).await?;
    for (family, table) in tables {
        if table.is_some() {
            run_nft(delete_table(family)).await?;
            info!(table = %format!("{} {NETFILTER_TABLE}", family.nft_name()), "deleted");
            report.tables_deleted.push(family);
        }
    }
    Ok(report)
}
