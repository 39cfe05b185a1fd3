#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time on its committed
# corpus (fuzz/corpus/<target>/, plus the seeds fuzz/seeds.py writes), and
# fails at the first crash, panic, leak or timeout, naming the target and
# the input libFuzzer saved (fuzz/artifacts/<target>/). Prints each
# target's executions.
#
#   bash integration/scripts/fuzz.sh              # every target, 60 s each
#   FUZZ_SECONDS=600 bash integration/scripts/fuzz.sh manifest
#
# The toolchain is stable, so cargo-fuzz runs with `--sanitizer none` (as
# cargo-fuzz documents for stable): libFuzzer's coverage guidance and
# Rust's own checks (bounds, overflow with debug assertions, which
# `--debug-assertions` turns on) find the bugs; no AddressSanitizer.
# Installs cargo-fuzz (crates.io) when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root/fuzz"

seconds=${FUZZ_SECONDS:-60}
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
    cargo install --quiet --locked cargo-fuzz --version "$cargo_fuzz_version"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

python3 seeds.py
# Builds every target once (release, debug assertions on: an overflow
# panics as in the host tests).
cargo fuzz build --sanitizer none --debug-assertions

summary=()
for target in "${targets[@]}"; do
    log=$(mktemp)
    echo "fuzz: $target for ${seconds}s"
    # -timeout: one input taking longer is a finding (a hang), with room
    # for a slow CI machine; -rss_limit_mb: a leak or a blow-up is one too.
    if ! cargo fuzz run --sanitizer none --debug-assertions "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=8192 -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED; the input is in fuzz/artifacts/$target/ (make it a regression test)" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    corpus=$(find "corpus/$target" -type f | wc -l)
    summary+=("$(printf '%-18s %10s executions in %ss, corpus %s inputs, no crash' "$target" "$runs" "$seconds" "$corpus")")
    rm -f "$log"
done

printf '\nfuzz summary\n'
printf '  %s\n' "${summary[@]}"
