//! The `process_*` metrics kube-proxy exports through Prometheus' Go
//! client (its process collector, read from procfs), read from
//! `/proc/self` at each scrape and rendered as text after the registered
//! metrics: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_start_time_seconds`,
//! `process_open_fds`, `process_max_fds`, with the Go client's help
//! texts. kubernetes-mixin's kube-proxy panels read the CPU and memory
//! ones.
//!
//! No crate: the six values are four small files, and reading them needs
//! no `unsafe` (`sysconf` would): CPU times are in `USER_HZ` ticks, which
//! Linux fixes at 100 for user space; the resident size is `VmRSS` of
//! `status` (the `rss` pages of `stat` times the page size).

use std::fmt::Write as _;
use std::path::Path;

/// Linux's `USER_HZ`: the unit of the times in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says of the process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_bytes: u64,
    /// Start time, Unix seconds.
    pub start_time_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
}

/// The fields of `/proc/<pid>/stat` this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    /// `utime` + `stime`, ticks.
    pub cpu_ticks: u64,
    /// `starttime`: ticks after boot.
    pub start_ticks: u64,
    /// `vsize`, bytes.
    pub virtual_bytes: u64,
}

/// Parses `/proc/<pid>/stat` (the command name, in parentheses, may hold
/// spaces and parentheses: fields are counted after the last `)`).
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let after_name = &text[text.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(StatFields {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
    })
}

/// `btime` of `/proc/stat`: the boot time, Unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// `VmRSS` of `/proc/<pid>/status`, bytes.
pub fn parse_resident_bytes(text: &str) -> Option<u64> {
    let value = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = value.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
pub fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

/// Reads the process's statistics from `proc` (`/proc/self`) and
/// `proc_stat` (`/proc/stat`); what cannot be read is 0.
pub fn read(proc: &Path, proc_stat: &Path) -> ProcessStats {
    let read = |name: &str| std::fs::read_to_string(proc.join(name)).unwrap_or_default();
    let stat = parse_stat(&read("stat"));
    let boot = std::fs::read_to_string(proc_stat)
        .ok()
        .and_then(|text| parse_boot_time(&text));
    let open_fds = std::fs::read_dir(proc.join("fd")).map_or(0, |dir| dir.count() as u64);
    ProcessStats {
        cpu_seconds: stat.map_or(0.0, |stat| stat.cpu_ticks as f64 / USER_HZ),
        resident_bytes: parse_resident_bytes(&read("status")).unwrap_or(0),
        virtual_bytes: stat.map_or(0, |stat| stat.virtual_bytes),
        start_time_seconds: match (stat, boot) {
            (Some(stat), Some(boot)) => boot as f64 + stat.start_ticks as f64 / USER_HZ,
            _ => 0.0,
        },
        open_fds,
        max_fds: parse_max_fds(&read("limits")).unwrap_or(0),
    }
}

/// The statistics in Prometheus text format, as the Go client writes them.
pub fn render(stats: &ProcessStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stats.cpu_seconds.to_string(),
    );
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        stats.max_fds.to_string(),
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        stats.open_fds.to_string(),
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        stats.resident_bytes.to_string(),
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        stats.start_time_seconds.to_string(),
    );
    metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        stats.virtual_bytes.to_string(),
    );
    out
}

/// The `process_*` metrics of this process, as text.
pub fn render_self() -> String {
    render(&read(Path::new("/proc/self"), Path::new("/proc/stat")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cat /proc/self/stat` of a process named `ipvs (agent)`, trimmed
    /// after `vsize`/`rss`.
    const STAT: &str = "4242 (ipvs (agent)) S 1 4242 4242 0 -1 4194560 1500 0 0 0 250 130 0 0 20 0 3 0 98765 123456789 2048 18446744073709551615";

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        assert_eq!(
            parse_stat(STAT),
            Some(StatFields {
                cpu_ticks: 380,
                start_ticks: 98765,
                virtual_bytes: 123_456_789,
            })
        );
        assert_eq!(parse_stat("4242 (short"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn status_limits_and_boot_time_are_read() {
        let status = "Name:\tipvs-agent\nVmPeak:\t  200000 kB\nVmRSS:\t   51200 kB\nThreads:\t3\n";
        assert_eq!(parse_resident_bytes(status), Some(51200 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax cpu time              unlimited            unlimited            seconds   \nMax open files            1048576              1048576              files     \n";
        assert_eq!(parse_max_fds(limits), Some(1_048_576));
        assert_eq!(
            parse_max_fds("Max open files unlimited unlimited files"),
            None
        );
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1796220000\nprocesses 5\n"),
            Some(1_796_220_000)
        );
    }

    #[test]
    fn rendered_as_the_go_client_does() {
        let text = render(&ProcessStats {
            cpu_seconds: 3.8,
            resident_bytes: 1024,
            virtual_bytes: 4096,
            start_time_seconds: 1_796_220_987.65,
            open_fds: 12,
            max_fds: 1024,
        });
        assert!(
            text.contains(
                "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.8\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE process_open_fds gauge\nprocess_open_fds 12\n"),
            "{text}"
        );
        assert!(
            text.contains("process_start_time_seconds 1796220987.65\n"),
            "{text}"
        );
    }

    #[test]
    fn this_process_is_read() {
        let stats = read(Path::new("/proc/self"), Path::new("/proc/stat"));
        assert!(stats.resident_bytes > 0 && stats.virtual_bytes >= stats.resident_bytes);
        assert!(stats.open_fds > 0 && stats.max_fds >= stats.open_fds);
        assert!(stats.start_time_seconds > 1e9, "{stats:?}");
    }
}
