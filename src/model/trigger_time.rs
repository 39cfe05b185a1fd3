//! kube-proxy's network-programming latency starts at an EndpointSlice's
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation (RFC 3339,
//! written by the EndpointSlice controller: when the Pod or Service change
//! that led to this slice happened). Both sources read it with this
//! module (the sources yield [`TriggerTime`]s, the observers measure them).
//! From the API server, a slice without it (or with a value that does not
//! parse) has no latency, as in kube-proxy (`getLastChangeTriggerTime`
//! returns the zero time and the change tracker skips it); the manifest
//! source falls back to the file's modification time (the agent's own:
//! a file edit is the change there).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ObjectRef;

/// The annotation's name (kube-proxy: `v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// One EndpointSlice change's trigger time, for the Service it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerTime {
    /// The slice's Service.
    pub service: ObjectRef,
    /// kube-proxy's `ip_family` label of the slice (`IPv4`, `IPv6`: its
    /// `addressType`).
    pub family: &'static str,
    /// When the change was triggered.
    pub at: SystemTime,
}

/// Parses an RFC 3339 time (`2026-12-02T15:04:05Z`, fractions and
/// offsets too), as Go's `time.Parse(time.RFC3339, ...)` reads it.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let timestamp: jiff::Timestamp = text.trim().parse().ok()?;
    let nanos = timestamp.as_nanosecond();
    let duration = |nanos: i128| {
        let nanos = u128::try_from(nanos).ok()?;
        Some(Duration::new(
            u64::try_from(nanos / 1_000_000_000).ok()?,
            (nanos % 1_000_000_000) as u32,
        ))
    };
    if nanos >= 0 {
        UNIX_EPOCH.checked_add(duration(nanos)?)
    } else {
        UNIX_EPOCH.checked_sub(duration(-nanos)?)
    }
}

/// The trigger time in `annotations`, if any and valid.
pub fn trigger_time(annotations: Option<&BTreeMap<String, String>>) -> Option<SystemTime> {
    parse_rfc3339(annotations?.get(LAST_CHANGE_TRIGGER_TIME)?)
}

/// kube-proxy's `ip_family` label for a slice's `addressType` (`None`
/// for FQDN slices, which kube-proxy does not proxy).
pub fn family_label(address_type: &str) -> Option<&'static str> {
    match address_type {
        "IPv4" => Some("IPv4"),
        "IPv6" => Some("IPv6"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_are_read_as_go_reads_them() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(UNIX_EPOCH)),
            (
                "2026-12-02T15:04:05Z",
                Some(UNIX_EPOCH + Duration::from_secs(1_796_223_845)),
            ),
            (
                "2026-12-02T16:04:05+01:00",
                Some(UNIX_EPOCH + Duration::from_secs(1_796_223_845)),
            ),
            (
                "2026-12-02T15:04:05.25Z",
                Some(UNIX_EPOCH + Duration::from_millis(1_796_223_845_250)),
            ),
            ("yesterday", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_rfc3339(text), expected, "{text:?}");
        }
    }

    #[test]
    fn trigger_time_is_the_annotation_or_nothing() {
        let with = BTreeMap::from([(
            LAST_CHANGE_TRIGGER_TIME.to_owned(),
            "1970-01-01T00:00:10Z".to_owned(),
        )]);
        assert_eq!(
            trigger_time(Some(&with)),
            Some(UNIX_EPOCH + Duration::from_secs(10))
        );
        let other = BTreeMap::from([("other".to_owned(), "1970-01-01T00:00:10Z".to_owned())]);
        assert_eq!(trigger_time(Some(&other)), None);
        assert_eq!(trigger_time(None), None);
        assert_eq!(family_label("IPv6"), Some("IPv6"));
        assert_eq!(family_label("FQDN"), None);
    }
}
