//! ctnetlink dump replies (the agent reads conntrack to delete stale UDP
//! and SCTP entries): the walk never panics; an entry it decodes has the
//! addresses of one family and a request to delete it can be built.
#![no_main]

use ipvs_agent::system::conntrack::message::{delete_request, parse_datagram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(datagram) = parse_datagram(bytes) else {
        return;
    };
    for entry in &datagram.entries {
        let request = delete_request(entry, 1);
        assert!(request.len() >= 20, "a delete request has its headers");
    }
});
