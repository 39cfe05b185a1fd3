// SPDX-License-Identifier: MIT

//! Write operations, as values: what the batch API applies.

use std::fmt;

use crate::attribute::IpvsAttribute;
use crate::command::IpvsCommand;
use crate::dest::{IpvsDestination, IpvsDestinationKey};
use crate::message::IpvsMessage;
use crate::service::{IpvsService, IpvsServiceKey};

/// One change to the IPVS table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IpvsOperation {
    /// `NEW_SERVICE`, like `ipvsadm -A`.
    AddService(IpvsService),
    /// `SET_SERVICE`, like `ipvsadm -E`.
    EditService(IpvsService),
    /// `DEL_SERVICE`, like `ipvsadm -D` (its real servers go with it).
    DeleteService(IpvsServiceKey),
    /// `NEW_DEST`, like `ipvsadm -a`.
    AddDestination(IpvsServiceKey, IpvsDestination),
    /// `SET_DEST`, like `ipvsadm -e` (the whole real server is replaced).
    EditDestination(IpvsServiceKey, IpvsDestination),
    /// `DEL_DEST`, like `ipvsadm -d`.
    DeleteDestination(IpvsServiceKey, IpvsDestinationKey),
}

impl IpvsOperation {
    /// The command this operation is sent as.
    pub fn command(&self) -> IpvsCommand {
        match self {
            Self::AddService(_) => IpvsCommand::NewService,
            Self::EditService(_) => IpvsCommand::SetService,
            Self::DeleteService(_) => IpvsCommand::DelService,
            Self::AddDestination(..) => IpvsCommand::NewDest,
            Self::EditDestination(..) => IpvsCommand::SetDest,
            Self::DeleteDestination(..) => IpvsCommand::DelDest,
        }
    }

    /// The message that carries the operation.
    pub fn to_message(&self) -> IpvsMessage {
        let service = |key: &IpvsServiceKey| IpvsAttribute::Service(key.to_attributes());
        match self {
            Self::AddService(s) => IpvsMessage::new(
                IpvsCommand::NewService,
                vec![IpvsAttribute::Service(s.to_attributes())],
            ),
            Self::EditService(s) => IpvsMessage::new(
                IpvsCommand::SetService,
                vec![IpvsAttribute::Service(s.to_attributes())],
            ),
            Self::DeleteService(key) => {
                IpvsMessage::new(IpvsCommand::DelService, vec![service(key)])
            }
            Self::AddDestination(key, d) => IpvsMessage::new(
                IpvsCommand::NewDest,
                vec![service(key), IpvsAttribute::Dest(d.to_attributes())],
            ),
            Self::EditDestination(key, d) => IpvsMessage::new(
                IpvsCommand::SetDest,
                vec![service(key), IpvsAttribute::Dest(d.to_attributes())],
            ),
            Self::DeleteDestination(key, d) => IpvsMessage::new(
                IpvsCommand::DelDest,
                vec![service(key), IpvsAttribute::Dest(d.to_attributes())],
            ),
        }
    }
}

impl fmt::Display for IpvsOperation {
    /// A sentence naming the command and its objects, for error messages:
    /// `add real server 10.244.0.11:9376 to TCP 10.96.0.10:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddService(s) => write!(f, "add service {}", s.key),
            Self::EditService(s) => write!(f, "edit service {}", s.key),
            Self::DeleteService(key) => write!(f, "delete service {key}"),
            Self::AddDestination(key, d) => write!(f, "add real server {} to {key}", d.key),
            Self::EditDestination(key, d) => write!(f, "edit real server {} of {key}", d.key),
            Self::DeleteDestination(key, d) => write!(f, "delete real server {d} of {key}"),
        }
    }
}
