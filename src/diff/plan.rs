//! The diff: the fewest operations that make the kernel's table equal the
//! desired one, within what the agent owns.
//!
//! - A virtual server that is wanted and missing is added with its real
//!   servers; one that differs in scheduler, flags, persistence timeout,
//!   netmask or persistence engine is edited in place (`SET_SERVICE`, never
//!   delete + add); an owned one that is not wanted is deleted.
//! - A real server that is wanted and missing is added; one whose weight,
//!   forwarding, thresholds or tunnel settings differ is edited in place
//!   (this also gives a draining real server its weight back).
//! - A real server that is not wanted: TCP ones with connections are
//!   drained (weight 0) and deleted once their active and inactive
//!   connections reach 0 or the drain timeout passes; others are deleted
//!   at once.
//! - A virtual server the agent does not own is never touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use netlink_ipvs::{
    IpvsDestination, IpvsDestinationKey, IpvsOperation, IpvsProtocol, IpvsService, IpvsServiceKey,
};

use super::ownership::Ownership;
use crate::model::settings::DEFAULT_DRAIN_TIMEOUT;
use crate::model::{Table, TableEntry};

/// How long a removed TCP real server may drain (`--ipvs-drain-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainPolicy {
    /// The longest a real server waits at weight 0 for its connections to
    /// end before it is deleted anyway.
    pub timeout: Duration,
}

impl Default for DrainPolicy {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Real servers being drained, with the time draining started.
pub type Draining = BTreeMap<(IpvsServiceKey, IpvsDestinationKey), Instant>;

/// What the diff decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The operations to send, in a valid order (a service before its real
    /// servers).
    pub operations: Vec<IpvsOperation>,
    /// The real servers draining after these operations.
    pub draining: Draining,
}

/// Whether the kernel's virtual server must be edited to become `desired`.
fn service_differs(desired: &IpvsService, kernel: &IpvsService) -> bool {
    desired.scheduler != kernel.scheduler
        || desired.flags != kernel.flags
        || desired.timeout != kernel.timeout
        || desired.netmask != kernel.netmask
        || desired.persistence_engine != kernel.persistence_engine
}

/// Whether the kernel's real server must be edited to become `desired`.
fn real_server_differs(desired: &IpvsDestination, kernel: &IpvsDestination) -> bool {
    desired.forwarding != kernel.forwarding
        || desired.weight != kernel.weight
        || desired.upper_threshold != kernel.upper_threshold
        || desired.lower_threshold != kernel.lower_threshold
        || desired.tunnel_type != kernel.tunnel_type
        || desired.tunnel_port != kernel.tunnel_port
        || desired.tunnel_flags != kernel.tunnel_flags
}

/// Whether a virtual server is TCP (only TCP real servers drain).
pub fn is_tcp(key: &IpvsServiceKey) -> bool {
    matches!(
        key,
        IpvsServiceKey::Inet {
            protocol: IpvsProtocol::Tcp,
            ..
        }
    )
}

/// The operations that turn `kernel` into `desired` within `ownership`.
/// `draining` is the drain state after the previous plan; `now` is the
/// current time.
pub fn plan_changes(
    desired: &Table,
    kernel: &Table,
    ownership: &Ownership,
    draining: &Draining,
    policy: &DrainPolicy,
    now: Instant,
) -> Plan {
    let mut plan = Plan::default();
    for (key, wanted) in desired {
        match kernel.get(key) {
            None => {
                plan.operations
                    .push(IpvsOperation::AddService(wanted.service.clone()));
                plan.operations.extend(
                    wanted
                        .real_servers
                        .values()
                        .map(|d| IpvsOperation::AddDestination(*key, d.clone())),
                );
            }
            Some(current) => {
                if service_differs(&wanted.service, &current.service) {
                    plan.operations
                        .push(IpvsOperation::EditService(wanted.service.clone()));
                }
                plan_real_servers(key, wanted, current, draining, policy, now, &mut plan);
            }
        }
    }
    for (key, current) in kernel {
        if !desired.contains_key(key) && ownership.owns(&current.service.key) {
            plan.operations.push(IpvsOperation::DeleteService(*key));
        }
    }
    plan
}

fn plan_real_servers(
    key: &IpvsServiceKey,
    wanted: &TableEntry,
    current: &TableEntry,
    draining: &Draining,
    policy: &DrainPolicy,
    now: Instant,
    plan: &mut Plan,
) {
    for (destination_key, destination) in &wanted.real_servers {
        match current.real_servers.get(destination_key) {
            None => plan
                .operations
                .push(IpvsOperation::AddDestination(*key, destination.clone())),
            Some(existing) if real_server_differs(destination, existing) => plan
                .operations
                .push(IpvsOperation::EditDestination(*key, destination.clone())),
            Some(_) => {}
        }
    }
    for (destination_key, existing) in &current.real_servers {
        if wanted.real_servers.contains_key(destination_key) {
            continue;
        }
        let connections =
            u64::from(existing.active_connections) + u64::from(existing.inactive_connections);
        let started = draining
            .get(&(*key, *destination_key))
            .copied()
            .unwrap_or(now);
        let drained_long_enough = now.saturating_duration_since(started) >= policy.timeout;
        if !is_tcp(key) || connections == 0 || drained_long_enough {
            plan.operations
                .push(IpvsOperation::DeleteDestination(*key, *destination_key));
            continue;
        }
        if existing.weight != 0 {
            let mut quiesced = existing.clone();
            quiesced.weight = 0;
            plan.operations
                .push(IpvsOperation::EditDestination(*key, quiesced));
        }
        plan.draining.insert((*key, *destination_key), started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_ipvs::IpvsForwardingMethod;

    fn key(vip: &str, port: u16) -> IpvsServiceKey {
        IpvsServiceKey::tcp(vip.parse().unwrap(), port)
    }

    fn udp(vip: &str, port: u16) -> IpvsServiceKey {
        IpvsServiceKey::udp(vip.parse().unwrap(), port)
    }

    fn real(address: &str, weight: u32) -> IpvsDestination {
        IpvsDestination::new(
            address.parse().unwrap(),
            9376,
            IpvsForwardingMethod::Masquerade,
            weight,
        )
    }

    fn with_connections(
        mut destination: IpvsDestination,
        active: u32,
        inactive: u32,
    ) -> IpvsDestination {
        destination.active_connections = active;
        destination.inactive_connections = inactive;
        destination
    }

    fn entry(
        key: IpvsServiceKey,
        scheduler: &str,
        reals: Vec<IpvsDestination>,
    ) -> (IpvsServiceKey, TableEntry) {
        (
            key,
            TableEntry {
                service: IpvsService::new(key, scheduler),
                real_servers: reals.into_iter().map(|d| (d.key, d)).collect(),
            },
        )
    }

    fn ownership() -> Ownership {
        Ownership {
            bound_addresses: ["10.96.0.10".parse().unwrap(), "10.96.0.11".parse().unwrap()].into(),
            ..Ownership::default()
        }
    }

    fn plan(
        desired: Vec<(IpvsServiceKey, TableEntry)>,
        kernel: Vec<(IpvsServiceKey, TableEntry)>,
    ) -> Plan {
        plan_changes(
            &desired.into_iter().collect(),
            &kernel.into_iter().collect(),
            &ownership(),
            &Draining::new(),
            &DrainPolicy::default(),
            Instant::now(),
        )
    }

    #[test]
    fn unchanged_table_needs_no_message() {
        let table = vec![entry(
            key("10.96.0.10", 80),
            "rr",
            vec![real("10.244.0.1", 1), real("10.244.0.2", 1)],
        )];
        assert_eq!(plan(table.clone(), table).operations, vec![]);
    }

    #[test]
    fn counters_and_connections_in_the_kernel_do_not_count_as_differences() {
        let desired = vec![entry(
            key("10.96.0.10", 80),
            "rr",
            vec![real("10.244.0.1", 1)],
        )];
        let mut kernel = desired.clone();
        let busy = with_connections(real("10.244.0.1", 1), 5, 7);
        kernel[0].1.real_servers.insert(busy.key, busy);
        kernel[0].1.service.stats = Some(Box::default());
        assert_eq!(plan(desired, kernel).operations, vec![]);
    }

    #[test]
    fn new_service_is_added_with_its_real_servers() {
        let desired = vec![entry(
            key("10.96.0.10", 80),
            "rr",
            vec![real("10.244.0.1", 1)],
        )];
        let operations = plan(desired.clone(), vec![]).operations;
        assert_eq!(
            operations,
            vec![
                IpvsOperation::AddService(desired[0].1.service.clone()),
                IpvsOperation::AddDestination(key("10.96.0.10", 80), real("10.244.0.1", 1)),
            ]
        );
    }

    #[test]
    fn changed_scheduler_or_persistence_is_edited_in_place() {
        let k = key("10.96.0.10", 80);
        let kernel = vec![entry(k, "rr", vec![real("10.244.0.1", 1)])];
        let mut desired = vec![entry(k, "wlc", vec![real("10.244.0.1", 1)])];
        assert_eq!(
            plan(desired.clone(), kernel.clone()).operations,
            vec![IpvsOperation::EditService(desired[0].1.service.clone())]
        );
        desired[0].1.service = IpvsService::new(k, "rr").persistent(10800);
        assert_eq!(
            plan(desired.clone(), kernel).operations,
            vec![IpvsOperation::EditService(desired[0].1.service.clone())]
        );
    }

    #[test]
    fn one_endpoint_added_or_removed_is_one_message() {
        let k = key("10.96.0.10", 80);
        let two = vec![entry(
            k,
            "rr",
            vec![real("10.244.0.1", 1), real("10.244.0.2", 1)],
        )];
        let three = vec![entry(
            k,
            "rr",
            vec![
                real("10.244.0.1", 1),
                real("10.244.0.2", 1),
                real("10.244.0.3", 1),
            ],
        )];
        assert_eq!(
            plan(three.clone(), two.clone()).operations,
            vec![IpvsOperation::AddDestination(k, real("10.244.0.3", 1))]
        );
        assert_eq!(
            plan(two, three).operations,
            vec![IpvsOperation::DeleteDestination(
                k,
                real("10.244.0.3", 1).key
            )]
        );
    }

    #[test]
    fn weight_reset_on_adoption_is_an_edit() {
        // kube-proxy bug #92019: a restart must restore weights left at 0.
        let k = key("10.96.0.10", 80);
        let desired = vec![entry(k, "rr", vec![real("10.244.0.1", 1)])];
        let kernel = vec![entry(k, "rr", vec![real("10.244.0.1", 0)])];
        assert_eq!(
            plan(desired, kernel).operations,
            vec![IpvsOperation::EditDestination(k, real("10.244.0.1", 1))]
        );
    }

    #[test]
    fn removed_tcp_real_server_with_connections_drains_then_goes() {
        let k = key("10.96.0.10", 80);
        let desired: Table = [entry(k, "rr", vec![real("10.244.0.1", 1)])].into();
        let busy = with_connections(real("10.244.0.2", 1), 1, 3);
        let kernel: Table = [entry(k, "rr", vec![real("10.244.0.1", 1), busy.clone()])].into();
        let start = Instant::now();
        let policy = DrainPolicy {
            timeout: Duration::from_secs(60),
        };

        let first = plan_changes(
            &desired,
            &kernel,
            &ownership(),
            &Draining::new(),
            &policy,
            start,
        );
        let mut quiesced = busy.clone();
        quiesced.weight = 0;
        assert_eq!(
            first.operations,
            vec![IpvsOperation::EditDestination(k, quiesced.clone())]
        );
        assert_eq!(first.draining.get(&(k, busy.key)), Some(&start));

        // Still busy at weight 0, before the timeout: nothing to send.
        let kernel_after: Table = [entry(
            k,
            "rr",
            vec![real("10.244.0.1", 1), quiesced.clone()],
        )]
        .into();
        let later = start + Duration::from_secs(30);
        let second = plan_changes(
            &desired,
            &kernel_after,
            &ownership(),
            &first.draining,
            &policy,
            later,
        );
        assert_eq!(second.operations, vec![]);
        assert_eq!(second.draining, first.draining);

        // Past the timeout: deleted even with connections.
        let timed_out = start + Duration::from_secs(61);
        let third = plan_changes(
            &desired,
            &kernel_after,
            &ownership(),
            &second.draining,
            &policy,
            timed_out,
        );
        assert_eq!(
            third.operations,
            vec![IpvsOperation::DeleteDestination(k, busy.key)]
        );
        assert!(third.draining.is_empty());

        // Connections gone: deleted at once.
        let idle = with_connections(quiesced.clone(), 0, 0);
        let kernel_idle: Table = [entry(k, "rr", vec![real("10.244.0.1", 1), idle])].into();
        let fourth = plan_changes(
            &desired,
            &kernel_idle,
            &ownership(),
            &second.draining,
            &policy,
            later,
        );
        assert_eq!(
            fourth.operations,
            vec![IpvsOperation::DeleteDestination(k, busy.key)]
        );

        // Wanted again while draining: its weight comes back.
        let wanted_again: Table = [entry(
            k,
            "rr",
            vec![real("10.244.0.1", 1), real("10.244.0.2", 1)],
        )]
        .into();
        let back = plan_changes(
            &wanted_again,
            &kernel_after,
            &ownership(),
            &second.draining,
            &policy,
            later,
        );
        assert_eq!(
            back.operations,
            vec![IpvsOperation::EditDestination(k, real("10.244.0.2", 1))]
        );
        assert!(back.draining.is_empty());
    }

    #[test]
    fn removed_udp_real_server_is_deleted_at_once() {
        let k = udp("10.96.0.10", 53);
        let desired = vec![entry(k, "rr", vec![])];
        let kernel = vec![entry(
            k,
            "rr",
            vec![with_connections(real("10.244.0.1", 1), 0, 9)],
        )];
        assert_eq!(
            plan(desired, kernel).operations,
            vec![IpvsOperation::DeleteDestination(
                k,
                real("10.244.0.1", 1).key
            )]
        );
    }

    #[test]
    fn unwanted_virtual_servers_are_deleted_only_when_owned() {
        let ours = key("10.96.0.11", 80);
        let foreign = key("172.16.0.1", 80);
        let kernel = vec![
            entry(ours, "rr", vec![real("10.244.0.1", 1)]),
            entry(foreign, "wlc", vec![real("10.244.9.9", 1)]),
        ];
        assert_eq!(
            plan(vec![], kernel).operations,
            vec![IpvsOperation::DeleteService(ours)]
        );
    }
}
