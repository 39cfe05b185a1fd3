//! The agent as a process, for end-to-end tests in the guest: starts the
//! host-built `ipvs-agent` binary, keeps its log in a file and reads the
//! `synced` lines it logs after every sync (what it sent, by kind).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static NEXT_LOG: AtomicUsize = AtomicUsize::new(0);

/// A workspace binary built beside the test binaries
/// (`target/<profile>/NAME`; guest-tests.sh builds them): fails the test,
/// naming the package to build, when it is missing.
pub fn workspace_binary(name: &str) -> PathBuf {
    let own_binary = std::env::current_exe().expect("the running binary's path");
    // Test binaries live in target/<profile>/deps, binaries (benchmarks)
    // in target/<profile>.
    let own_dir = own_binary.parent().expect("a binary lives in a folder");
    let profile_dir = if own_dir.ends_with("deps") {
        own_dir
            .parent()
            .expect("target/<profile>/deps has a parent")
    } else {
        own_dir
    };
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo build -p {name} --bins)",
        binary.display()
    );
    binary
}

/// The `ipvs-agent` binary built beside the test binaries.
pub fn agent_binary() -> PathBuf {
    workspace_binary("ipvs-agent")
}

/// The release `ipvs-agent` (`target/release/ipvs-agent`, what a
/// DaemonSet ships; guest-tests.sh builds it): fails the test when it is
/// missing.
pub fn release_agent_binary() -> PathBuf {
    let debug = agent_binary();
    let target = debug
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/ipvs-agent");
    let binary = target.join("release").join("ipvs-agent");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo build --release -p ipvs-agent --bins)",
        binary.display()
    );
    binary
}

/// A KiB field (`VmRSS`, `VmHWM`) of `/proc/PID/status`; 0 when the
/// process or the field is gone.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let prefix = format!("{field}:");
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One `synced` log line: its fields (`kind`, `writes`, `add_service`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLine {
    /// Field name to value, quotes removed.
    pub fields: BTreeMap<String, String>,
}

impl SyncLine {
    /// `full`, `incremental` or `drain`.
    pub fn kind(&self) -> &str {
        self.fields.get("kind").map(String::as_str).unwrap_or("")
    }

    /// A numeric field (0 when absent).
    pub fn count(&self, field: &str) -> u64 {
        self.fields
            .get(field)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    }

    /// A decimal field (`duration_ms`; NaN when absent).
    pub fn count_f64(&self, field: &str) -> f64 {
        self.fields
            .get(field)
            .and_then(|value| value.parse().ok())
            .unwrap_or(f64::NAN)
    }

    /// Every write message this sync sent.
    pub fn writes(&self) -> u64 {
        self.count("writes")
    }
}

/// The fields of a `synced` log line (`None`: not one).
pub fn parse_sync_line(line: &str) -> Option<SyncLine> {
    let at = line.find(" synced")?;
    let mut fields = BTreeMap::new();
    for token in line[at + " synced".len()..].split_whitespace() {
        if let Some((key, value)) = token.split_once('=') {
            fields.insert(key.to_owned(), value.trim_matches('"').to_owned());
        }
    }
    Some(SyncLine { fields })
}

/// A running `ipvs-agent`.
#[derive(Debug)]
pub struct Agent {
    child: Option<Child>,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
}

impl Agent {
    /// Starts `ipvs-agent ARGS...` with its log in a fresh file.
    pub fn start(args: &[&str]) -> Agent {
        let mut command = Command::new(agent_binary());
        command.args(args);
        Agent::spawn(command)
    }

    /// Starts `BINARY ARGS...` (an `ipvs-agent`) inside the cgroup v2
    /// group `cgroup` from its first instruction: a shell moves itself
    /// into the group, then execs the agent (same pid), so every page the
    /// agent and its children (`nft`) touch is charged to the group, as
    /// in a container.
    pub fn start_in_cgroup(binary: &Path, cgroup: &Path, args: &[&str]) -> Agent {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(cgroup)
            .arg(binary)
            .args(args);
        Agent::spawn(command)
    }

    fn spawn(mut command: Command) -> Agent {
        let log = std::env::temp_dir().join(format!(
            "ipvs-agent-{}-{}.log",
            std::process::id(),
            NEXT_LOG.fetch_add(1, Ordering::SeqCst)
        ));
        let file = std::fs::File::create(&log).expect("create the agent's log file");
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ipvs-agent");
        Agent {
            child: Some(child),
            log,
        }
    }

    /// The agent's exit status, once it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// The agent's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every `synced` line so far.
    pub fn syncs(&self) -> Vec<SyncLine> {
        self.log_text()
            .lines()
            .filter_map(parse_sync_line)
            .collect()
    }

    /// Every `event_to_ack_ms` the agent logged (one per "network
    /// programmed" line), in order.
    pub fn event_to_ack_ms(&self) -> Vec<f64> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                let value = line.split("event_to_ack_ms=").nth(1)?;
                value.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    /// Waits until at least `count` sync lines are logged; returns them all.
    pub fn wait_for_syncs(&mut self, count: usize, timeout: Duration) -> Vec<SyncLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let syncs = self.syncs();
            if syncs.len() >= count {
                return syncs;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("ipvs-agent exited ({status}); log:\n{}", self.log_text());
                }
            }
            assert!(
                Instant::now() < deadline,
                "ipvs-agent logged {} syncs, not {count}, within {timeout:?}; log:\n{}",
                syncs.len(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends SIGTERM and waits for the agent to exit; fails if it does not
    /// exit cleanly.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let status = child.wait().expect("wait for ipvs-agent");
            assert!(
                status.success(),
                "ipvs-agent exited with {status}; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Kills the agent at once (`kill -9`).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_lines_are_read_from_the_log() {
        let line = "2026-11-25T05:00:00.000000Z  INFO ipvs_agent::engine::report: synced kind=\"incremental\" services=1 writes=2 add_service=0 add_real_server=1 delete_real_server=1 duration_ms=1.5";
        let sync = parse_sync_line(line).expect("a sync line");
        assert_eq!(sync.kind(), "incremental");
        assert_eq!(
            (
                sync.writes(),
                sync.count("add_real_server"),
                sync.count("edit_service")
            ),
            (2, 1, 0)
        );
        assert!(
            parse_sync_line("INFO ipvs_agent::driver: set net/ipv4/vs/conntrack = 1").is_none()
        );
    }
}
