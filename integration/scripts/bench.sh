#!/usr/bin/env bash
# The agent's benchmark suite (issues 6 and 16) in one command: builds the
# release binaries on the host, then runs agent-bench (P1-P4 against
# baselines from the same run) in one booted guest, the scale series (P5:
# agent-bench at each size of BENCH_SCALE Services x 5 endpoints, 3 resyncs
# and 50 changes each, in a second guest; its table printed and its plot
# written to docs/p5-scale.svg by scale-report.py), and the pure-part
# Criterion benchmarks on the host. See BENCHMARKS.md.
#
#   integration/scripts/bench.sh [SERVICES] [ENDPOINTS]    (default 20000 10)
#
# BENCH_SCALE (default "2000 20000 100000"; empty skips P5). The 100,000
# run needs the guest's 8 GiB and takes most of an hour under emulation.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
services=${1:-20000}
endpoints=${2:-10}

echo "== building (release)"
cargo build --release -p ipvs-agent -p kube-standin -p integration --bins --quiet

echo "== guest: agent-bench $services $endpoints"
bash integration/scripts/in-guest.sh --memory 4G -- target/release/agent-bench "$services" "$endpoints"

scale=${BENCH_SCALE-2000 20000 100000}
if [ -n "$scale" ]; then
    echo "== guest: P5 scale series: $scale Services x 5 endpoints"
    out=target/guest/scale
    mkdir -p "$out"
    rm -f "$out"/*.out
    runs=""
    for size in $scale; do
        runs="$runs target/release/agent-bench $size 5 --resyncs 3 --changes 50 > $out/$size.out 2>&1 || exit 1;"
    done
    bash integration/scripts/in-guest.sh --memory 8G -- bash -c "$runs"
    grep -h "^P[1-4]:" "$out"/*.out
    python3 integration/scripts/scale-report.py docs/p5-scale.svg "$out"/*.out
fi

echo "== host: Criterion benchmarks of the pure parts"
cargo bench -p ipvs-agent --bench pure -- --noplot
