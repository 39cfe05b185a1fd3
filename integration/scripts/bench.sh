#!/usr/bin/env bash
# The agent's benchmark suite (issue 6) in one command: builds the release
# binaries on the host, then runs agent-bench (P1-P4 against baselines from
# the same run) and ipvs-bench (the batch API) in one booted guest, and the
# pure-part Criterion benchmarks on the host. See BENCHMARKS.md.
#
#   integration/scripts/bench.sh [SERVICES] [ENDPOINTS]    (default 20000 10)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
services=${1:-20000}
endpoints=${2:-10}

echo "== building (release)"
cargo build --release -p ipvs-agent -p kube-standin -p integration --bins --quiet

echo "== guest: agent-bench $services $endpoints"
bash integration/scripts/in-guest.sh --memory 4G -- target/release/agent-bench "$services" "$endpoints"

echo "== host: Criterion benchmarks of the pure parts"
cargo bench -p ipvs-agent --bench pure -- --noplot
