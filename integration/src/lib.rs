//! Support for the real-kernel tests in `tests/`.
//!
//! These tests need a kernel with IPVS, which the build host does not have:
//! `integration/scripts/guest-tests.sh` boots a Debian kernel under QEMU
//! and runs the test binaries there with `IPVS_GUEST=1`. Run anywhere else,
//! every test fails at once and says so: none skips silently.

use std::process::Command;

pub mod agent;
pub mod bulk;
pub mod capture;
pub mod cgroup;
pub mod cluster;
pub mod iptables;
pub mod node;
pub mod pods;
pub mod raw;
pub mod standin;

use netlink_ipvs::{new_connection, IpvsHandle};

/// Fails the test unless it runs in the guest with IPVS available.
pub fn require_guest() {
    assert_eq!(
        std::env::var("IPVS_GUEST").as_deref(),
        Ok("1"),
        "this test needs the real-kernel guest: run integration/scripts/guest-tests.sh \
         (IPVS_GUEST=1 is not set)"
    );
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        let loaded = Command::new("modprobe").arg("ip_vs").status();
        assert!(
            loaded.map(|s| s.success()).unwrap_or(false),
            "IPVS is missing in this kernel: /proc/net/ip_vs does not exist and `modprobe ip_vs` failed"
        );
    }
}

/// A file of the repository's `examples/` (the Service document's
/// examples as manifests).
pub fn example(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ is inside the workspace")
        .join("examples")
        .join(name)
}

/// Runs `ipvsadm` with `args`, fails the test if it fails, returns stdout.
pub fn ipvsadm(args: &[&str]) -> String {
    let output = Command::new("ipvsadm")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ipvsadm (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "ipvsadm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("ipvsadm prints UTF-8")
}

/// Runs `ipvsadm -R` with `rules` on stdin.
pub fn ipvsadm_restore(rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ipvsadm")
        .arg("-R")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ipvsadm -R: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(rules.as_bytes())
        .expect("write rules to ipvsadm -R");
    let status = child.wait().expect("wait for ipvsadm -R");
    assert!(status.success(), "ipvsadm -R failed");
}

/// Empties the kernel table (tests run one at a time in the guest).
pub fn clear_table() {
    ipvsadm(&["-C"]);
}

/// Opens a client connection on the current tokio runtime.
pub fn connect() -> IpvsHandle {
    let (connection, handle) = new_connection().expect("open an IPVS netlink connection");
    tokio::spawn(connection);
    handle
}

/// A synthetic table of `services` TCP services with `destinations` masquerading
/// real servers each, as the batch operations that create it. Addresses stay
/// inside 10.0.0.0/8 (ipvsadm's sort wraps for addresses 2^31 apart).
pub fn synthetic_table(services: usize, destinations: usize) -> Vec<netlink_ipvs::IpvsOperation> {
    use netlink_ipvs::{
        IpvsDestination, IpvsForwardingMethod, IpvsOperation, IpvsService, IpvsServiceKey,
    };
    use std::net::{IpAddr, Ipv4Addr};
    let mut operations = Vec::with_capacity(services * (destinations + 1));
    for s in 0..services {
        let vip = Ipv4Addr::from(0x0a60_0000u32 + s as u32); // 10.96.0.0 + s
        let key = IpvsServiceKey::tcp(IpAddr::V4(vip), 80);
        operations.push(IpvsOperation::AddService(IpvsService::new(key, "rr")));
        for d in 0..destinations {
            let rip = Ipv4Addr::from(0x0af4_0000u32 + (s * destinations + d) as u32); // 10.244.0.0 + n
            operations.push(IpvsOperation::AddDestination(
                key,
                IpvsDestination::new(IpAddr::V4(rip), 8080, IpvsForwardingMethod::Masquerade, 1),
            ));
        }
    }
    operations
}

/// The `ipvsadm -R` input that creates the same table as `operations`.
pub fn restore_rules(operations: &[netlink_ipvs::IpvsOperation]) -> String {
    use netlink_ipvs::IpvsOperation;
    use std::fmt::Write;
    let mut rules = String::new();
    for operation in operations {
        match operation {
            IpvsOperation::AddService(service) => {
                let _ = writeln!(
                    rules,
                    "-A {} -s {}",
                    service_option(&service.key),
                    service.scheduler
                );
            }
            IpvsOperation::AddDestination(key, destination) => {
                let _ = writeln!(
                    rules,
                    "-a {} -r {} -m -w {}",
                    service_option(key),
                    destination.key,
                    destination.weight
                );
            }
            other => panic!("restore_rules supports adds only, not {other}"),
        }
    }
    rules
}

fn service_option(key: &netlink_ipvs::IpvsServiceKey) -> String {
    use netlink_ipvs::{IpvsProtocol, IpvsServiceKey};
    match key {
        IpvsServiceKey::Inet {
            protocol,
            address,
            port,
        } => {
            let flag = match protocol {
                IpvsProtocol::Udp => "-u",
                IpvsProtocol::Sctp => "--sctp-service",
                _ => "-t",
            };
            match address {
                std::net::IpAddr::V6(v6) => format!("{flag} [{v6}]:{port}"),
                std::net::IpAddr::V4(v4) => format!("{flag} {v4}:{port}"),
            }
        }
        IpvsServiceKey::Fwmark { mark, .. } => format!("-f {mark}"),
    }
}

/// The IPVS generic netlink family id of this kernel.
pub fn ipvs_family_id() -> u16 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let _context = runtime.enter();
    let (_connection, handle) = new_connection().expect("resolve the IPVS family");
    handle.family_id()
}
