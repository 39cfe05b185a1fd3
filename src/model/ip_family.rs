//! Which IP families the agent programs when `--ip-family` is not given:
//! chosen once at start from what the agent knows of its node, as
//! kube-proxy chooses (`cmd/kube-proxy/app/server.go` `detectNodeIPs`,
//! `server_linux.go` `platformCheckSupported`). Pure: the kernel's answer
//! is read by [`crate`]'s `system::ipv6` and passed in.
//!
//! - The primary family is that of the first explicit node address
//!   (`--node-ip`, else `bindAddress` unless unspecified), else of the
//!   Node object's first InternalIP, else IPv4 (kube-proxy's order; its
//!   fallback is 127.0.0.1, IPv4 too).
//! - Both families when the node has addresses of both (explicit and the
//!   Node's together) and the kernel has IPv6.
//! - The primary family alone otherwise.
//!
//! Where this differs from kube-proxy: kube-proxy runs dual-stack whenever
//! both families are supported (ip6tables present), even on a node with
//! no address of the second family. The agent also wants a node address
//! of the second family, because it programs more per family than
//! kube-proxy: NodePort virtual servers on every local address of each
//! family (kube-proxy's IPVS mode too, but it also keeps a whole second
//! set of ipsets and chains), and an `ip6` nftables table. A node without
//! any IPv6 node address gets no Service traffic over IPv6 either way
//! (the pods get no IPv6 addresses), so single-stack there changes
//! nothing a client sees and keeps the `ip6` table away. Like
//! kube-proxy, an IPv6 primary family on a kernel without IPv6 is refused
//! ([`FamilyChoice::primary_unsupported`]).

use std::net::IpAddr;

use super::node::is_ipv6_link_local;
use super::settings::IpFamilyMode;

/// The family choice and why, for the one log line at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FamilyChoice {
    /// What the agent programs.
    pub mode: IpFamilyMode,
    /// Whether the primary family is IPv6.
    pub primary_ipv6: bool,
    /// Whether the primary family is IPv6 and the kernel has no IPv6
    /// (kube-proxy: "no support for primary IP family"): the agent
    /// cannot run.
    pub primary_unsupported: bool,
    /// Why, in words.
    pub reason: &'static str,
}

/// The families to program: `explicit` are the node addresses given on
/// the command line (`--node-ip`, `bindAddress`), `node_object` the Node
/// object's InternalIPs (empty without a Node), `kernel_ipv6` whether the
/// kernel has IPv6 enabled in the agent's network namespace.
pub fn choose_ip_family(
    explicit: &[IpAddr],
    node_object: &[IpAddr],
    kernel_ipv6: bool,
) -> FamilyChoice {
    let known = || {
        explicit
            .iter()
            .chain(node_object)
            // Loopback and IPv6 link-local addresses do not make a family:
            // no pod or NodePort client reaches the node over them.
            .filter(|address| {
                !address.is_unspecified() && !address.is_loopback() && !is_ipv6_link_local(address)
            })
    };
    let primary_ipv6 = known().next().is_some_and(IpAddr::is_ipv6);
    let has_v4 = known().any(IpAddr::is_ipv4);
    let has_v6 = known().any(IpAddr::is_ipv6);
    let single = if primary_ipv6 {
        IpFamilyMode::Ipv6
    } else {
        IpFamilyMode::Ipv4
    };
    let (mode, reason) = match (has_v4 && has_v6, kernel_ipv6) {
        (true, true) => (
            IpFamilyMode::Dual,
            "the node has addresses of both families and the kernel has IPv6",
        ),
        (true, false) => (single, "the kernel has no IPv6: the primary family only"),
        (false, _) if !has_v4 && !has_v6 => (
            single,
            "no node address known (--node-ip, bindAddress, the Node's InternalIPs): IPv4",
        ),
        (false, _) => (single, "the node has addresses of one family only"),
    };
    FamilyChoice {
        mode,
        primary_ipv6,
        primary_unsupported: primary_ipv6 && !kernel_ipv6,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|text| text.parse().unwrap()).collect()
    }

    /// (what, explicit, the Node's, kernel IPv6, mode, primary IPv6,
    /// refused)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
        bool,
        IpFamilyMode,
        bool,
        bool,
    );

    #[test]
    fn families_are_chosen_as_kube_proxy_chooses_them() {
        use IpFamilyMode::{Dual, Ipv4, Ipv6};
        let cases: &[Case] = &[
            ("nothing known", &[], &[], true, Ipv4, false, false),
            (
                "a link-local or loopback IPv6 address is no family",
                &["192.168.50.11"],
                &["fe80::1", "::1"],
                true,
                Ipv4,
                false,
                false,
            ),
            (
                "nothing known, no IPv6",
                &[],
                &[],
                false,
                Ipv4,
                false,
                false,
            ),
            (
                "--node-ip of both",
                &["192.168.50.11", "fd00::11"],
                &[],
                true,
                Dual,
                false,
                false,
            ),
            (
                "--node-ip IPv6 first",
                &["fd00::11", "192.168.50.11"],
                &[],
                true,
                Dual,
                true,
                false,
            ),
            (
                "the Node's of both",
                &[],
                &["10.0.0.1", "fd00::1"],
                true,
                Dual,
                false,
                false,
            ),
            (
                "both, kernel without IPv6",
                &[],
                &["10.0.0.1", "fd00::1"],
                false,
                Ipv4,
                false,
                false,
            ),
            (
                "IPv6 first, kernel without IPv6: refused",
                &[],
                &["fd00::1", "10.0.0.1"],
                false,
                Ipv6,
                true,
                true,
            ),
            ("IPv4 only", &["10.0.0.1"], &[], true, Ipv4, false, false),
            ("IPv6 only", &[], &["fd00::1"], true, Ipv6, true, false),
            (
                "IPv6 only, kernel without IPv6: refused",
                &["fd00::1"],
                &[],
                false,
                Ipv6,
                true,
                true,
            ),
            (
                "bindAddress IPv4 is primary, the Node adds IPv6",
                &["10.0.0.1"],
                &["fd00::1"],
                true,
                Dual,
                false,
                false,
            ),
            (
                "bindAddress IPv6 overrides the Node's IPv4 primary",
                &["fd00::1"],
                &["10.0.0.1", "fd00::1"],
                true,
                Dual,
                true,
                false,
            ),
            (
                "unspecified addresses count for nothing",
                &["0.0.0.0"],
                &["::"],
                true,
                Ipv4,
                false,
                false,
            ),
        ];
        for (what, explicit, node, kernel_ipv6, mode, primary_ipv6, refused) in cases {
            let choice = choose_ip_family(&addresses(explicit), &addresses(node), *kernel_ipv6);
            assert_eq!(
                (choice.mode, choice.primary_ipv6, choice.primary_unsupported),
                (*mode, *primary_ipv6, *refused),
                "{what}: {choice:?}"
            );
        }
    }
}
