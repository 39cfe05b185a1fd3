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
