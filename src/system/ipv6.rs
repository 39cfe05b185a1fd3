//! Whether the kernel has IPv6 in the agent's network namespace, for the
//! family choice without `--ip-family` ([`crate::model::ip_family`]).
//!
//! Read from `/proc` (both files are per network namespace):
//!
//! - `/proc/net/if_inet6` missing (ENOENT): the kernel has no IPv6 (built
//!   without it, or booted with `ipv6.disable=1`);
//! - `/proc/sys/net/ipv6/conf/all/disable_ipv6` missing: the same; `1`:
//!   IPv6 disabled on every interface (`sysctl net.ipv6.conf.all.disable_ipv6=1`);
//!   `0`: IPv6 is there.
//!
//! Any other error (EACCES in a restricted container, ...) says nothing
//! about IPv6: it is returned, and the caller decides.

use std::io;
use std::path::Path;

use super::errno::ENOENT;

/// What the kernel says of IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Support {
    /// IPv6 is there and enabled.
    Enabled,
    /// The kernel has no IPv6 (no `if_inet6`, no `net/ipv6` sysctls).
    Absent,
    /// `net.ipv6.conf.all.disable_ipv6 = 1`.
    Disabled,
}

impl Ipv6Support {
    /// Whether IPv6 Services can be programmed.
    pub fn usable(self) -> bool {
        self == Ipv6Support::Enabled
    }
}

fn is_missing(error: &io::Error) -> bool {
    error.raw_os_error() == Some(ENOENT) || error.kind() == io::ErrorKind::NotFound
}

/// Reads IPv6 support under `proc_root` (`/proc`; a folder in tests).
pub fn ipv6_support(proc_root: &Path) -> io::Result<Ipv6Support> {
    // The error names the file (the caller logs it as it is).
    let naming = |path: &Path, error: io::Error| {
        io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    };
    let if_inet6 = proc_root.join("net/if_inet6");
    match std::fs::metadata(&if_inet6) {
        Err(error) if is_missing(&error) => return Ok(Ipv6Support::Absent),
        Err(error) => return Err(naming(&if_inet6, error)),
        Ok(_) => {}
    }
    let disable = proc_root.join("sys/net/ipv6/conf/all/disable_ipv6");
    match std::fs::read_to_string(&disable) {
        Err(error) if is_missing(&error) => Ok(Ipv6Support::Absent),
        Err(error) => Err(naming(&disable, error)),
        Ok(text) => match text.trim() {
            "0" => Ok(Ipv6Support::Enabled),
            "1" => Ok(Ipv6Support::Disabled),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {other:?} is neither 0 nor 1", disable.display()),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_with(if_inet6: bool, disable: Option<&str>) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("net")).unwrap();
        if if_inet6 {
            std::fs::write(root.path().join("net/if_inet6"), "").unwrap();
        }
        if let Some(value) = disable {
            let conf = root.path().join("sys/net/ipv6/conf/all");
            std::fs::create_dir_all(&conf).unwrap();
            std::fs::write(conf.join("disable_ipv6"), value).unwrap();
        }
        root
    }

    #[test]
    fn ipv6_support_is_read_from_proc() {
        let cases: &[(&str, bool, Option<&str>, Option<Ipv6Support>)] = &[
            ("enabled", true, Some("0\n"), Some(Ipv6Support::Enabled)),
            (
                "disabled by sysctl",
                true,
                Some("1\n"),
                Some(Ipv6Support::Disabled),
            ),
            (
                "no if_inet6: no IPv6 in the kernel",
                false,
                None,
                Some(Ipv6Support::Absent),
            ),
            ("no net/ipv6 sysctls", true, None, Some(Ipv6Support::Absent)),
            ("a value that is neither", true, Some("2\n"), None),
        ];
        for (what, if_inet6, disable, expected) in cases {
            let root = proc_with(*if_inet6, *disable);
            assert_eq!(ipv6_support(root.path()).ok(), *expected, "{what}");
        }
    }
}
