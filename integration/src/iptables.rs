//! iptables, ip6tables and ipset for the migration tests: loading rules and
//! sets (Debian's tools, as kube-proxy would have left them), reading them
//! back, and emptying every backend around a test.
//!
//! Both iptables backends are used side by side: [`BACKENDS`] names the
//! `-save`/`-restore` pair of each family and backend.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::pods::run;

/// One iptables front-end: `(save, restore)`.
pub type Backend = (&'static str, &'static str);

/// IPv4 on x_tables.
pub const LEGACY_V4: Backend = ("iptables-legacy-save", "iptables-legacy-restore");
/// IPv4 on nf_tables.
pub const NFT_V4: Backend = ("iptables-nft-save", "iptables-nft-restore");
/// IPv6 on x_tables.
pub const LEGACY_V6: Backend = ("ip6tables-legacy-save", "ip6tables-legacy-restore");
/// IPv6 on nf_tables.
pub const NFT_V6: Backend = ("ip6tables-nft-save", "ip6tables-nft-restore");
/// Every family and backend.
pub const BACKENDS: [Backend; 4] = [LEGACY_V4, NFT_V4, LEGACY_V6, NFT_V6];

fn feed(argv: &[&str], input: &str) {
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv.join(" ")));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("write to {}: {e}", argv.join(" ")));
    let output = child.wait_with_output().expect("wait for the tool");
    assert!(
        output.status.success(),
        "{} failed: {}\ninput:\n{input}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `RESTORE --noflush` with `rules` on stdin; fails the test if refused.
pub fn restore(backend: Backend, rules: &str) {
    feed(&[backend.1, "--noflush"], rules);
}

/// `SAVE` (every table that exists).
pub fn save(backend: Backend) -> String {
    run(&[backend.0])
}

/// The saved lines that carry state, each prefixed with its table:
/// `nat :KUBE-SERVICES` for a chain, `nat -A PREROUTING ...` for a rule
/// (comments, counters and `COMMIT` left out).
pub fn state_lines(saved: &str) -> BTreeSet<String> {
    let mut table = String::new();
    let mut lines = BTreeSet::new();
    for line in saved.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.to_owned();
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split_whitespace().next().unwrap_or("");
            lines.insert(format!("{table} :{name}"));
        } else if line.starts_with("-A ") {
            lines.insert(format!("{table} {line}"));
        }
    }
    lines
}

/// The chains of `table` in a save.
pub fn chains(saved: &str, table: &str) -> BTreeSet<String> {
    let prefix = format!("{table} :");
    state_lines(saved)
        .into_iter()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// `ipset restore` with `sets` on stdin.
pub fn ipset_restore(sets: &str) {
    feed(&["ipset", "restore"], sets);
}

/// The names of every set (`ipset list -name`).
pub fn ipset_names() -> BTreeSet<String> {
    run(&["ipset", "list", "-name"])
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Empties `nat`, `filter` and `mangle` of every backend (rules and user
/// chains, policies back to ACCEPT) and destroys every set.
pub fn reset_netfilter() {
    let empty = ["nat", "filter", "mangle"]
        .map(|table| format!("*{table}\n-F\n-X\nCOMMIT\n"))
        .concat();
    for backend in BACKENDS {
        restore(backend, &empty);
        let policies = ["INPUT", "FORWARD", "OUTPUT"]
            .map(|chain| format!(":{chain} ACCEPT [0:0]\n"))
            .concat();
        restore(backend, &format!("*filter\n{policies}COMMIT\n"));
    }
    run(&["ipset", "destroy"]);
}

/// Empties every backend and set when dropped (also when a test fails), so
/// the tests after it in the same guest find netfilter as the kernel left
/// it.
#[derive(Debug)]
pub struct NetfilterReset;

impl Drop for NetfilterReset {
    fn drop(&mut self) {
        let empty = ["nat", "filter", "mangle"]
            .map(|table| format!("*{table}\n-F\n-X\nCOMMIT\n"))
            .concat();
        for backend in BACKENDS {
            let _ = Command::new(backend.1)
                .arg("--noflush")
                .stdin(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    if let Some(mut stdin) = child.stdin.take() {
                        let _ = stdin.write_all(empty.as_bytes());
                    }
                    child.wait()
                });
        }
        let _ = Command::new("ipset").arg("destroy").status();
    }
}
