// SPDX-License-Identifier: MIT

//! Resolving the `IPVS` generic netlink family id through the genl
//! controller (which also autoloads the `ip_vs` module where it can).

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::{nlas::GenlCtrlAttrs, GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use super::error::IpvsError;
use super::wire::messages;

/// Asks the generic netlink controller for the id of family `name`, over a
/// short-lived blocking socket (one request, one reply).
pub(crate) fn resolve_family_id(name: &str) -> Result<u16, IpvsError> {
    let mut socket = Socket::new(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
    socket.bind_auto().map_err(IpvsError::Socket)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(IpvsError::Socket)?;

    let mut request = NetlinkMessage::from(GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(name.to_owned())],
    }));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buffer = vec![0u8; request.buffer_len()];
    request.serialize(&mut buffer);
    socket.send(&buffer, 0).map_err(IpvsError::Socket)?;

    let mut family_id = None;
    loop {
        let (datagram, _) = socket.recv_from_full().map_err(IpvsError::Socket)?;
        for reply in messages(&datagram) {
            // Bytes that make no message fail to deserialize: a decode error.
            let bytes = match reply {
                Ok(message) => message.into_inner(),
                Err(rest) => rest,
            };
            let reply =
                NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(bytes).map_err(|source| {
                    IpvsError::Decode {
                        request: format!("resolve generic netlink family {name}"),
                        source,
                    }
                })?;
            match reply.payload {
                NetlinkPayload::InnerMessage(message) => {
                    for nla in message.payload.nlas {
                        if let GenlCtrlAttrs::FamilyId(id) = nla {
                            family_id = Some(id);
                        }
                    }
                }
                NetlinkPayload::Error(error) if error.code.is_some() => {
                    return Err(IpvsError::FamilyNotFound {
                        family: name.to_owned(),
                        source: error.to_io(),
                    });
                }
                NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => {
                    return family_id.ok_or_else(|| IpvsError::FamilyNotFound {
                        family: name.to_owned(),
                        source: std::io::Error::other("the controller sent no family id"),
                    });
                }
                _ => {}
            }
        }
    }
}
