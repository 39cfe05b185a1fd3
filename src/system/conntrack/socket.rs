//! A blocking ctnetlink socket: dump one family's entries, delete
//! entries one acknowledged request at a time. Run it with
//! `spawn_blocking`.

use netlink_sys::Socket;

use super::message::{delete_request, dump_request, parse_datagram, stats_request};
use super::ConntrackError;
use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::NetfilterFamily;
use crate::system::errno::ENOENT;
use crate::system::nfnetlink::open_socket;

/// A dump: the entries of one family, and how many messages were skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dump {
    /// The entries (with ports).
    pub entries: Vec<ConntrackEntry>,
    /// Messages that did not decode or described entries without ports.
    pub skipped: usize,
}

/// A blocking nfnetlink socket for ctnetlink.
#[derive(Debug)]
pub struct ConntrackSocket {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl ConntrackSocket {
    /// Opens the socket.
    pub fn new() -> Result<Self, ConntrackError> {
        Ok(Self {
            socket: open_socket().map_err(|error| ConntrackError::Socket {
                what: "opening a ctnetlink socket".into(),
                error,
            })?,
            sequence: 0,
            buffer: vec![0; 1 << 16],
        })
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    /// Sends `request` and reads replies until the end; `Ok(Err(errno))`
    /// when the kernel refused it.
    fn exchange(
        &mut self,
        request: &[u8],
        what: &str,
        dump: &mut Dump,
    ) -> Result<i32, ConntrackError> {
        let io_error = |error| ConntrackError::Socket {
            what: what.to_owned(),
            error,
        };
        self.socket.send(request, 0).map_err(io_error)?;
        loop {
            let size = self
                .socket
                .recv(&mut &mut self.buffer[..], 0)
                .map_err(io_error)?;
            let datagram =
                parse_datagram(&self.buffer[..size]).map_err(|detail| ConntrackError::Decode {
                    what: what.to_owned(),
                    detail,
                })?;
            dump.entries.extend(datagram.entries);
            dump.skipped += datagram.skipped;
            if let Some(errno) = datagram.end {
                return Ok(errno);
            }
        }
    }

    /// Every entry of `family` (like `conntrack -L -f ipv4`).
    pub fn dump(&mut self, family: NetfilterFamily) -> Result<Dump, ConntrackError> {
        let sequence = self.next_sequence();
        let what = format!("dumping the {} conntrack entries", family.nft_name());
        let mut dump = Dump::default();
        match self.exchange(&dump_request(family, sequence), &what, &mut dump)? {
            0 => Ok(dump),
            errno => Err(ConntrackError::Refused { what, errno }),
        }
    }

    /// Asks for the entry count (like `conntrack -C`), which loads the
    /// conntrack modules when they are not yet.
    pub fn stats(&mut self) -> Result<(), ConntrackError> {
        let sequence = self.next_sequence();
        let what = "asking for the conntrack statistics".to_owned();
        let mut ignored = Dump::default();
        match self.exchange(&stats_request(sequence), &what, &mut ignored)? {
            0 => Ok(()),
            errno => Err(ConntrackError::Refused { what, errno }),
        }
    }

    /// Deletes `entry` (like `conntrack -D` with its original tuple); an
    /// entry already gone (ENOENT) is no failure.
    pub fn delete(&mut self, entry: &ConntrackEntry) -> Result<(), ConntrackError> {
        let sequence = self.next_sequence();
        let what = format!("deleting conntrack entry {entry}");
        let mut ignored = Dump::default();
        match self.exchange(&delete_request(entry, sequence), &what, &mut ignored)? {
            0 => Ok(()),
            errno if errno == ENOENT => Ok(()),
            errno => Err(ConntrackError::Refused { what, errno }),
        }
    }
}
