#!/usr/bin/env bash
# The project's one test command: installs what is missing, checks
# formatting and lints, runs the host tests, then the real-kernel tests in
# a booted guest. Fails loudly at the first failing step.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

step() { printf '\n==== %s\n' "$*"; }

step "install dependencies"
bash integration/scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "no import circle between sibling modules (every crate)"
python3 integration/scripts/check-imports.py

step "cargo doc (netlink-ipvs and the agent, warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p netlink-ipvs -p ipvs-agent --quiet

step "host tests (no kernel needed)"
cargo test --workspace --exclude integration

step "fuzz targets, ${FUZZ_SECONDS:-60} s each, on the committed corpus (fuzz/)"
bash integration/scripts/fuzz.sh

step "deploy/ manifests: kubernetes-validate and checkov"
bash integration/scripts/validate-deploy.sh

step "real-kernel tests in a QEMU guest"
bash integration/scripts/guest-tests.sh

step "all passed"
