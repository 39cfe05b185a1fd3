// SPDX-License-Identifier: MIT

//! The batch API's encoder: writes an operation's attributes straight into
//! the datagram buffer, with no intermediate `IpvsMessage`, attribute
//! vectors or strings. Byte for byte what `IpvsOperation::to_message()`
//! emits (the tests below compare the two on every kind of operation), so
//! the typed packet layer stays the one definition of the format.

use std::net::IpAddr;

use netlink_packet_core::NLA_F_NESTED;

use super::operation::IpvsOperation;
use super::wire::{IPVS_CMD_ATTR_DEST, IPVS_CMD_ATTR_SERVICE};
use crate::address::IpvsAddressFamily;
use crate::dest::{IpvsDestination, IpvsDestinationKey};
use crate::service::{IpvsService, IpvsServiceKey};

const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_FWMARK: u16 = 5;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_SVC_ATTR_PE_NAME: u16 = 11;

const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

fn pad(buffer: &mut Vec<u8>) {
    let padded = (buffer.len() + 3) & !3;
    buffer.resize(padded, 0);
}

fn put(buffer: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buffer.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(value);
    pad(buffer);
}

fn put_string(buffer: &mut Vec<u8>, kind: u16, value: &str) {
    buffer.extend_from_slice(&((4 + value.len() + 1) as u16).to_ne_bytes());
    buffer.extend_from_slice(&kind.to_ne_bytes());
    buffer.extend_from_slice(value.as_bytes());
    buffer.push(0);
    pad(buffer);
}

fn put_address(buffer: &mut Vec<u8>, kind: u16, address: &IpAddr) {
    let mut raw = [0u8; 16];
    match address {
        IpAddr::V4(v4) => raw[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => raw.copy_from_slice(&v6.octets()),
    }
    put(buffer, kind, &raw);
}

/// Starts a top-level nest; returns where its header is.
fn begin_nest(buffer: &mut Vec<u8>, kind: u16) -> usize {
    let at = buffer.len();
    buffer.extend_from_slice(&[0, 0]);
    buffer.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    at
}

fn end_nest(buffer: &mut [u8], at: usize) {
    let length = (buffer.len() - at) as u16;
    buffer[at..at + 2].copy_from_slice(&length.to_ne_bytes());
}

fn service_key(buffer: &mut Vec<u8>, key: &IpvsServiceKey) {
    put(
        buffer,
        IPVS_SVC_ATTR_AF,
        &u16::from(key.family()).to_ne_bytes(),
    );
    match key {
        IpvsServiceKey::Inet {
            protocol,
            address,
            port,
        } => {
            put(
                buffer,
                IPVS_SVC_ATTR_PROTOCOL,
                &u16::from(*protocol).to_ne_bytes(),
            );
            put_address(buffer, IPVS_SVC_ATTR_ADDR, address);
            put(buffer, IPVS_SVC_ATTR_PORT, &port.to_be_bytes());
        }
        IpvsServiceKey::Fwmark { mark, .. } => {
            put(buffer, IPVS_SVC_ATTR_FWMARK, &mark.to_ne_bytes())
        }
    }
}

fn service_key_nest(buffer: &mut Vec<u8>, key: &IpvsServiceKey) {
    let at = begin_nest(buffer, IPVS_CMD_ATTR_SERVICE);
    service_key(buffer, key);
    end_nest(buffer, at);
}

fn service_nest(buffer: &mut Vec<u8>, service: &IpvsService) {
    let at = begin_nest(buffer, IPVS_CMD_ATTR_SERVICE);
    service_key(buffer, &service.key);
    put_string(buffer, IPVS_SVC_ATTR_SCHED_NAME, &service.scheduler);
    if let Some(engine) = &service.persistence_engine {
        put_string(buffer, IPVS_SVC_ATTR_PE_NAME, engine);
    }
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&service.flags.0.to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    put(buffer, IPVS_SVC_ATTR_FLAGS, &flags);
    put(
        buffer,
        IPVS_SVC_ATTR_TIMEOUT,
        &service.timeout.to_ne_bytes(),
    );
    put(
        buffer,
        IPVS_SVC_ATTR_NETMASK,
        &service.netmask.0.to_ne_bytes(),
    );
    end_nest(buffer, at);
}

fn destination_key(buffer: &mut Vec<u8>, key: &IpvsDestinationKey) {
    put(
        buffer,
        IPVS_DEST_ATTR_ADDR_FAMILY,
        &u16::from(IpvsAddressFamily::of(&key.address)).to_ne_bytes(),
    );
    put_address(buffer, IPVS_DEST_ATTR_ADDR, &key.address);
    put(buffer, IPVS_DEST_ATTR_PORT, &key.port.to_be_bytes());
}

fn destination_key_nest(buffer: &mut Vec<u8>, key: &IpvsDestinationKey) {
    let at = begin_nest(buffer, IPVS_CMD_ATTR_DEST);
    destination_key(buffer, key);
    end_nest(buffer, at);
}

fn destination_nest(buffer: &mut Vec<u8>, destination: &IpvsDestination) {
    let at = begin_nest(buffer, IPVS_CMD_ATTR_DEST);
    destination_key(buffer, &destination.key);
    put(
        buffer,
        IPVS_DEST_ATTR_FWD_METHOD,
        &u32::from(destination.forwarding).to_ne_bytes(),
    );
    put(
        buffer,
        IPVS_DEST_ATTR_WEIGHT,
        &destination.weight.to_ne_bytes(),
    );
    put(
        buffer,
        IPVS_DEST_ATTR_TUN_TYPE,
        &[u8::from(destination.tunnel_type)],
    );
    put(
        buffer,
        IPVS_DEST_ATTR_TUN_PORT,
        &destination.tunnel_port.to_be_bytes(),
    );
    put(
        buffer,
        IPVS_DEST_ATTR_TUN_FLAGS,
        &destination.tunnel_flags.0.to_ne_bytes(),
    );
    put(
        buffer,
        IPVS_DEST_ATTR_U_THRESH,
        &destination.upper_threshold.to_ne_bytes(),
    );
    put(
        buffer,
        IPVS_DEST_ATTR_L_THRESH,
        &destination.lower_threshold.to_ne_bytes(),
    );
    end_nest(buffer, at);
}

/// Appends the attributes of `operation`'s message (what follows the
/// generic netlink header) to `buffer`, which must end 4-byte aligned.
pub(crate) fn encode_attributes(operation: &IpvsOperation, buffer: &mut Vec<u8>) {
    match operation {
        IpvsOperation::AddService(service) | IpvsOperation::EditService(service) => {
            service_nest(buffer, service)
        }
        IpvsOperation::DeleteService(key) => service_key_nest(buffer, key),
        IpvsOperation::AddDestination(key, destination)
        | IpvsOperation::EditDestination(key, destination) => {
            service_key_nest(buffer, key);
            destination_nest(buffer, destination);
        }
        IpvsOperation::DeleteDestination(key, destination) => {
            service_key_nest(buffer, key);
            destination_key_nest(buffer, destination);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::{IpvsForwardingMethod, IpvsTunnelFlags, IpvsTunnelType};
    use crate::service::{IpvsNetmask, IpvsServiceFlags};
    use netlink_packet_core::Emitable;

    fn canonical(operation: &IpvsOperation) -> Vec<u8> {
        let message = operation.to_message();
        let mut bytes = vec![0u8; message.buffer_len()];
        message.emit(&mut bytes);
        bytes
    }

    fn operations() -> Vec<IpvsOperation> {
        let v4 = IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80);
        let v6 = IpvsServiceKey::udp("fd00::10".parse().unwrap(), 53);
        let sctp = IpvsServiceKey::sctp("10.96.0.11".parse().unwrap(), 3868);
        let fwmark = IpvsServiceKey::Fwmark {
            family: IpvsAddressFamily::Inet6,
            mark: 7,
        };
        let mut persistent = IpvsService::new(v4, "wlc").persistent(10800);
        persistent.netmask = IpvsNetmask::ipv4("255.255.255.0".parse().unwrap());
        persistent.persistence_engine = Some("sip".to_owned());
        let mut flagged = IpvsService::new(v6, "sh");
        flagged.flags = IpvsServiceFlags(IpvsServiceFlags::SCHED1 | IpvsServiceFlags::SCHED2);
        flagged.netmask = IpvsNetmask::ipv6_prefix(128);
        let masquerade = IpvsDestination::new(
            "10.244.1.54".parse().unwrap(),
            9376,
            IpvsForwardingMethod::Masquerade,
            1,
        );
        let mut tunnel = IpvsDestination::new(
            "2001:db8::7".parse().unwrap(),
            0,
            IpvsForwardingMethod::Tunnel,
            0,
        );
        tunnel.tunnel_type = IpvsTunnelType::Gue;
        tunnel.tunnel_port = 6080;
        tunnel.tunnel_flags = IpvsTunnelFlags(IpvsTunnelFlags::CHECKSUM);
        tunnel.upper_threshold = 100;
        tunnel.lower_threshold = 10;
        vec![
            IpvsOperation::AddService(IpvsService::new(v4, "rr")),
            IpvsOperation::AddService(persistent.clone()),
            IpvsOperation::EditService(persistent),
            IpvsOperation::AddService(flagged),
            IpvsOperation::AddService(IpvsService::new(sctp, "mh")),
            IpvsOperation::AddService(IpvsService::new(fwmark, "")),
            IpvsOperation::DeleteService(v4),
            IpvsOperation::DeleteService(fwmark),
            IpvsOperation::AddDestination(v4, masquerade.clone()),
            IpvsOperation::EditDestination(v4, masquerade.clone()),
            IpvsOperation::AddDestination(fwmark, tunnel.clone()),
            IpvsOperation::AddDestination(v4, tunnel.clone()),
            IpvsOperation::DeleteDestination(v4, masquerade.key),
            IpvsOperation::DeleteDestination(v6, tunnel.key),
        ]
    }

    #[test]
    fn direct_encoding_equals_the_typed_path_byte_for_byte() {
        for operation in operations() {
            let mut direct = Vec::new();
            encode_attributes(&operation, &mut direct);
            assert_eq!(direct, canonical(&operation), "{operation}");
        }
    }

    #[test]
    fn direct_encoding_appends_after_earlier_messages() {
        let mut buffer = vec![0xAA; 20];
        let operation = &operations()[1];
        encode_attributes(operation, &mut buffer);
        assert_eq!(&buffer[..20], &[0xAA; 20]);
        assert_eq!(&buffer[20..], canonical(operation).as_slice());
    }
}
