// SPDX-License-Identifier: MIT

//! The pipelined batch API: many operations, a bounded number in flight,
//! one result per operation in order.
//!
//! Operations are packed `messages_per_request` to a datagram (the kernel
//! processes the messages of a datagram in order and goes on after a
//! failure, answering each with its own ACK or error), and up to
//! `max_in_flight` messages are sent before their answers are read. No
//! operation waits for the previous one's ACK.

use futures::StreamExt;
use netlink_packet_core::{NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_proto::sys::SocketAddr;

use super::error::IpvsError;
use super::handle::IpvsHandle;
use super::operation::IpvsOperation;

/// How the batch API paces its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpvsBatchOptions {
    /// Messages sent but not yet answered, at most. Every unread answer
    /// occupies the socket's receive buffer: too many overrun it.
    pub max_in_flight: usize,
    /// Messages packed into one datagram (one `sendmsg`).
    pub messages_per_request: usize,
}

impl Default for IpvsBatchOptions {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            messages_per_request: 64,
        }
    }
}

/// Results of one datagram: one per operation, matched by sequence number.
async fn apply_request(
    handle: &IpvsHandle,
    operations: &[IpvsOperation],
) -> Vec<Result<(), IpvsError>> {
    let messages = operations
        .iter()
        .map(|operation| handle.netlink_message(operation.to_message(), NLM_F_REQUEST | NLM_F_ACK));
    let mut replies = match handle
        .connection()
        .request_batch(messages, SocketAddr::new(0, 0))
    {
        Ok(replies) => replies,
        Err(_) => {
            return operations
                .iter()
                .map(|_| Err(IpvsError::ConnectionClosed))
                .collect()
        }
    };
    // netlink-proto numbers the messages of a datagram consecutively; each
    // gets exactly one answer (ACK or error), echoing its sequence number.
    let mut answers: Vec<(u32, Option<i32>)> = Vec::with_capacity(operations.len());
    let mut overrun = false;
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::Error(error) => answers.push((
                reply.header.sequence_number,
                error.code.map(|code| code.get()),
            )),
            NetlinkPayload::Overrun(_) => overrun = true,
            _ => {}
        }
    }
    let mut results: Vec<Option<Result<(), IpvsError>>> = operations.iter().map(|_| None).collect();
    if let Some(first) = answers.iter().map(|(sequence, _)| *sequence).min() {
        // Sequence numbers wrap at u32::MAX.
        for (sequence, code) in answers {
            let index = sequence.wrapping_sub(first) as usize;
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(match code {
                    None => Ok(()),
                    Some(code) => Err(IpvsError::kernel(operations[index].to_string(), code)),
                });
            }
        }
    }
    results
        .into_iter()
        .zip(operations)
        .map(|(result, operation)| {
            result.unwrap_or_else(|| {
                Err(if overrun {
                    IpvsError::UnexpectedReply {
                        request: operation.to_string(),
                        detail: "the answer was lost: the receive buffer overran (ENOBUFS)".into(),
                    }
                } else {
                    IpvsError::ConnectionClosed
                })
            })
        })
        .collect()
}

impl IpvsHandle {
    /// Applies `operations` with the default pacing; see
    /// [`IpvsHandle::apply_with`].
    pub async fn apply(&self, operations: &[IpvsOperation]) -> Vec<Result<(), IpvsError>> {
        self.apply_with(operations, IpvsBatchOptions::default())
            .await
    }

    /// Applies `operations` in order, pipelined, and returns one result per
    /// operation, in the same order. A failed operation does not stop the
    /// ones after it (the kernel goes on too), so callers can treat
    /// `EEXIST` / `ESRCH` / `ENOENT` per operation.
    ///
    /// Operations that depend on each other (a service, then its real
    /// servers) may share a batch: the kernel runs them in order.
    pub async fn apply_with(
        &self,
        operations: &[IpvsOperation],
        options: IpvsBatchOptions,
    ) -> Vec<Result<(), IpvsError>> {
        let per_request = options.messages_per_request.max(1);
        let requests_in_flight = (options.max_in_flight / per_request).max(1);
        let mut results = Vec::with_capacity(operations.len());
        let mut answered = futures::stream::iter(operations.chunks(per_request))
            .map(|chunk| apply_request(self, chunk))
            .buffered(requests_in_flight);
        while let Some(chunk_results) = answered.next().await {
            results.extend(chunk_results);
        }
        results
    }
}
