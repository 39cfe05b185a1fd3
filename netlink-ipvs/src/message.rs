// SPDX-License-Identifier: MIT

//! The IPVS generic netlink message: a command and its attributes.

use netlink_packet_core::{
    DecodeError, Emitable, ErrorContext, Nla, NlasIterator, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::attribute::IpvsAttribute;
use crate::command::IpvsCommand;
use crate::nla::list_len;

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
    /// Whether the top-level nests (service, destination, daemon) carry
    /// `NLA_F_NESTED`. ipvsadm (libnl) sets it on its requests; the kernel
    /// ignores it on input and leaves it off in its replies. Parsing keeps
    /// what was on the wire, so a message re-emits byte for byte. In a
    /// message without nests it changes nothing, and parsing sets it.
    pub nested_flag: bool,
}

impl IpvsMessage {
    /// A request with `command` and `attributes`, its nests flagged
    /// `NLA_F_NESTED` as ipvsadm sends them.
    pub fn new(command: IpvsCommand, attributes: Vec<IpvsAttribute>) -> Self {
        Self {
            command,
            attributes,
            nested_flag: true,
        }
    }
}

/// A top-level attribute written with or without `NLA_F_NESTED`.
struct FlaggedAttribute<'a> {
    attribute: &'a IpvsAttribute,
    nested_flag: bool,
}

impl Nla for FlaggedAttribute<'_> {
    fn value_len(&self) -> usize {
        self.attribute.value_len()
    }

    fn kind(&self) -> u16 {
        let kind = self.attribute.kind();
        if self.nested_flag && self.attribute.is_nest() {
            kind | NLA_F_NESTED
        } else {
            kind
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        self.attribute.emit_value(buffer)
    }
}

impl IpvsMessage {
    fn flagged(&self) -> impl Iterator<Item = FlaggedAttribute<'_>> {
        self.attributes.iter().map(|attribute| FlaggedAttribute {
            attribute,
            nested_flag: self.nested_flag,
        })
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
        let mut start = 0;
        for attribute in self.flagged() {
            let length = attribute.buffer_len();
            attribute.emit(&mut buffer[start..start + length]);
            start += length;
        }
    }
}

impl ParseableParametrized<[u8], GenlHeader> for IpvsMessage {
    fn parse_with_param(buffer: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let command = IpvsCommand::from(header.cmd);
        let mut nested_flag = false;
        let mut has_nest = false;
        let attributes = NlasIterator::new(buffer)
            .map(|nla| {
                let nla = nla?;
                let attribute = IpvsAttribute::parse(&nla, command)?;
                has_nest |= attribute.is_nest();
                nested_flag |= attribute.is_nest() && nla.nested_flag();
                Ok(attribute)
            })
            .collect::<Result<Vec<_>, DecodeError>>()
            .with_context(|| format!("invalid IPVS message (command {command:?})"))?;
        Ok(Self {
            command,
            attributes,
            nested_flag: nested_flag || !has_nest,
        })
    }
}
