//! nf_tables replies (the agent reads its own tables' sets back over
//! nfnetlink): the datagram walk and the element decoder of every set
//! shape in both families never panic, and a decoded element is one the
//! agent writes (its text is printable).
#![no_main]

use ipvs_agent::model::netfilter::{NetfilterFamily, NetfilterSet, SetElements};
use ipvs_agent::system::netfilter::read::{decode_element, decode_elements, parse_datagram};
use ipvs_agent::system::netfilter::script::element_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(datagram) = parse_datagram(bytes) {
        for (_, attributes) in &datagram.messages {
            for family in NetfilterFamily::ALL {
                for set in NetfilterSet::ALL {
                    let mut elements = SetElements::new();
                    decode_elements(family, set, attributes, &mut elements);
                }
            }
        }
    }
    // A raw key (and, after a zero byte, a range end) of every shape.
    let (key, end) = match bytes.iter().position(|byte| *byte == 0xff) {
        Some(at) => (&bytes[..at], Some(&bytes[at + 1..])),
        None => (bytes, None),
    };
    for family in NetfilterFamily::ALL {
        for set in NetfilterSet::ALL {
            if let Some(element) = decode_element(family, set, key, end) {
                let _ = element_text(&element);
            }
        }
    }
});
