// SPDX-License-Identifier: MIT

//! ipvsadm's order: `ipvs_cmp_services` and `ipvs_cmp_dests` (libipvs.c)
//! run by glibc's `qsort`, replicated quirks included.
//!
//! The comparators subtract unsigned 32-bit values and read the result as
//! an `int`, so two fwmarks or two address words more than 2^31 apart
//! compare the "wrong" way round (mark 3000000000 sorts before mark 0, that
//! is before every address-based service; 200.0.0.1 before 10.0.0.1), and
//! the order is then not transitive. The result depends on the sorting
//! algorithm and the input order: glibc's `qsort` (2.36, as on Debian 12,
//! and later) is a top-down merge sort, reproduced here step for step, so
//! given the kernel's dump order the output matches ipvsadm's even then.
//! Rust's own sorts must not be given such a comparator.
//!
//! `ipvs_cmp_dests` reads the address family of its first argument only:
//! an IPv6 real server compared with an IPv4 one (mixed-family tunnels)
//! compares all four words, the IPv4 address counting as
//! `a.b.c.d` followed by zeros.

use std::net::IpAddr;

use crate::address::IpvsAddressFamily;
use crate::client::IpvsTableEntry;
use crate::dest::IpvsDestination;
use crate::service::{IpvsService, IpvsServiceKey};

/// Sorts `table` in place as `ipvsadm -L` and `ipvsadm -S` print it:
/// services by fwmark (0 first), address family, protocol, address, port;
/// each service's real servers by address, then port. Comparisons wrap like
/// ipvsadm's (see the [module documentation](self)).
pub fn sort_table(table: &mut [IpvsTableEntry]) {
    let order = sorted_indices(table.len(), |a, b| {
        compare_services(&table[a].service, &table[b].service)
    });
    apply_permutation(table, order);
    for entry in table.iter_mut() {
        sort_destinations(&mut entry.destinations);
    }
}

/// Sorts real servers in place as ipvsadm does (`ipvs_cmp_dests`).
pub fn sort_destinations(destinations: &mut [IpvsDestination]) {
    let order = sorted_indices(destinations.len(), |a, b| {
        compare_destinations(&destinations[a], &destinations[b])
    });
    apply_permutation(destinations, order);
}

/// The services of `table` in ipvsadm's order, without moving them.
pub(crate) fn sorted_entries(table: &[IpvsTableEntry]) -> Vec<&IpvsTableEntry> {
    sorted_indices(table.len(), |a, b| {
        compare_services(&table[a].service, &table[b].service)
    })
    .into_iter()
    .map(|i| &table[i])
    .collect()
}

/// The real servers in ipvsadm's order, without moving them.
pub(crate) fn sorted_destinations(destinations: &[IpvsDestination]) -> Vec<&IpvsDestination> {
    sorted_indices(destinations.len(), |a, b| {
        compare_destinations(&destinations[a], &destinations[b])
    })
    .into_iter()
    .map(|i| &destinations[i])
    .collect()
}

/// `(int)(a - b)` on `__u32` operands, as C computes it.
fn wrapping_difference(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// An address as the four host-order words libipvs compares: an IPv4
/// address fills the first word, the rest of `union nf_inet_addr` is zero.
fn address_words(address: &IpAddr) -> [u32; 4] {
    match address {
        IpAddr::V4(v4) => [u32::from(*v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            std::array::from_fn(|i| {
                u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// The address comparison of both comparators: four words for `AF_INET6`
/// (the first operand's family), else the first word only.
fn compare_addresses(family: IpvsAddressFamily, a: &[u32; 4], b: &[u32; 4]) -> i32 {
    if family == IpvsAddressFamily::Inet6 {
        a.iter()
            .zip(b)
            .map(|(x, y)| wrapping_difference(*x, *y))
            .find(|r| *r != 0)
            .unwrap_or(0)
    } else {
        wrapping_difference(a[0], b[0])
    }
}

/// What `ipvs_cmp_services` reads of a service entry: fwmark services
/// have protocol, address and port zero.
struct ServiceSortKey {
    fwmark: u32,
    family: u16,
    protocol: u16,
    words: [u32; 4],
    port: u16,
}

impl ServiceSortKey {
    fn of(service: &IpvsService) -> Self {
        match service.key {
            IpvsServiceKey::Fwmark { family, mark } => Self {
                fwmark: mark,
                family: family.into(),
                protocol: 0,
                words: [0; 4],
                port: 0,
            },
            IpvsServiceKey::Inet {
                protocol,
                address,
                port,
            } => Self {
                fwmark: 0,
                family: IpvsAddressFamily::of(&address).into(),
                protocol: protocol.into(),
                words: address_words(&address),
                port,
            },
        }
    }
}

/// `ipvs_cmp_services`: negative, zero or positive like the C function.
pub(crate) fn compare_services(s1: &IpvsService, s2: &IpvsService) -> i32 {
    let (a, b) = (ServiceSortKey::of(s1), ServiceSortKey::of(s2));
    let r = wrapping_difference(a.fwmark, b.fwmark);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.family) - i32::from(b.family);
    if r != 0 {
        return r;
    }
    let r = i32::from(a.protocol) - i32::from(b.protocol);
    if r != 0 {
        return r;
    }
    let r = compare_addresses(IpvsAddressFamily::from(a.family), &a.words, &b.words);
    if r != 0 {
        return r;
    }
    i32::from(a.port) - i32::from(b.port)
}

/// `ipvs_cmp_dests`: negative, zero or positive like the C function.
pub(crate) fn compare_destinations(d1: &IpvsDestination, d2: &IpvsDestination) -> i32 {
    let r = compare_addresses(
        IpvsAddressFamily::of(&d1.key.address),
        &address_words(&d1.key.address),
        &address_words(&d2.key.address),
    );
    if r != 0 {
        return r;
    }
    i32::from(d1.key.port) - i32::from(d2.key.port)
}

/// The indices `0..n` ordered by glibc's merge sort (`msort_with_tmp`)
/// with the C-style comparator `compare`.
fn sorted_indices(n: usize, compare: impl Fn(usize, usize) -> i32) -> Vec<usize> {
    let mut items: Vec<usize> = (0..n).collect();
    let mut scratch = Vec::with_capacity(n);
    merge_sort(&mut items, &mut scratch, &compare);
    items
}

/// glibc's `msort_with_tmp`: sort the first `n / 2` and the rest, then
/// merge, taking from the left run while `compare(left, right) <= 0`.
fn merge_sort(
    items: &mut [usize],
    scratch: &mut Vec<usize>,
    compare: &impl Fn(usize, usize) -> i32,
) {
    let n = items.len();
    if n <= 1 {
        return;
    }
    let (left, right) = items.split_at_mut(n / 2);
    merge_sort(left, scratch, compare);
    merge_sort(right, scratch, compare);
    scratch.clear();
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        if compare(left[i], right[j]) <= 0 {
            scratch.push(left[i]);
            i += 1;
        } else {
            scratch.push(right[j]);
            j += 1;
        }
    }
    scratch.extend_from_slice(&left[i..]);
    // What is left of the right run is already in place.
    items[..scratch.len()].copy_from_slice(scratch);
}

/// Reorders `items` so that position `k` holds what was at `order[k]`.
fn apply_permutation<T>(items: &mut [T], mut order: Vec<usize>) {
    for start in 0..order.len() {
        let mut current = start;
        // Follow the cycle through `start`, marking visited slots.
        while order[current] != start {
            let next = order[current];
            items.swap(current, next);
            order[current] = current;
            current = next;
        }
        order[current] = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::IpvsForwardingMethod;

    fn service(key: IpvsServiceKey) -> IpvsService {
        IpvsService::new(key, "rr")
    }

    fn tcp(address: &str, port: u16) -> IpvsService {
        service(IpvsServiceKey::tcp(address.parse().unwrap(), port))
    }

    fn dest(address: &str, port: u16) -> IpvsDestination {
        IpvsDestination::new(
            address.parse().unwrap(),
            port,
            IpvsForwardingMethod::Masquerade,
            1,
        )
    }

    #[test]
    fn merge_sort_is_stable_and_sorts() {
        let values = [5, 3, 9, 3, 1, 8, 5, 0, 2];
        let order = sorted_indices(values.len(), |a, b| values[a] - values[b]);
        assert_eq!(order, vec![7, 4, 8, 1, 3, 0, 6, 5, 2]);
    }

    #[test]
    fn permutation_is_applied() {
        let mut items = vec!['a', 'b', 'c', 'd', 'e'];
        apply_permutation(&mut items, vec![3, 0, 4, 1, 2]);
        assert_eq!(items, vec!['d', 'a', 'e', 'b', 'c']);
    }

    #[test]
    fn comparisons_wrap_like_ipvsadm() {
        // 10.0.0.1 - 200.0.0.1 wraps to a positive int.
        assert!(compare_services(&tcp("10.0.0.1", 80), &tcp("200.0.0.1", 80)) > 0);
        assert!(compare_services(&tcp("10.0.0.1", 80), &tcp("100.0.0.1", 80)) < 0);
        assert!(compare_services(&tcp("10.0.0.1", 8080), &tcp("10.0.0.1", 80)) > 0);
        let big = service(IpvsServiceKey::Fwmark {
            family: IpvsAddressFamily::Inet,
            mark: 3_000_000_000,
        });
        assert!(compare_services(&big, &tcp("10.0.0.1", 80)) < 0);
        // An IPv6 first operand compares four words, an IPv4 one only one.
        assert!(compare_destinations(&dest("2001:db8::1", 80), &dest("10.0.0.1", 80)) > 0);
        assert!(compare_destinations(&dest("10.0.0.1", 80), &dest("10.0.0.1", 80)) == 0);
        assert!(compare_destinations(&dest("32.1.13.184", 80), &dest("2001:db8::1", 80)) == 0);
    }
}
