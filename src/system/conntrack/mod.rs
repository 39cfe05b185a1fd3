//! Conntrack entries over ctnetlink (`NETLINK_NETFILTER`, the
//! `NFNL_SUBSYS_CTNETLINK` subsystem): the dump of one family's entries
//! and the delete of given ones, for the cleanup of stale UDP and SCTP
//! flows (which entries go is decided purely in `diff::conntrack`).
//!
//! - [`message`]: the requests and the reply walk (pure, byte-tested).
//! - [`socket`]: the blocking socket; [`dump_entries`] and
//!   [`delete_entries`] run it on the blocking pool.
//!
//! Like `conntrack -L -f ipv4` and `conntrack -D -p udp -s .. -d ..
//! --sport .. --dport ..`; the messages are rust-netlink's
//! `netlink-packet-netfilter`.

pub mod message;
pub mod socket;

#[cfg(test)]
mod tests;

use std::io;

use netlink_ipvs::IpvsProtocol;

use crate::model::conntrack::ConntrackEntry;
use crate::model::netfilter::NetfilterFamily;

pub use socket::{ConntrackSocket, Dump};

/// A failure to read or delete conntrack entries; each names what was
/// being done (the entry, for a delete).
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The socket failed.
    #[error("{what}: {error}")]
    Socket {
        /// What was being done.
        what: String,
        /// The socket's error.
        error: io::Error,
    },
    /// The kernel refused a request.
    #[error("{what}: the kernel refused it (errno {errno})")]
    Refused {
        /// What was asked.
        what: String,
        /// Its errno.
        errno: i32,
    },
    /// A reply whose framing is broken.
    #[error("{what}: undecodable reply: {detail}")]
    Decode {
        /// What was asked.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The blocking task died.
    #[error("conntrack task: {0}")]
    Task(String),
}

/// The entries of `families` whose protocol is one of `protocols`.
pub async fn dump_entries(
    families: Vec<NetfilterFamily>,
    protocols: Vec<IpvsProtocol>,
) -> Result<Dump, ConntrackError> {
    tokio::task::spawn_blocking(move || {
        let mut socket = ConntrackSocket::new()?;
        let mut all = Dump::default();
        for family in families {
            let dump = socket.dump(family)?;
            all.skipped += dump.skipped;
            all.entries.extend(
                dump.entries
                    .into_iter()
                    .filter(|entry| protocols.contains(&entry.protocol)),
            );
        }
        Ok(all)
    })
    .await
    .map_err(|error| ConntrackError::Task(error.to_string()))?
}

/// Deletes `entries`, one request each; one result per entry, in order
/// (an entry already gone counts as deleted).
pub async fn delete_entries(entries: Vec<ConntrackEntry>) -> Vec<Result<(), ConntrackError>> {
    let count = entries.len();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut socket = match ConntrackSocket::new() {
            Ok(socket) => socket,
            Err(error) => {
                let what = error.to_string();
                return entries
                    .iter()
                    .map(|entry| {
                        Err(ConntrackError::Socket {
                            what: format!("deleting conntrack entry {entry}"),
                            error: io::Error::other(what.clone()),
                        })
                    })
                    .collect();
            }
        };
        entries.iter().map(|entry| socket.delete(entry)).collect()
    })
    .await;
    match outcome {
        Ok(results) => results,
        Err(error) => (0..count)
            .map(|_| Err(ConntrackError::Task(error.to_string())))
            .collect(),
    }
}
