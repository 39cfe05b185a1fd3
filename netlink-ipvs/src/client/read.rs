// SPDX-License-Identifier: MIT

//! Reading the whole table in one go, as a drift audit or a listing needs.
//!
//! The kernel answers each real-server dump on its own socket, one dump at
//! a time (a second dump on a busy socket gets `EBUSY`). Measured in the
//! guest with 20,000 services × 10 real servers, the kernel's own part
//! (every dump pre-encoded, sent on a plain blocking socket, nothing
//! decoded) takes 4 s, while the same dumps through the async connection
//! (a channel, a task wake-up and a reply stream per dump) took 21 s and
//! `ipvsadm -Ln` 14 s. So the table is read here on plain blocking
//! sockets, one per reader thread, each running its share of the dumps
//! back to back and decoding the replies where they land.

use std::io;
use std::thread;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use super::decode::{decode_destinations, keep_first_of_each, parse_services, IpvsTableEntry};
use super::error::IpvsError;
use super::wire::{
    error_code, messages, DATAGRAM_BUFFER_BYTES, DUMP_RECEIVE_BUFFER_BYTES, NLMSG_DONE,
    NLMSG_ERROR, NLMSG_NOOP, NLMSG_OVERRUN,
};
use crate::attribute::IpvsAttribute;
use crate::command::IpvsCommand;
use crate::message::IpvsMessage;
use crate::service::IpvsService;
use crate::stats::IpvsCounters;

/// How many sockets (and threads) read the real servers.
pub const TABLE_READERS: usize = 2;

/// A blocking generic-netlink socket that runs one dump at a time.
struct DumpSocket {
    socket: Socket,
    family_id: u16,
    sequence: u32,
    receive_buffer: Vec<u8>,
}

impl DumpSocket {
    fn open(family_id: u16) -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Best effort: a dump part is read as soon as it is queued.
        let _ = socket.set_rx_buf_sz(DUMP_RECEIVE_BUFFER_BYTES);
        Ok(Self {
            socket,
            family_id,
            sequence: 0,
            receive_buffer: vec![0; DATAGRAM_BUFFER_BYTES],
        })
    }

    /// Runs one dump, handing each reply (a whole netlink message, header
    /// included) to `on_reply`.
    fn dump(
        &mut self,
        request: IpvsMessage,
        describe: &dyn Fn() -> String,
        mut on_reply: impl FnMut(&[u8]) -> Result<(), IpvsError>,
    ) -> Result<(), IpvsError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut genl = GenlMessage::from_payload(request);
        genl.set_resolved_family_id(self.family_id);
        let mut message = NetlinkMessage::from(genl);
        message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        message.header.sequence_number = self.sequence;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(IpvsError::Socket)?;
        loop {
            let length = self
                .socket
                .recv(&mut &mut self.receive_buffer[..], 0)
                .map_err(IpvsError::Socket)?;
            for reply in messages(&self.receive_buffer[..length]).map_while(Result::ok) {
                if reply.sequence_number() == self.sequence {
                    match reply.message_type() {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = error_code(&reply).unwrap_or(0);
                            return match std::num::NonZeroI32::new(code) {
                                Some(code) => Err(IpvsError::kernel(describe(), code.get())),
                                None => Ok(()),
                            };
                        }
                        NLMSG_OVERRUN => {
                            return Err(IpvsError::UnexpectedReply {
                                request: describe(),
                                detail: "the socket's receive buffer overran (ENOBUFS)".into(),
                            })
                        }
                        NLMSG_NOOP => {}
                        _ => on_reply(reply.into_inner())?,
                    }
                }
            }
        }
    }
}

/// Reads every service with its real servers (the kernel's order), with
/// `readers` sockets on as many threads, keeping or skipping `counters`.
/// Blocking: call it off the async runtime's workers.
pub(crate) fn read_table<T, F>(
    family_id: u16,
    readers: usize,
    counters: IpvsCounters,
    convert: F,
) -> Result<Vec<T>, IpvsError>
where
    T: Send,
    F: Fn(IpvsTableEntry) -> T + Sync,
{
    let convert = &convert;
    let describe_services = || "list services".to_string();
    let mut socket = DumpSocket::open(family_id).map_err(IpvsError::Socket)?;
    let mut replies = Vec::new();
    socket.dump(
        IpvsMessage::new(IpvsCommand::GetService, vec![]),
        &describe_services,
        |reply| {
            let message = NetlinkMessage::<GenlMessage<IpvsMessage>>::deserialize(reply).map_err(
                |error| IpvsError::UnexpectedReply {
                    request: describe_services(),
                    detail: format!("undecodable reply: {error}"),
                },
            )?;
            if let NetlinkPayload::InnerMessage(genl) = message.payload {
                replies.push(genl.payload);
            }
            Ok(())
        },
    )?;
    let mut services = parse_services(replies, describe_services)?;
    keep_first_of_each(&mut services, |service| service.key);
    if counters == IpvsCounters::Skip {
        for service in &mut services {
            service.stats = None;
        }
    }

    let share = services.len().div_ceil(readers.max(1)).max(1);
    let mut shares: Vec<Vec<IpvsService>> = Vec::new();
    while !services.is_empty() {
        let rest = services.split_off(share.min(services.len()));
        shares.push(std::mem::replace(&mut services, rest));
    }
    let results: Vec<Result<Vec<T>, IpvsError>> = thread::scope(|scope| {
        let workers: Vec<_> = shares
            .into_iter()
            .map(|services| {
                scope.spawn(move || -> Result<Vec<T>, IpvsError> {
                    let mut socket = DumpSocket::open(family_id).map_err(IpvsError::Socket)?;
                    let mut entries = Vec::with_capacity(services.len());
                    for service in services {
                        let key = service.key;
                        let describe = || format!("list real servers of {key}");
                        let mut destinations = Vec::new();
                        socket.dump(
                            IpvsMessage::new(
                                IpvsCommand::GetDest,
                                vec![IpvsAttribute::Service(key.to_attributes())],
                            ),
                            &describe,
                            |reply| {
                                decode_destinations(
                                    reply,
                                    key.family(),
                                    counters,
                                    &mut destinations,
                                )
                                .map_err(|source| {
                                    IpvsError::Decode {
                                        request: describe(),
                                        source,
                                    }
                                })
                            },
                        )?;
                        // Each once, as `IpvsHandle::destinations` gives them.
                        keep_first_of_each(&mut destinations, |destination| destination.key);
                        entries.push(convert(IpvsTableEntry {
                            service,
                            destinations,
                        }));
                    }
                    Ok(entries)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    Err(IpvsError::UnexpectedReply {
                        request: "read the table".into(),
                        detail: "a reader thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut table = Vec::new();
    for result in results {
        table.extend(result?);
    }
    Ok(table)
}
