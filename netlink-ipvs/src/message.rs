// SPDX-License-Identifier: MIT

//! The IPVS generic netlink message: a command and its attributes.

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, NlasIterator, ParseableParametrized,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::attribute::IpvsAttribute;
use crate::command::IpvsCommand;
use crate::nla::{emit_list, list_len};

/// The generic netlink family name of IPVS.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// The IPVS generic netlink family version.
pub const IPVS_GENL_VERSION: u8 = 1;

/// An IPVS message: the payload of a `GenlMessage` of the `IPVS` family.
/// IPVS has no family-specific header: attributes follow the genl header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The command (the genl header's `cmd`).
    pub command: IpvsCommand,
    /// The attributes, in wire order.
    pub attributes: Vec<IpvsAttribute>,
}

impl IpvsMessage {
    /// A message with `command` and `attributes`.
    pub fn new(command: IpvsCommand, attributes: Vec<IpvsAttribute>) -> Self {
        Self {
            command,
            attributes,
        }
    }
}

impl GenlFamily for IpvsMessage {
    fn family_name() -> &'static str {
        IPVS_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.command.into()
    }

    fn version(&self) -> u8 {
        IPVS_GENL_VERSION
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        list_len(&self.attributes)
    }

    fn emit(&self, buffer: &mut [u8]) {
        emit_list(&self.attributes, buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buffer: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let command = IpvsCommand::from(header.cmd);
        let attributes = NlasIterator::new(buffer)
            .map(|nla| IpvsAttribute::parse(&nla?, command))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("invalid IPVS message (command {command:?})"))?;
        Ok(Self {
            command,
            attributes,
        })
    }
}
