//! KubeProxyConfiguration files (`--config`): decoding (strict, then
//! lenient), defaulting and validation end in a configuration or an error
//! naming the field, never a panic.
#![no_main]

use ipvs_agent::config::{decode, no_effect, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(decoded) = decode("config.conf", text) {
        let _ = validate(&decoded.config);
        let _ = no_effect(&decoded.config);
    }
});
