#!/usr/bin/env bash
# The datapath part of a sync (issue 12) in one command: builds the release
# binaries on the host (into $CARGO_TARGET_DIR when set), then runs
# datapath-bench in one booted guest: the agent's nftables phase (first
# sync, one Service added and removed, an endpoint change) beside
# kube-proxy's ipset + iptables-restore and one `nft -f` of the whole
# table, all from the same run. See BENCHMARKS.md, issue 12.
#
#   integration/scripts/datapath-bench.sh [SERVICES] [ROUNDS]   (default 20000 3)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
services=${1:-20000}
rounds=${2:-3}
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac

echo "== building (release, into $target)"
cargo build --release -p ipvs-agent -p integration --bins --quiet

for tool in nft ipset iptables-restore; do
    command -v "$tool" >/dev/null || { echo "datapath-bench: $tool is missing (run integration/scripts/install-deps.sh)" >&2; exit 2; }
done

echo "== guest: datapath-bench $services $rounds"
# Bounded: 20,000 Services take about ten minutes under emulation.
timeout 3600 bash integration/scripts/in-guest.sh --memory 4G -- \
    "$target/release/datapath-bench" "$services" "$rounds"
