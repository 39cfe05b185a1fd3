#!/usr/bin/env bash
# The demo: the Service document's examples (examples/*.yaml) on a
# two-node cluster with one ipvs-agent per node, and what a person would
# check, with the answers. Nothing to type between.
#
#   bash integration/scripts/demo.sh
#
# Installs what is missing (install-deps.sh), builds the agent and the
# `demo` binary (debug, the same build the guest tests use; respects
# CARGO_TARGET_DIR), boots a Debian kernel under QEMU (in-guest.sh) and
# runs `demo` there: it prints each node's `ipvsadm -Ln` and kube-ipvs0,
# node1's nftables table, the agents' warnings, then curl-like checks
# from a pod, from node1 and from outside with PASS/FAIL each. Exits
# non-zero if a check fails (or the build, or the boot).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

started=$(date +%s)
echo "==== installing what is missing"
bash integration/scripts/install-deps.sh

echo "==== building ipvs-agent and demo (debug)"
cargo build --quiet -p ipvs-agent -p integration --bins
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in
    /*) ;;
    *) target="$root/$target" ;;
esac
built=$(date +%s)
echo "    built in $((built - started)) s"

echo "==== booting the guest (QEMU, software emulation) and running the demo"
# Through a pipe (stdout and stderr): the guest console reopens its file
# descriptor, which, were it a file, would write over this script's lines.
status=0
bash integration/scripts/in-guest.sh -- env IPVS_GUEST=1 "$target/debug/demo" 2>&1 | cat || status=$?
echo "==== demo.sh: $((($(date +%s) - started))) s in all (the guest $(($(date +%s) - built)) s), exit status $status"
exit "$status"
