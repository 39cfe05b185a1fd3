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
//! Usage: `ipvs-bench SERVICES DESTINATIONS [ROUNDS]`. Each round runs the
//! three in a rotating order and clears the table between them; the table
//! is checked after each. Prints one line per measurement and a summary of
//! medians and ratios.

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

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .expect("usage: ipvs-bench SERVICES DESTINATIONS [ROUNDS]")
        })
        .collect();
    let (services, destinations) = match args.as_slice() {
        [s, d, ..] => (*s, *d),
        _ => panic!("usage: ipvs-bench SERVICES DESTINATIONS [ROUNDS]"),
    };
    let rounds = args.get(2).copied().unwrap_or(3);
    let options = IpvsBatchOptions::default();

    let operations = synthetic_table(services, destinations);
    let rules = restore_rules(&operations);
    let handle = connect();
    let datagrams = encode_datagrams(
        handle.family_id(),
        &operations,
        options.messages_per_request,
    );
    println!(
        "table: {services} services x {destinations} real servers = {} operations; \
         batch: {} in flight, {} per datagram",
        operations.len(),
        options.max_in_flight,
        options.messages_per_request
    );

    let (mut restore_times, mut batch_times, mut raw_times) = (vec![], vec![], vec![]);
    clear_table();
    for round in 0..rounds {
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let start = Instant::now();
                    ipvsadm_restore(&rules);
                    let elapsed = start.elapsed();
                    check_table(services, destinations, "ipvsadm -R");
                    println!(
                        "round {round}: ipvsadm -R   {:>8.3} s",
                        elapsed.as_secs_f64()
                    );
                    restore_times.push(elapsed);
                }
                1 => {
                    let start = Instant::now();
                    let errors = batch(&handle, &operations, options).await;
                    let elapsed = start.elapsed();
                    assert_eq!(errors, 0, "batch apply failed");
                    check_table(services, destinations, "batch apply");
                    println!(
                        "round {round}: batch apply  {:>8.3} s",
                        elapsed.as_secs_f64()
                    );
                    batch_times.push(elapsed);
                }
                _ => {
                    let start = Instant::now();
                    let errors = raw_burst(&datagrams, options.max_in_flight);
                    let elapsed = start.elapsed();
                    assert_eq!(errors, 0, "raw burst failed");
                    check_table(services, destinations, "raw burst");
                    println!(
                        "round {round}: raw burst    {:>8.3} s",
                        elapsed.as_secs_f64()
                    );
                    raw_times.push(elapsed);
                }
            }
            clear_table();
        }
    }
    let restore = median(&mut restore_times).as_secs_f64();
    let batch = median(&mut batch_times).as_secs_f64();
    let raw = median(&mut raw_times).as_secs_f64();
    println!(
        "median of {rounds}: ipvsadm -R {restore:.3} s | batch {batch:.3} s | raw floor {raw:.3} s | \
         batch is {:.1}x faster than ipvsadm -R and {:.2}x the floor",
        restore / batch,
        batch / raw
    );
}
