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

use integration::{clear_table, connect, ipvsadm, ipvsadm_restore, restore_rules, synthetic_table};
use netlink_ipvs::{IpvsBatchOptions, IpvsHandle, IpvsOperation};
use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

const NLMSG_ERROR: u16 = 2;

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

/// Encodes every operation as one netlink message, grouped into datagrams.
fn encode_datagrams(
    family_id: u16,
    operations: &[IpvsOperation],
    per_datagram: usize,
) -> Vec<(Vec<u8>, usize, u32)> {
    let mut sequence = 1u32;
    operations
        .chunks(per_datagram)
        .map(|chunk| {
            let mut datagram = Vec::new();
            for (position, operation) in chunk.iter().enumerate() {
                let mut genl = GenlMessage::from_payload(operation.to_message());
                genl.set_resolved_family_id(family_id);
                let mut message = NetlinkMessage::from(genl);
                message.header.flags = if position + 1 == chunk.len() {
                    NLM_F_REQUEST | NLM_F_ACK
                } else {
                    NLM_F_REQUEST
                };
                message.header.sequence_number = sequence;
                sequence += 1;
                message.finalize();
                let start = datagram.len();
                datagram.resize(start + message.buffer_len(), 0);
                message.serialize(&mut datagram[start..]);
            }
            (datagram, chunk.len(), sequence - 1)
        })
        .collect()
}

/// Sends pre-encoded datagrams keeping at most `max_in_flight` messages
/// unanswered, and reads every answer until each datagram's last message is
/// answered. Returns the number of errors.
fn raw_burst(datagrams: &[(Vec<u8>, usize, u32)], max_in_flight: usize) -> usize {
    let mut socket = Socket::new(NETLINK_GENERIC).expect("netlink socket");
    socket.bind_auto().expect("bind");
    socket.connect(&SocketAddr::new(0, 0)).expect("connect");
    let _ = socket.set_rx_buf_sz(8 * 1024 * 1024);
    socket.set_cap_ack(true).expect("cap ack");
    let mut buffer = vec![0u8; 64 * 1024];
    let mut pending = std::collections::VecDeque::new();
    let (mut next, mut in_flight, mut errors) = (0, 0, 0);
    while next < datagrams.len() || !pending.is_empty() {
        while next < datagrams.len()
            && (pending.is_empty() || in_flight + datagrams[next].1 <= max_in_flight)
        {
            socket.send(&datagrams[next].0, 0).expect("send");
            in_flight += datagrams[next].1;
            pending.push_back((datagrams[next].2, datagrams[next].1));
            next += 1;
        }
        let length = socket.recv(&mut &mut buffer[..], 0).expect("recv");
        let mut offset = 0;
        while offset + 16 <= length {
            let message_length =
                u32::from_ne_bytes(buffer[offset..offset + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(buffer[offset + 4..offset + 6].try_into().unwrap());
            let sequence = u32::from_ne_bytes(buffer[offset + 8..offset + 12].try_into().unwrap());
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(buffer[offset + 16..offset + 20].try_into().unwrap());
                if code != 0 {
                    errors += 1;
                }
                if let Some(position) = pending.iter().position(|(last, _)| *last == sequence) {
                    for (_, count) in pending.drain(..=position) {
                        in_flight -= count;
                    }
                }
            }
            if message_length == 0 {
                break;
            }
            offset += (message_length + 3) & !3;
        }
    }
    errors
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
            let datagrams = encode_datagrams(
                handle.family_id(),
                &operations,
                options.messages_per_request,
            );
            let start = Instant::now();
            let errors = raw_burst(&datagrams, options.max_in_flight);
            let elapsed = start.elapsed();
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
