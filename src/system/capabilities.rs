//! The one capability the agent cannot run without, checked at start so
//! that an agent started without it says so, rather than failing later at
//! its first netlink write with a bare "Operation not permitted".
//!
//! CAP_NET_ADMIN covers every kernel write the agent makes: IPVS over
//! generic netlink (`GENL_ADMIN_PERM`), `kube-ipvs0` and its addresses over
//! rtnetlink, the nftables tables, conntrack, and the net sysctls
//! (`net_ctl_permissions` grants it the owner's access). The others the
//! DaemonSet grants are optional (deploy/README.md, Privileges).
//!
//! [`effective_capabilities`] (pure) reads `/proc/self/status`'s `CapEff`.

use std::path::Path;

/// `CAP_NET_ADMIN`'s bit (`include/uapi/linux/capability.h`).
pub const CAP_NET_ADMIN: u32 = 12;

/// The agent lacks CAP_NET_ADMIN, or its capabilities could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// CAP_NET_ADMIN is not effective.
    #[error("the agent needs CAP_NET_ADMIN (its effective capabilities are {0:#018x}): it programs IPVS, kube-ipvs0, its nftables tables and the net sysctls with it; add NET_ADMIN to the container's capabilities (deploy/README.md, Privileges)")]
    MissingNetAdmin(u64),
    /// The status file could not be read or has no `CapEff` line.
    #[error("reading the agent's capabilities from {path}: {message}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// The `CapEff` mask of a `/proc/<pid>/status` text.
pub fn effective_capabilities(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
}

/// Fails unless the process reading `status_path` (`/proc/self/status`)
/// has CAP_NET_ADMIN effective.
pub fn require_net_admin(status_path: &Path) -> Result<(), CapabilityError> {
    let unreadable = |message: String| CapabilityError::Unreadable {
        path: status_path.display().to_string(),
        message,
    };
    let status = std::fs::read_to_string(status_path).map_err(|e| unreadable(e.to_string()))?;
    let mask =
        effective_capabilities(&status).ok_or_else(|| unreadable("no CapEff line".to_owned()))?;
    if mask & (1 << CAP_NET_ADMIN) == 0 {
        return Err(CapabilityError::MissingNetAdmin(mask));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_mask_decides() {
        let status = |eff: &str| {
            format!("Name:\tipvs-agent\nCapInh:\t0000000000000000\nCapPrm:\t{eff}\nCapEff:\t{eff}\nCapBnd:\t{eff}\n")
        };
        let cases = [
            ("0000000000001000", Some(0x1000)),
            ("0000000000003000", Some(0x3000)),
            ("000001ffffffffff", Some(0x1ff_ffff_ffff)),
            ("0000000000000000", Some(0)),
        ];
        for (eff, expected) in cases {
            assert_eq!(effective_capabilities(&status(eff)), expected, "{eff}");
        }
        assert_eq!(effective_capabilities("Name:\tx\n"), None);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("status");
        std::fs::write(&file, status("0000000000001000")).unwrap();
        require_net_admin(&file).unwrap();
        std::fs::write(&file, status("0000000000002000")).unwrap();
        let error = require_net_admin(&file).unwrap_err().to_string();
        assert!(error.contains("needs CAP_NET_ADMIN"), "{error}");
        assert!(error.contains("0x0000000000002000"), "{error}");
        let error = require_net_admin(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing"), "{error}");
    }
}
