//! Manifest files (`--manifests`, `plan`): any text loads into objects
//! and problems naming the document, never a panic; the desired state of
//! what loaded breaks no invariant. Seeds: examples/*.yaml.
#![no_main]

use std::path::Path;

use ipvs_agent::sources::manifests::{load_text, LoadedManifests};
use ipvs_agent_fuzz::{check, node, settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((&family, text)) = bytes.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let mut loaded = LoadedManifests::default();
    load_text(Path::new("fuzz.yaml"), text, &mut loaded);
    for problem in &loaded.problems {
        let _ = problem.to_string();
    }
    let zone = loaded.zone_of_node("node1");
    check(&loaded.cluster, &node(zone.as_deref()), &settings(family));
});
