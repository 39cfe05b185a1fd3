// SPDX-License-Identifier: MIT

//! Errors of the IPVS client.

use std::io;

use netlink_packet_core::DecodeError;

use super::wire::{EEXIST, ENOENT, ESRCH};

/// What went wrong talking to IPVS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpvsError {
    /// The kernel refused a request. `request` names the command and the
    /// object (`add service TCP 10.0.0.1:80`), `errno` is positive.
    #[error("{request}: {source}")]
    Kernel {
        /// The request, as a sentence naming its object.
        request: String,
        /// The positive errno the kernel answered with.
        errno: i32,
        /// The errno as an I/O error (for its message).
        source: io::Error,
    },
    /// The generic netlink controller does not know the family: the kernel
    /// has no IPVS (or cannot load `ip_vs`).
    #[error(
        "generic netlink family {family} not found (is the ip_vs module available?): {source}"
    )]
    FamilyNotFound {
        /// The family name asked for.
        family: String,
        /// What the controller answered.
        source: io::Error,
    },
    /// Creating or using the netlink socket failed.
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The connection task ended (dropped, or its socket failed).
    #[error("the netlink connection is closed")]
    ConnectionClosed,
    /// A reply could not be decoded.
    #[error("{request}: invalid reply: {source}")]
    Decode {
        /// The request the reply answered.
        request: String,
        /// The decoding error.
        source: DecodeError,
    },
    /// The kernel answered with something that does not fit the request.
    #[error("{request}: unexpected reply: {detail}")]
    UnexpectedReply {
        /// The request.
        request: String,
        /// What was wrong with the reply.
        detail: String,
    },
}

impl IpvsError {
    /// The kernel's errno, for a refused request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// `EEXIST`: the service or real server already exists.
    pub fn is_already_exists(&self) -> bool {
        self.errno() == Some(EEXIST)
    }

    /// `ESRCH`: the service named by the request does not exist.
    pub fn is_no_such_service(&self) -> bool {
        self.errno() == Some(ESRCH)
    }

    /// `ENOENT`: the real server does not exist (`SET_DEST`, `DEL_DEST`), or,
    /// on a service command, the scheduler or persistence engine does not.
    pub fn is_not_found(&self) -> bool {
        self.errno() == Some(ENOENT)
    }

    pub(crate) fn kernel(request: String, errno: i32) -> Self {
        let errno = errno.abs();
        Self::Kernel {
            request,
            errno,
            source: io::Error::from_raw_os_error(errno),
        }
    }
}
