//! `oomScoreAdj` (`--oom-score-adj`): the agent's own
//! `/proc/self/oom_score_adj`, as kube-proxy sets its own (default -999,
//! so the kernel's OOM killer takes the agent among the last).

use std::path::Path;

/// The file.
pub const OOM_SCORE_ADJ: &str = "/proc/self/oom_score_adj";

/// Writes `value` to `path` (kube-proxy's `ApplyOOMScoreAdj` for its own
/// process) unless it already holds it; `Ok(true)` when written.
pub fn apply_oom_score_adj(path: &Path, value: i32) -> std::io::Result<bool> {
    let current = std::fs::read_to_string(path)?;
    if current.trim().parse::<i32>().ok() == Some(value) {
        return Ok(false);
    }
    std::fs::write(path, format!("{value}\n"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_a_different_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oom_score_adj");
        std::fs::write(&path, "0\n").unwrap();
        assert!(apply_oom_score_adj(&path, -999).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-999\n");
        assert!(!apply_oom_score_adj(&path, -999).unwrap());
        assert!(apply_oom_score_adj(&dir.path().join("missing"), 1).is_err());
    }
}
