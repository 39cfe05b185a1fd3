//! Support for the real-kernel tests in `tests/`.
//!
//! These tests need a kernel with IPVS, which the build host does not have:
//! `integration/scripts/guest-tests.sh` boots a Debian kernel under QEMU
//! and runs the test binaries there with `IPVS_GUEST=1`. Run anywhere else,
//! every test fails at once and says so: none skips silently.

use std::process::Command;

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
