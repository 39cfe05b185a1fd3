//! The kernel's floor for applying a table: the same netlink messages the
//! batch API sends, encoded before the clock starts and sent over a plain
//! blocking socket with the same in-flight bound (used by the benchmarks).

use std::time::{Duration, Instant};

use netlink_ipvs::{IpvsBatchOptions, IpvsOperation};
use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

const NLMSG_ERROR: u16 = 2;

/// Encodes every operation as one netlink message, grouped into datagrams.
pub fn encode_datagrams(
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

/// A blocking generic netlink socket talking to the kernel.
pub(crate) fn kernel_socket(receive_buffer: usize) -> Socket {
    let mut socket = Socket::new(NETLINK_GENERIC).expect("netlink socket");
    socket.bind_auto().expect("bind");
    socket.connect(&SocketAddr::new(0, 0)).expect("connect");
    let _ = socket.set_rx_buf_sz(receive_buffer);
    socket
}

/// The netlink messages in one received datagram: (type, sequence
/// number, payload).
fn messages(datagram: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    let mut rest = datagram;
    std::iter::from_fn(move || {
        let message = NetlinkBuffer::new_checked(rest).ok()?;
        let length = message.length() as usize;
        let item = (
            message.message_type(),
            message.sequence_number(),
            &rest[16..length],
        );
        rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
        Some(item)
    })
}

/// Sends pre-encoded datagrams keeping at most `max_in_flight` messages
/// unanswered, and reads every answer until each datagram's last message is
/// answered. Returns the number of errors.
pub fn raw_burst(datagrams: &[(Vec<u8>, usize, u32)], max_in_flight: usize) -> usize {
    let socket = kernel_socket(8 * 1024 * 1024);
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
        for (kind, sequence, payload) in messages(&buffer[..length]) {
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(payload[..4].try_into().unwrap());
                if code != 0 {
                    errors += 1;
                }
                if let Some(position) = pending.iter().position(|(last, _)| *last == sequence) {
                    for (_, count) in pending.drain(..=position) {
                        in_flight -= count;
                    }
                }
            }
        }
    }
    errors
}

/// The floor for `operations`: encodes them as the batch API would
/// (`options`), then times only sending them and reading every answer.
/// Returns the time and the number of errors.
pub fn timed_raw_burst(
    family_id: u16,
    operations: &[IpvsOperation],
    options: &IpvsBatchOptions,
) -> (Duration, usize) {
    let datagrams = encode_datagrams(family_id, operations, options.messages_per_request);
    let start = Instant::now();
    let errors = raw_burst(&datagrams, options.max_in_flight);
    (start.elapsed(), errors)
}

const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;

/// One `IPVS_CMD_GET_DEST` dump request per virtual server, encoded.
pub fn encode_dest_dumps(family_id: u16, keys: &[netlink_ipvs::IpvsServiceKey]) -> Vec<Vec<u8>> {
    use netlink_ipvs::{IpvsAttribute, IpvsCommand, IpvsMessage};
    keys.iter()
        .enumerate()
        .map(|(index, key)| {
            let request = IpvsMessage::new(
                IpvsCommand::GetDest,
                vec![IpvsAttribute::Service(key.to_attributes())],
            );
            let mut genl = GenlMessage::from_payload(request);
            genl.set_resolved_family_id(family_id);
            let mut message = NetlinkMessage::from(genl);
            message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            message.header.sequence_number = index as u32 + 1;
            message.finalize();
            let mut bytes = vec![0u8; message.buffer_len()];
            message.serialize(&mut bytes);
            bytes
        })
        .collect()
}

/// Runs the pre-encoded dumps one after the other on one blocking socket,
/// reading every answer until each dump's `NLMSG_DONE`, decoding nothing.
/// Returns the bytes received.
pub fn raw_dumps(requests: &[Vec<u8>]) -> usize {
    let socket = kernel_socket(1024 * 1024);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = 0;
    for request in requests {
        socket.send(request, 0).expect("send");
        loop {
            let length = socket.recv(&mut &mut buffer[..], 0).expect("recv");
            received += length;
            if messages(&buffer[..length])
                .any(|(kind, _, _)| kind == NLMSG_DONE || kind == NLMSG_ERROR)
            {
                break;
            }
        }
    }
    received
}

/// The floor for reading the real servers of `keys`: every dump request
/// encoded before the clock starts, then run on `sockets` sockets (one
/// thread each, the keys split between them), nothing decoded. Returns the
/// time and the bytes received.
pub fn timed_raw_dumps(
    family_id: u16,
    keys: &[netlink_ipvs::IpvsServiceKey],
    sockets: usize,
) -> (Duration, usize) {
    let requests = encode_dest_dumps(family_id, keys);
    let share = requests.len().div_ceil(sockets.max(1)).max(1);
    let start = Instant::now();
    let received = std::thread::scope(|scope| {
        let workers: Vec<_> = requests
            .chunks(share)
            .map(|chunk| scope.spawn(move || raw_dumps(chunk)))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a dump thread"))
            .sum()
    });
    (start.elapsed(), received)
}
