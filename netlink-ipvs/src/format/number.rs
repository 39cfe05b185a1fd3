// SPDX-License-Identifier: MIT

//! ipvsadm's `print_largenum`: counters in 9 columns, scaled with K, M, G
//! or T from 100 million on, or exact with `--exact`.

use std::fmt::Write;

/// Appends `value` as `print_largenum` prints it. The field has no
/// separator: it is 9 wide (`%9llu`, or `%8llu` and a unit letter), and
/// with `exact` as wide as the number plus one (at least 9).
pub(crate) fn push_large_number(out: &mut String, value: u64, exact: bool) {
    if exact {
        let digits = value.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        let _ = write!(out, "{digits:>width$}");
        return;
    }
    let _ = match value {
        0..=99_999_999 => write!(out, "{value:>9}"),
        100_000_000..=999_999_999 => write!(out, "{:>8}K", value / 1_000),
        1_000_000_000..=99_999_999_999 => write!(out, "{:>8}M", value / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => write!(out, "{:>8}G", value / 1_000_000_000),
        _ => write!(out, "{:>8}T", value / 1_000_000_000_000),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn large(value: u64, exact: bool) -> String {
        let mut out = String::new();
        push_large_number(&mut out, value, exact);
        out
    }

    /// The thresholds and formats of ipvsadm 1.31's print_largenum; the
    /// expected strings are C printf's (`%9llu`, `%8lluK`, ...).
    #[test]
    fn scales_like_print_largenum() {
        assert_eq!(large(0, false), "        0");
        assert_eq!(large(99_999_999, false), " 99999999");
        assert_eq!(large(100_000_000, false), "  100000K");
        assert_eq!(large(999_999_999, false), "  999999K");
        assert_eq!(large(1_000_000_000, false), "    1000M");
        assert_eq!(large(99_999_999_999, false), "   99999M");
        assert_eq!(large(100_000_000_000, false), "     100G");
        assert_eq!(large(99_999_999_999_999, false), "   99999G");
        assert_eq!(large(100_000_000_000_000, false), "     100T");
        assert_eq!(large(u64::MAX, false), "18446744T");
    }

    #[test]
    fn exact_widens_past_eight_digits() {
        assert_eq!(large(7, true), "        7");
        assert_eq!(large(12_345_678, true), " 12345678");
        assert_eq!(large(123_456_789, true), " 123456789");
        assert_eq!(large(u64::MAX, true), " 18446744073709551615");
    }
}
