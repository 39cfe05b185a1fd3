//! A cgroup v2 group with a memory limit, to run a process under the
//! limit a Kubernetes container would have (the kubelet gives each
//! container a cgroup whose `memory.max` is its `resources.limits.memory`;
//! the kernel's OOM killer ends the process when it cannot reclaim below
//! it). Only the memory controller is used; the group is removed on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = "/sys/fs/cgroup";

/// One cgroup v2 group under `/sys/fs/cgroup`.
#[derive(Debug)]
pub struct MemoryGroup {
    path: PathBuf,
}

impl MemoryGroup {
    /// Creates (or empties and reuses) group `name` with `memory.max` =
    /// `limit_bytes` and no swap, mounting cgroup2 and enabling the memory
    /// controller for child groups first if needed. Fails the test when
    /// the kernel has no cgroup v2 memory controller.
    pub fn create(name: &str, limit_bytes: u64) -> MemoryGroup {
        let root = Path::new(ROOT);
        if !root.join("cgroup.controllers").exists() {
            let status = Command::new("mount")
                .args(["-t", "cgroup2", "cgroup2", ROOT])
                .status()
                .expect("run mount");
            assert!(status.success(), "mount -t cgroup2 on {ROOT} failed");
        }
        let controllers = read(&root.join("cgroup.controllers"));
        assert!(
            controllers.split_whitespace().any(|c| c == "memory"),
            "the cgroup v2 hierarchy has no memory controller: {controllers:?}"
        );
        if !read(&root.join("cgroup.subtree_control"))
            .split_whitespace()
            .any(|c| c == "memory")
        {
            write(&root.join("cgroup.subtree_control"), "+memory");
        }
        let path = root.join(name);
        if path.exists() {
            let _ = std::fs::remove_dir(&path);
        }
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        write(&path.join("memory.max"), &limit_bytes.to_string());
        if path.join("memory.swap.max").exists() {
            write(&path.join("memory.swap.max"), "0");
        }
        MemoryGroup { path }
    }

    /// The group's directory (its `cgroup.procs` takes a pid).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `memory.max` as the kernel holds it (rounded to pages).
    pub fn limit_bytes(&self) -> u64 {
        self.number("memory.max")
    }

    /// `memory.peak`: the most the group has been charged since it was
    /// created (anonymous memory, page cache and kernel memory).
    pub fn peak_bytes(&self) -> u64 {
        self.number("memory.peak")
    }

    /// `memory.current`.
    pub fn current_bytes(&self) -> u64 {
        self.number("memory.current")
    }

    /// `memory.events`: `max` (times the limit forced reclaim), `oom`,
    /// `oom_kill`, ...
    pub fn events(&self) -> BTreeMap<String, u64> {
        read(&self.path.join("memory.events"))
            .lines()
            .filter_map(|line| {
                let (key, value) = line.split_once(' ')?;
                Some((key.to_owned(), value.trim().parse().ok()?))
            })
            .collect()
    }

    fn number(&self, file: &str) -> u64 {
        let text = read(&self.path.join(file));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{file} of {}: {text:?}", self.path.display()))
    }
}

impl Drop for MemoryGroup {
    fn drop(&mut self) {
        // Only empty groups can be removed: whatever ran in it has been
        // stopped by its own guard by now, or the group is left behind.
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|error| panic!("write {value:?} to {}: {error}", path.display()));
}
