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
//!
//! Every sysctl here is a `net.*` one, written under a net sysctl tree
//! given by `--proc-sys-net` (default [`PROC_SYS_NET`]): in a container
//! the runtime mounts `/proc/sys` read-only, so the DaemonSet mounts the
//! host's `/proc/sys/net` read-write elsewhere (`/host/proc/sys/net`) and
//! points the flag there. The kernel lets a writer with CAP_NET_ADMIN in
//! the network namespace's user namespace write them (`net/sysctl_net.c`,
//! `net_ctl_permissions`), and the tree is that of the writer's network
//! namespace, whichever procfs it is reached through.
//!
//! And kube-proxy's conntrack settings (`--conntrack-*`, the `conntrack:`
//! block; `pkg/proxy/conntrack/sysctls.go`, `setSysctls`, read at
//! kubernetes/kubernetes commit 3520f8d6): [`wanted_conntrack_sysctls`]
//! (pure) and [`apply_sysctl_values`], which tries each and reports each.
//! Where the agent differs: a sysctl that cannot be written is logged and
//! the others are still set (kube-proxy v1.29 on fails to start; older
//! ones only tolerated a read-only `/sys` for the hashsize). In a network
//! namespace other than the host's, `nf_conntrack_max` is read-only and
//! the hashsize is the host's, so an agent there logs them and goes on;
//! the CPU count is the CPUs the agent may run on
//! (`available_parallelism`; kube-proxy counts the machine's from `/sys`).

use std::path::{Path, PathBuf};

/// What decides the sysctls beside the kernel version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SysctlSettings {
    /// `--ipvs-strict-arp`.
    pub strict_arp: bool,
}

/// A sysctl path (relative to `/proc/sys`, so `net/...`) and the value it
/// must hold.
pub type Sysctl = (&'static str, &'static str);

/// Where the net sysctls are when `--proc-sys-net` is not given.
pub const PROC_SYS_NET: &str = "/proc/sys/net";

/// A file every net sysctl tree has (IPv4 cannot be compiled out).
const NET_TREE_MARKER: &str = "ipv4/ip_forward";

/// The file of `name` (`net/ipv4/ip_forward`, as under `/proc/sys`) in
/// the net sysctl tree at `net_root` (`/proc/sys/net` or where the host's
/// is mounted).
pub fn net_sysctl_path(net_root: &Path, name: &str) -> PathBuf {
    match name.strip_prefix("net/") {
        Some(rest) => net_root.join(rest),
        // Only net sysctls are written; anything else stays in /proc/sys.
        None => Path::new("/proc/sys").join(name),
    }
}

/// `--proc-sys-net` is not a net sysctl tree.
#[derive(Debug, thiserror::Error)]
#[error("--proc-sys-net {}: not a net sysctl tree ({marker}: {source}); give the host's /proc/sys/net or where it is mounted (deploy/README.md, Privileges)", .path.display(), marker = .path.join(NET_TREE_MARKER).display())]
pub struct NetSysctlRootError {
    /// The path given.
    pub path: PathBuf,
    /// Why its marker file could not be read.
    #[source]
    pub source: std::io::Error,
}

/// Checks that `net_root` is a net sysctl tree (its `ipv4/ip_forward`
/// reads); whether it is writable shows when the sysctls are set.
pub fn check_net_sysctl_root(net_root: &Path) -> Result<(), NetSysctlRootError> {
    std::fs::read_to_string(net_root.join(NET_TREE_MARKER))
        .map(drop)
        .map_err(|source| NetSysctlRootError {
            path: net_root.to_path_buf(),
            source,
        })
}

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

/// kube-proxy's conntrack settings (its `KubeProxyConntrackConfiguration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConntrackSysctls {
    /// `--conntrack-max-per-core` (0: leave `nf_conntrack_max` alone).
    pub max_per_core: u32,
    /// `--conntrack-min`: the floor of `nf_conntrack_max`.
    pub min: u32,
    /// `--conntrack-tcp-timeout-established` (0: leave it).
    pub tcp_established_timeout: std::time::Duration,
    /// `--conntrack-tcp-timeout-close-wait` (0: leave it).
    pub tcp_close_wait_timeout: std::time::Duration,
    /// `--conntrack-tcp-be-liberal` (false: leave it).
    pub tcp_be_liberal: bool,
    /// `--conntrack-udp-timeout` (0: leave it).
    pub udp_timeout: std::time::Duration,
    /// `--conntrack-udp-timeout-stream` (0: leave it).
    pub udp_stream_timeout: std::time::Duration,
}

impl Default for ConntrackSysctls {
    /// kube-proxy's defaults.
    fn default() -> Self {
        Self {
            max_per_core: 32 * 1024,
            min: 128 * 1024,
            tcp_established_timeout: std::time::Duration::from_secs(24 * 3600),
            tcp_close_wait_timeout: std::time::Duration::from_secs(3600),
            tcp_be_liberal: false,
            udp_timeout: std::time::Duration::ZERO,
            udp_stream_timeout: std::time::Duration::ZERO,
        }
    }
}

/// `nf_conntrack_max`'s path under `/proc/sys`.
pub const CONNTRACK_MAX: &str = "net/netfilter/nf_conntrack_max";

/// The conntrack hashsize, under `/sys` (global to the host).
pub const CONNTRACK_HASHSIZE: &str = "/sys/module/nf_conntrack/parameters/hashsize";

/// `nf_conntrack_max` as kube-proxy computes it: `max_per_core * cpus`,
/// at least `min`; `None` when `max_per_core` is 0.
pub fn conntrack_max(settings: &ConntrackSysctls, cpus: u32) -> Option<u32> {
    (settings.max_per_core > 0)
        .then(|| settings.max_per_core.saturating_mul(cpus).max(settings.min))
}

/// The conntrack sysctls to hold (paths under `/proc/sys`), in
/// kube-proxy's order.
pub fn wanted_conntrack_sysctls(
    settings: &ConntrackSysctls,
    cpus: u32,
) -> Vec<(&'static str, String)> {
    let mut wanted = Vec::new();
    if let Some(max) = conntrack_max(settings, cpus) {
        wanted.push((CONNTRACK_MAX, max.to_string()));
    }
    let seconds = |duration: std::time::Duration| duration.as_secs().to_string();
    for (name, duration) in [
        (
            "net/netfilter/nf_conntrack_tcp_timeout_established",
            settings.tcp_established_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
            settings.tcp_close_wait_timeout,
        ),
    ] {
        if !duration.is_zero() {
            wanted.push((name, seconds(duration)));
        }
    }
    if settings.tcp_be_liberal {
        wanted.push(("net/netfilter/nf_conntrack_tcp_be_liberal", "1".to_owned()));
    }
    for (name, duration) in [
        (
            "net/netfilter/nf_conntrack_udp_timeout",
            settings.udp_timeout,
        ),
        (
            "net/netfilter/nf_conntrack_udp_timeout_stream",
            settings.udp_stream_timeout,
        ),
    ] {
        if !duration.is_zero() {
            wanted.push((name, seconds(duration)));
        }
    }
    wanted
}

/// The hashsize to write when `max` needs a bigger one than `current`
/// (kube-proxy: at least a quarter of `nf_conntrack_max`).
pub fn wanted_hashsize(max: u32, current: u32) -> Option<u32> {
    (current < max / 4).then_some(max / 4)
}

/// Writes each of `wanted` in the net sysctl tree `net_root` whose value
/// differs; one result per sysctl, in order (`Ok(true)`: changed), so
/// that one that cannot be written does not keep the others from being
/// set.
pub fn apply_sysctl_values(
    net_root: &Path,
    wanted: &[(&'static str, String)],
) -> Vec<Result<bool, SysctlError>> {
    wanted
        .iter()
        .map(|(name, value)| write_if_different(&net_sysctl_path(net_root, name), value))
        .collect()
}

/// Writes `value` to `path` unless it holds it already; `Ok(true)`:
/// written.
pub fn write_if_different(path: &Path, value: &str) -> Result<bool, SysctlError> {
    let error = |source| SysctlError {
        path: path.to_path_buf(),
        source,
    };
    let current = std::fs::read_to_string(path).map_err(error)?;
    if current.trim() == value {
        return Ok(false);
    }
    std::fs::write(path, format!("{value}\n")).map_err(error)?;
    Ok(true)
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

/// Writes the `wanted` sysctls in the net sysctl tree `net_root`
/// (`/proc/sys/net`) whose value differs; returns those it changed.
pub fn apply_sysctls(net_root: &Path, wanted: &[Sysctl]) -> Result<Vec<Sysctl>, SysctlError> {
    let mut changed = Vec::new();
    for (name, value) in wanted {
        let path = net_sysctl_path(net_root, name);
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
    fn conntrack_sysctls_follow_kube_proxy() {
        let defaults = ConntrackSysctls::default();
        let cases = [
            (
                "defaults on 2 CPUs: the floor wins",
                defaults,
                2,
                vec![
                    (CONNTRACK_MAX, "131072"),
                    (
                        "net/netfilter/nf_conntrack_tcp_timeout_established",
                        "86400",
                    ),
                    ("net/netfilter/nf_conntrack_tcp_timeout_close_wait", "3600"),
                ],
            ),
            (
                "defaults on 8 CPUs: scaled",
                defaults,
                8,
                vec![
                    (CONNTRACK_MAX, "262144"),
                    (
                        "net/netfilter/nf_conntrack_tcp_timeout_established",
                        "86400",
                    ),
                    ("net/netfilter/nf_conntrack_tcp_timeout_close_wait", "3600"),
                ],
            ),
            (
                "max-per-core 0 leaves the max; zero timeouts leave them",
                ConntrackSysctls {
                    max_per_core: 0,
                    tcp_established_timeout: std::time::Duration::ZERO,
                    tcp_close_wait_timeout: std::time::Duration::ZERO,
                    ..defaults
                },
                8,
                vec![],
            ),
            (
                "be-liberal and the UDP timeouts only when set",
                ConntrackSysctls {
                    max_per_core: 0,
                    tcp_established_timeout: std::time::Duration::ZERO,
                    tcp_close_wait_timeout: std::time::Duration::ZERO,
                    tcp_be_liberal: true,
                    udp_timeout: std::time::Duration::from_secs(45),
                    udp_stream_timeout: std::time::Duration::from_secs(150),
                    ..defaults
                },
                8,
                vec![
                    ("net/netfilter/nf_conntrack_tcp_be_liberal", "1"),
                    ("net/netfilter/nf_conntrack_udp_timeout", "45"),
                    ("net/netfilter/nf_conntrack_udp_timeout_stream", "150"),
                ],
            ),
        ];
        for (name, settings, cpus, expected) in cases {
            let expected: Vec<(&str, String)> = expected
                .into_iter()
                .map(|(path, value)| (path, value.to_owned()))
                .collect();
            assert_eq!(
                wanted_conntrack_sysctls(&settings, cpus),
                expected,
                "{name}"
            );
        }
        assert_eq!(wanted_hashsize(262144, 65536), None);
        assert_eq!(wanted_hashsize(262144, 16384), Some(65536));
    }

    #[test]
    fn a_conntrack_sysctl_that_cannot_be_written_does_not_stop_the_others() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net/netfilter")).unwrap();
        std::fs::write(
            root.path().join("net/netfilter/nf_conntrack_udp_timeout"),
            "30\n",
        )
        .unwrap();
        let wanted = [
            (CONNTRACK_MAX, "131072".to_owned()),
            ("net/netfilter/nf_conntrack_udp_timeout", "45".to_owned()),
        ];
        let results = apply_sysctl_values(&root.path().join("net"), &wanted);
        let missing = results[0].as_ref().unwrap_err();
        assert!(
            missing.to_string().contains("nf_conntrack_max"),
            "{missing}"
        );
        assert!(results[1].as_ref().unwrap());
        assert_eq!(
            std::fs::read_to_string(root.path().join("net/netfilter/nf_conntrack_udp_timeout"))
                .unwrap(),
            "45\n"
        );
    }

    #[test]
    fn only_differing_values_are_written() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net/ipv4/vs")).unwrap();
        std::fs::write(root.path().join("net/ipv4/vs/conntrack"), "0\n").unwrap();
        std::fs::write(root.path().join("net/ipv4/ip_forward"), "1\n").unwrap();
        let wanted = [("net/ipv4/vs/conntrack", "1"), ("net/ipv4/ip_forward", "1")];
        let net = root.path().join("net");
        assert_eq!(
            apply_sysctls(&net, &wanted).unwrap(),
            vec![("net/ipv4/vs/conntrack", "1")]
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("net/ipv4/vs/conntrack")).unwrap(),
            "1\n"
        );
        assert!(apply_sysctls(&net, &wanted).unwrap().is_empty());
        let missing = apply_sysctls(&net, &[("net/ipv4/vs/missing", "1")]).unwrap_err();
        assert!(
            missing.to_string().contains("net/ipv4/vs/missing"),
            "{missing}"
        );
    }

    #[test]
    fn the_net_sysctl_root_must_be_a_net_tree() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            net_sysctl_path(Path::new("/host/proc/sys/net"), "net/ipv4/vs/conntrack"),
            Path::new("/host/proc/sys/net/ipv4/vs/conntrack")
        );
        let error = check_net_sysctl_root(root.path()).unwrap_err().to_string();
        assert!(error.starts_with("--proc-sys-net "), "{error}");
        assert!(error.contains("not a net sysctl tree"), "{error}");
        assert!(error.contains("ipv4/ip_forward"), "{error}");
        std::fs::create_dir_all(root.path().join("ipv4")).unwrap();
        std::fs::write(root.path().join("ipv4/ip_forward"), "1\n").unwrap();
        check_net_sysctl_root(root.path()).unwrap();
    }
}
