// SPDX-License-Identifier: MIT

//! The pipelined batch API: many operations, a bounded number in flight,
//! one result per operation in order.
//!
//! Operations are packed `messages_per_request` to a datagram. The kernel
//! processes the messages of a datagram in order, goes on after a failure,
//! and answers every failed message with an error carrying its sequence
//! number, whether or not it asked for an ACK. So only the last message of
//! each datagram asks for an ACK: its answer (ACK or error) says the whole
//! datagram is done, and every message of it without an error succeeded.
//! Up to `max_in_flight` messages are sent before their answers are read;
//! no operation waits for the previous one's answer.
//!
//! The batch uses its own netlink socket (opened on first use), not the
//! netlink-proto connection: reading one answer per datagram instead of
//! one per message, and encoding straight into one reused buffer, is what
//! keeps it close to the kernel's own speed (see BENCHMARKS.md).
//!
//! This file is the socket only; `IpvsHandle::apply` (`handle.rs`) opens
//! it on first use and drives it.

use std::collections::VecDeque;
use std::io;

use netlink_packet_core::{NLM_F_ACK, NLM_F_REQUEST};
use netlink_sys::{
    protocols::NETLINK_GENERIC, AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket,
};

use super::encode::encode_attributes;
use super::error::IpvsError;
use super::operation::IpvsOperation;
use super::wire::{
    error_code, messages, DATAGRAM_BUFFER_BYTES, ENOBUFS, GENL_HDRLEN, NLMSG_ERROR, NLMSG_HDRLEN,
    RECEIVE_BUFFER_BYTES,
};
use crate::message::IPVS_GENL_VERSION;

/// How the batch API paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpvsBatchOptions {
    /// Messages sent whose datagram is not yet answered, at most. Unread
    /// answers occupy the socket's receive buffer: too many would overrun
    /// it, and an overrun loses answers (reported as errors, never as
    /// successes).
    pub max_in_flight: usize,
    /// Messages packed into one datagram (one `sendmsg`).
    pub messages_per_request: usize,
}

impl Default for IpvsBatchOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 1024,
            messages_per_request: 128,
        }
    }
}

/// The batch socket of a handle, with its reused buffers.
pub(crate) struct BatchSocket {
    socket: TokioSocket,
    next_sequence: u32,
    send_buffer: Vec<u8>,
    receive_buffer: Vec<u8>,
    /// At most this many messages in flight, whatever the options say:
    /// halved at each receive buffer overrun, for the socket's life (the
    /// buffer it overran does not grow).
    in_flight_limit: usize,
}

impl std::fmt::Debug for BatchSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSocket")
            .field("next_sequence", &self.next_sequence)
            .finish_non_exhaustive()
    }
}

/// A datagram sent and not yet fully answered: operations
/// `first..first + count`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    first: usize,
    count: usize,
}

impl BatchSocket {
    pub(crate) fn open() -> io::Result<Self> {
        let mut socket = TokioSocket::new(NETLINK_GENERIC)?;
        let inner = socket.socket_mut();
        inner.bind_auto()?;
        inner.connect(&SocketAddr::new(0, 0))?;
        // Best effort: a smaller buffer only makes overruns likelier.
        let _ = inner.set_rx_buf_sz(RECEIVE_BUFFER_BYTES);
        inner.set_cap_ack(true)?;
        Ok(Self {
            socket,
            next_sequence: 1,
            send_buffer: Vec::with_capacity(DATAGRAM_BUFFER_BYTES),
            receive_buffer: Vec::with_capacity(DATAGRAM_BUFFER_BYTES),
            in_flight_limit: usize::MAX,
        })
    }

    /// Appends one request to the send buffer, encoding its attributes
    /// directly (see `encode.rs`).
    fn encode(&mut self, family_id: u16, sequence: u32, operation: &IpvsOperation, ack: bool) {
        let flags = if ack {
            NLM_F_REQUEST | NLM_F_ACK
        } else {
            NLM_F_REQUEST
        };
        let start = self.send_buffer.len();
        self.send_buffer
            .resize(start + NLMSG_HDRLEN + GENL_HDRLEN, 0);
        encode_attributes(operation, &mut self.send_buffer);
        let length = self.send_buffer.len() - start;
        let buffer = &mut self.send_buffer[start..];
        buffer[0..4].copy_from_slice(&(length as u32).to_ne_bytes());
        buffer[4..6].copy_from_slice(&family_id.to_ne_bytes());
        buffer[6..8].copy_from_slice(&flags.to_ne_bytes());
        buffer[8..12].copy_from_slice(&sequence.to_ne_bytes());
        // Port id 0: the kernel fills in ours. Then the genl header.
        buffer[16] = operation.command().into();
        buffer[17] = IPVS_GENL_VERSION;
    }

    pub(crate) async fn apply(
        &mut self,
        family_id: u16,
        operations: &[IpvsOperation],
        options: IpvsBatchOptions,
    ) -> Vec<Result<(), IpvsError>> {
        let per_request = options.messages_per_request.max(1);
        let mut max_in_flight = options
            .max_in_flight
            .min(self.in_flight_limit)
            .max(per_request);
        let total = operations.len();
        let base = self.next_sequence;
        self.next_sequence = base.wrapping_add(total as u32);
        let mut results: Vec<Option<Result<(), IpvsError>>> = (0..total).map(|_| None).collect();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut in_flight = 0;
        let mut next = 0;

        while next < total || !pending.is_empty() {
            while next < total {
                let count = per_request.min(total - next);
                if !pending.is_empty() && in_flight + count > max_in_flight {
                    break;
                }
                self.send_buffer.clear();
                for (index, operation) in operations.iter().enumerate().skip(next).take(count) {
                    let sequence = base.wrapping_add(index as u32);
                    let last = index + 1 == next + count;
                    self.encode(family_id, sequence, operation, last);
                }
                match self.socket.send(&self.send_buffer).await {
                    Ok(_) => {
                        pending.push_back(Pending { first: next, count });
                        in_flight += count;
                    }
                    Err(error) => {
                        for index in next..next + count {
                            results[index] = Some(Err(socket_error(&operations[index], &error)));
                        }
                    }
                }
                next += count;
            }
            if pending.is_empty() {
                continue;
            }

            self.receive_buffer.clear();
            match self.socket.recv(&mut self.receive_buffer).await {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(ENOBUFS) => {
                    // Answers were dropped: nothing still pending can be
                    // known to have succeeded. The kernel reports an
                    // overrun once and then drops every answer, silently,
                    // until the queue is read empty: so the queued
                    // answers (all to datagrams sent before now: the
                    // kernel answers within sendmsg) are read and thrown
                    // away here, or the answers to what is sent next
                    // would be dropped without a word and waited for
                    // forever. None of them can be trusted: an error
                    // answer before a queued ACK may be the one dropped.
                    self.discard_queued_answers();
                    // Fewer in flight from now on (this batch and the
                    // next): messages that fail are answered one by one,
                    // not datagram by datagram, and overran at this pace.
                    max_in_flight = (max_in_flight / 2).max(per_request);
                    self.in_flight_limit = max_in_flight;
                    for datagram in pending.drain(..) {
                        for index in datagram.first..datagram.first + datagram.count {
                            results[index].get_or_insert_with(|| {
                                Err(IpvsError::UnexpectedReply {
                                    request: operations[index].to_string(),
                                    detail: "the answer was lost: the receive buffer overran \
                                             (ENOBUFS); re-read the kernel table"
                                        .into(),
                                })
                            });
                        }
                    }
                    in_flight = 0;
                    continue;
                }
                Err(error) => {
                    for datagram in pending.drain(..) {
                        for index in datagram.first..datagram.first + datagram.count {
                            results[index].get_or_insert_with(|| {
                                Err(socket_error(&operations[index], &error))
                            });
                        }
                    }
                    for index in next..total {
                        results[index] = Some(Err(socket_error(&operations[index], &error)));
                    }
                    next = total;
                    in_flight = 0;
                    continue;
                }
            }

            for reply in messages(&self.receive_buffer).map_while(Result::ok) {
                let index = reply.sequence_number().wrapping_sub(base) as usize;
                if reply.message_type() != NLMSG_ERROR || index >= total {
                    continue;
                }
                if let Some(code) = error_code(&reply) {
                    if code != 0 && results[index].is_none() {
                        results[index] =
                            Some(Err(IpvsError::kernel(operations[index].to_string(), code)));
                    }
                    // An answer to a datagram's last message completes it and
                    // every datagram before it (the kernel runs them in order).
                    if let Some(position) = pending
                        .iter()
                        .position(|datagram| datagram.first + datagram.count - 1 == index)
                    {
                        for datagram in pending.drain(..=position) {
                            in_flight -= datagram.count;
                            for slot in
                                &mut results[datagram.first..datagram.first + datagram.count]
                            {
                                slot.get_or_insert(Ok(()));
                            }
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or(Err(IpvsError::ConnectionClosed)))
            .collect()
    }
}

impl BatchSocket {
    /// Reads and drops every answer queued on the socket, without waiting
    /// (the socket is non-blocking): until it is read empty after an
    /// overrun, the kernel drops every new answer without reporting it.
    fn discard_queued_answers(&mut self) {
        loop {
            self.receive_buffer.clear();
            match self.socket.socket_ref().recv(&mut self.receive_buffer, 0) {
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // WouldBlock: empty. Another ENOBUFS: more was dropped,
                // go on reading. Anything else: the next read reports it.
                Err(error) if error.raw_os_error() == Some(ENOBUFS) => continue,
                Err(_) => break,
            }
        }
    }
}

/// `operation`'s result when the socket failed: the socket's error, naming
/// the operation.
pub(crate) fn socket_error(operation: &IpvsOperation, error: &io::Error) -> IpvsError {
    IpvsError::Socket(io::Error::new(
        error.kind(),
        format!("{operation}: {error}"),
    ))
}
