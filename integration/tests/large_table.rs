//! A table larger than one dump message holds: 2,100 services with 10 real
//! servers each, written with the batch API and read back completely
//! (multi-part dumps), and checked against ipvsadm's view.

use std::collections::{BTreeMap, BTreeSet};

use integration::{clear_table, connect, ipvsadm, require_guest, synthetic_table};
use netlink_ipvs::IpvsOperation;

const SERVICES: usize = 2_100;
const DESTINATIONS: usize = 10;

#[tokio::test]
async fn batch_writes_and_multipart_dumps_read_back_every_object() {
    require_guest();
    clear_table();
    let handle = connect();
    let operations = synthetic_table(SERVICES, DESTINATIONS);
    let results = handle.apply(&operations).await;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} failures, first: {}",
        failures.len(),
        failures[0]
    );

    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for operation in &operations {
        match operation {
            IpvsOperation::AddService(s) => {
                expected.entry(s.key.to_string()).or_default();
            }
            IpvsOperation::AddDestination(key, d) => {
                expected
                    .entry(key.to_string())
                    .or_default()
                    .insert(d.key.to_string());
            }
            _ => unreachable!(),
        }
    }

    let table = handle.table().await.expect("dump the whole table");
    let read: BTreeMap<String, BTreeSet<String>> = table
        .iter()
        .map(|entry| {
            (
                entry.service.key.to_string(),
                entry
                    .destinations
                    .iter()
                    .map(|d| d.key.to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(table.len(), SERVICES, "services read back");
    assert_eq!(
        table.iter().map(|e| e.destinations.len()).sum::<usize>(),
        SERVICES * DESTINATIONS,
        "real servers read back"
    );
    assert_eq!(read, expected);

    // ipvsadm agrees on the size of the table.
    let saved = ipvsadm(&["-Sn"]);
    assert_eq!(
        saved.lines().filter(|l| l.starts_with("-A ")).count(),
        SERVICES
    );
    assert_eq!(
        saved.lines().filter(|l| l.starts_with("-a ")).count(),
        SERVICES * DESTINATIONS
    );

    // Deleting everything with the batch API leaves nothing behind.
    let deletes: Vec<_> = table
        .iter()
        .map(|entry| IpvsOperation::DeleteService(entry.service.key))
        .collect();
    assert!(handle.apply(&deletes).await.iter().all(Result::is_ok));
    assert!(handle.services().await.unwrap().is_empty());
    clear_table();
}

/// `table()` splits the real-server dumps between reader sockets: services
/// whose real servers take several dump parts (2,000 each) among small
/// ones are all read back completely, in the kernel's order.
#[tokio::test]
async fn table_readers_read_services_with_many_real_servers() {
    use netlink_ipvs::{IpvsDestination, IpvsForwardingMethod, IpvsService, IpvsServiceKey};
    require_guest();
    clear_table();
    let handle = connect();
    let mut operations = Vec::new();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for index in 0..200usize {
        let key = IpvsServiceKey::tcp(
            format!("10.1.{}.{}", index / 250, index % 250 + 1)
                .parse()
                .unwrap(),
            80,
        );
        operations.push(IpvsOperation::AddService(IpvsService::new(key, "rr")));
        let count = if index % 20 == 0 { 2_000 } else { 3 };
        for real in 0..count {
            operations.push(IpvsOperation::AddDestination(
                key,
                IpvsDestination::new(
                    format!("10.2.{}.{}", real / 250, real % 250 + 1)
                        .parse()
                        .unwrap(),
                    8080,
                    IpvsForwardingMethod::Masquerade,
                    1,
                ),
            ));
        }
        expected.insert(key.to_string(), count);
    }
    assert!(handle.apply(&operations).await.iter().all(Result::is_ok));
    for round in 0..3 {
        let table = handle.table().await.expect("dump the whole table");
        let read: BTreeMap<String, usize> = table
            .iter()
            .map(|entry| (entry.service.key.to_string(), entry.destinations.len()))
            .collect();
        assert_eq!(read, expected, "round {round}");
        let order: Vec<IpvsServiceKey> = table.iter().map(|entry| entry.service.key).collect();
        let listed: Vec<IpvsServiceKey> = handle
            .services()
            .await
            .expect("list services")
            .iter()
            .map(|service| service.key)
            .collect();
        assert_eq!(order, listed, "round {round}: the kernel's order");
    }
    clear_table();
}
