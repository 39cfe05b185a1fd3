//! rtnetlink address messages (the replies to the agent's address dumps of
//! `kube-ipvs0` and the node's interfaces): decoding and the agent's
//! reading of the address never panic.
#![no_main]

use ipvs_agent::system::link::address_of;
use libfuzzer_sys::fuzz_target;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;

fuzz_target!(|bytes: &[u8]| {
    let Ok(message) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) else {
        return;
    };
    if let NetlinkPayload::InnerMessage(
        RouteNetlinkMessage::NewAddress(address) | RouteNetlinkMessage::DelAddress(address),
    ) = &message.payload
    {
        let _ = address_of(address);
    }
});
