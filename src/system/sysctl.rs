//! The kernel settings kube-proxy's IPVS mode sets (its `NewProxier`),
//! and nothing else:
//!
//! - `net/ipv4/vs/conntrack = 1`: IPVS connections go through conntrack,
//!   so masqueraded replies and source NAT work;
//! - `net/ipv4/vs/conn_reuse_mode = 0` on kernels 4.1 to 5.8 only (older
//!   ones lack it; from 5.9 its default no longer drops packets on port
//!   reuse, and kube-proxy leaves it alone);
//! - `net/ipv4/vs/expire_nodest_conn = 1`: connections to a deleted real
//!   server are dropped at once rather than hanging;
//! - `net/ipv4/vs/expire_quiescent_template = 1`: persistence templates to
//!   a weight-0 real server expire, so affinity moves away from it;
//! - `net/ipv4/ip_forward = 1`;
//! - with `--ipvs-strict-arp`: `net/ipv4/conf/all/arp_ignore = 1` and
//!   `net/ipv4/conf/all/arp_announce = 2`, so the node does not answer
//!   ARP for the VIPs on `kube-ipvs0` (needed with MetalLB in L2 mode).
//!
//! [`wanted_sysctls`] (pure) decides; [`apply_sysctls`] writes only the
//! values that differ.

use std::path::{Path, PathBuf};

/// What decides the sysctls beside the kernel version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SysctlSettings {
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
}

/// A sysctl path (relative to `/proc/sys`) and the value it must hold.
pub type Sysctl = (&'static str, &'static str);

/// A sysctl that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("sysctl {path}: {source}")]
pub struct SysctlError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// `(major, minor)` of a kernel release such as `6.1.0-56-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The sysctls to hold on a kernel of `release`.
pub fn wanted_sysctls(release: &str, settings: &SysctlSettings) -> Vec<Sysctl> {
    let mut wanted = vec![("net/ipv4/vs/conntrack", "1")];
    if let Some(version) = kernel_version(release) {
        if ((4, 1)..(5, 9)).contains(&version) {
            wanted.push(("net/ipv4/vs/conn_reuse_mode", "0"));
        }
    }
    wanted.extend([
        ("net/ipv4/vs/expire_nodest_conn", "1"),
        ("net/ipv4/vs/expire_quiescent_template", "1"),
        ("net/ipv4/ip_forward", "1"),
    ]);
    if settings.strict_arp {
        wanted.extend([
            ("net/ipv4/conf/all/arp_ignore", "1"),
            ("net/ipv4/conf/all/arp_announce", "2"),
        ]);
    }
    wanted
}

/// Writes the `wanted` sysctls under `root` (`/proc/sys`) whose value
/// differs; returns those it changed.
pub fn apply_sysctls(root: &Path, wanted: &[Sysctl]) -> Result<Vec<Sysctl>, SysctlError> {
    let mut changed = Vec::new();
    for (name, value) in wanted {
        let path = root.join(name);
        let error = |source| SysctlError {
            path: path.clone(),
            source,
        };
        let current = std::fs::read_to_string(&path).map_err(error)?;
        if current.trim() != *value {
            std::fs::write(&path, format!("{value}\n")).map_err(error)?;
            changed.push((*name, *value));
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_parse() {
        let cases = [
            ("6.1.0-56-amd64", Some((6, 1))),
            ("5.4.0", Some((5, 4))),
            ("4.19.0-foo", Some((4, 19))),
            ("5.10", Some((5, 10))),
            ("garbage", None),
            ("6", None),
        ];
        for (release, expected) in cases {
            assert_eq!(kernel_version(release), expected, "{release}");
        }
    }

    #[test]
    fn conn_reuse_mode_only_on_4_1_to_5_8_and_strict_arp_only_when_asked() {
        let names = |release: &str, strict_arp: bool| -> Vec<&'static str> {
            wanted_sysctls(release, &SysctlSettings { strict_arp })
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        let base = vec![
            "net/ipv4/vs/conntrack",
            "net/ipv4/vs/expire_nodest_conn",
            "net/ipv4/vs/expire_quiescent_template",
            "net/ipv4/ip_forward",
        ];
        assert_eq!(names("6.1.0-56-amd64", false), base);
        assert_eq!(names("5.9.0", false), base);
        assert_eq!(names("4.0.9", false), base);
        for release in ["4.1.0", "4.19.0-foo", "5.8.18"] {
            assert!(
                names(release, false).contains(&"net/ipv4/vs/conn_reuse_mode"),
                "{release}"
            );
        }
        let strict = names("6.1.0", true);
        assert!(strict.contains(&"net/ipv4/conf/all/arp_ignore"));
        assert!(strict.contains(&"net/ipv4/conf/all/arp_announce"));
    }

    #[test]
    fn only_differing_values_are_written() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net/ipv4/vs")).unwrap();
        std::fs::write(root.path().join("net/ipv4/vs/conntrack"), "0\n").unwrap();
        std::fs::write(root.path().join("net/ipv4/ip_forward"), "1\n").unwrap();
        let wanted = [("net/ipv4/vs/conntrack", "1"), ("net/ipv4/ip_forward", "1")];
        assert_eq!(
            apply_sysctls(root.path(), &wanted).unwrap(),
            vec![("net/ipv4/vs/conntrack", "1")]
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("net/ipv4/vs/conntrack")).unwrap(),
            "1\n"
        );
        assert!(apply_sysctls(root.path(), &wanted).unwrap().is_empty());
        let missing = apply_sysctls(root.path(), &[("net/ipv4/vs/missing", "1")]).unwrap_err();
        assert!(
            missing.to_string().contains("net/ipv4/vs/missing"),
            "{missing}"
        );
    }
}
