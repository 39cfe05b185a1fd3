//! First measurement of the batch API, run inside the real-kernel guest:
//! the same table of N services x M real servers applied from an empty
//! kernel table three ways, in one run:
//!
//! 1. `ipvsadm -R` of the equivalent rules (the baseline);
//! 2. `IpvsHandle::apply` (the batch API);
//! 3. a raw burst of the same messages (same datagrams, same flags: an ACK
//!    asked for on the last message of each datagram only), encoded before
//!    the clock starts, sent with the same in-flight bound over a plain
//!    blocking socket, every answer read (the floor: kernel work plus the
//!    unavoidable syscalls).
//!
//! Usage: `ipvs-bench SERVICES DESTINATIONS [ROUNDS]` (as root, in a kernel
//! with IPVS). Each round runs the three in a rotating order, each in a
//! fresh network namespace (an empty, cold IPVS table), and checks the
//! resulting table with `ipvsadm -Sn`. Prints one line per measurement and
//! the medians and ratios.

use std::time::{Duration, Instant};

use integration::raw::timed_raw_burst;
use integration::{clear_table, connect, ipvsadm, ipvsadm_restore, restore_rules, synthetic_table};
use netlink_ipvs::{IpvsBatchOptions, IpvsHandle, IpvsOperation};

fn check_table(services: usize, destinations: usize, what: &str) {
    let saved = ipvsadm(&["-Sn"]);
    let added_services = saved.lines().filter(|l| l.starts_with("-A ")).count();
    let added_destinations = saved.lines().filter(|l| l.starts_with("-a ")).count();
    assert_eq!(
        (added_services, added_destinations),
        (services, services * destinations),
        "{what} left an incomplete table"
    );
}

async fn batch(
    handle: &IpvsHandle,
    operations: &[IpvsOperation],
    options: IpvsBatchOptions,
) -> usize {
    handle
        .apply_with(operations, options)
        .await
        .iter()
        .filter(|r| r.is_err())
        .count()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

const USAGE: &str = "usage: ipvs-bench SERVICES DESTINATIONS [ROUNDS]\n       \
                     ipvs-bench --measure restore|batch|raw SERVICES DESTINATIONS";

/// One measurement in the current network namespace (which must hold an
/// empty IPVS table): prints the elapsed seconds on the last line.
async fn measure(method: &str, services: usize, destinations: usize) {
    let options = IpvsBatchOptions::default();
    let operations = synthetic_table(services, destinations);
    let handle = connect();
    assert_eq!(
        ipvsadm(&["-Sn"]),
        "",
        "the namespace's IPVS table is not empty"
    );
    let elapsed = match method {
        "restore" => {
            let rules = restore_rules(&operations);
            let start = Instant::now();
            ipvsadm_restore(&rules);
            start.elapsed()
        }
        "batch" => {
            let start = Instant::now();
            let errors = batch(&handle, &operations, options).await;
            let elapsed = start.elapsed();
            assert_eq!(errors, 0, "batch apply failed");
            elapsed
        }
        "raw" => {
            let (elapsed, errors) = timed_raw_burst(handle.family_id(), &operations, &options);
            assert_eq!(errors, 0, "raw burst failed");
            elapsed
        }
        other => panic!("unknown method {other}\n{USAGE}"),
    };
    check_table(services, destinations, method);
    // Empty the table before the namespace goes, so its teardown does not
    // run into the next measurement.
    clear_table();
    println!("{}", elapsed.as_secs_f64());
}

/// Runs one measurement in a fresh network namespace: IPVS state is per
/// namespace, so each starts from a cold, empty table. (Reusing one
/// namespace is unfair to whoever comes second: the kernel keeps deleted
/// real servers in a trash list for a while and scans it on every add.)
fn measure_in_fresh_namespace(method: &str, services: usize, destinations: usize) -> f64 {
    use std::process::Command;
    let namespace = format!("ipvs-bench-{}-{method}", std::process::id());
    let status = Command::new("ip")
        .args(["netns", "add", &namespace])
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "ip netns add {namespace} failed"
    );
    // With its loopback down, a namespace has no local routing table, and
    // the kernel refuses every real server (EINVAL, "address not unicast").
    let status = Command::new("ip")
        .args(["netns", "exec", &namespace, "ip", "link", "set", "lo", "up"])
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "ip link set lo up in {namespace} failed"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(std::env::current_exe().expect("own path"))
        .args([
            "--measure",
            method,
            &services.to_string(),
            &destinations.to_string(),
        ])
        .output()
        .expect("run the measurement");
    let _ = Command::new("ip")
        .args(["netns", "delete", &namespace])
        .status();
    assert!(
        output.status.success(),
        "{method} measurement failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Let the namespace's teardown finish before the next measurement.
    std::thread::sleep(Duration::from_secs(2));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("{method}: no time printed"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |text: &str| -> usize { text.parse().unwrap_or_else(|_| panic!("{USAGE}")) };
    if args.first().map(String::as_str) == Some("--measure") {
        match args.as_slice() {
            [_, method, s, d] => return measure(method, number(s), number(d)).await,
            _ => panic!("{USAGE}"),
        }
    }
    let (services, destinations, rounds) = match args.as_slice() {
        [s, d] => (number(s), number(d), 3),
        [s, d, r] => (number(s), number(d), number(r)),
        _ => panic!("{USAGE}"),
    };
    let options = IpvsBatchOptions::default();
    println!(
        "table: {services} services x {destinations} real servers = {} operations; \
         batch: {} in flight, {} per datagram; each measurement in a fresh network namespace",
        services * (destinations + 1),
        options.max_in_flight,
        options.messages_per_request
    );
    let methods = ["restore", "batch", "raw"];
    let mut times: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        for step in 0..3 {
            let which = (round + step) % 3;
            let seconds = measure_in_fresh_namespace(methods[which], services, destinations);
            println!("round {round}: {:<8} {seconds:>9.3} s", methods[which]);
            times[which].push(seconds);
        }
    }
    let [restore, batch, raw] = times.map(|mut t| median(&mut t));
    println!(
        "median of {rounds}: ipvsadm -R {restore:.3} s | batch {batch:.3} s | raw floor {raw:.3} s | \
         batch is {:.1}x faster than ipvsadm -R and {:.2}x the floor",
        restore / batch,
        batch / raw
    );
}
