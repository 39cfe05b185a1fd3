#!/usr/bin/env bash
# Builds the real-kernel tests (the `integration` crate's test binaries)
# and the examples on the host, then runs every test binary in ONE guest
# boot, one test at a time (kernel state is global), with IPVS_GUEST=1.
# Fails if any binary fails, or if none was found.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

echo "== building the guest tests"
cargo build --examples --quiet
cargo build -p ipvs-agent --bins --quiet   # the agent binary the end-to-end tests start
cargo build --release -p ipvs-agent --bins --quiet # what the DaemonSet ships: memory_limit.rs runs it
cargo build -p kube-standin --bins --quiet # the API stand-in they run it against
binaries=$(cargo test -p integration --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    message = json.loads(line)
    if message.get("reason") == "compiler-artifact" and message.get("executable") \
            and message["target"]["kind"] == ["test"]:
        print(message["executable"])
')
[ -n "$binaries" ] || { echo "guest-tests: no test binary was built" >&2; exit 1; }
echo "$binaries" | sed 's|^|   |'

runner=$(mktemp "$root/target/guest-run-XXXX.sh")
trap 'rm -f "$runner"' EXIT
{
    echo 'failed=0; ran=0'
    for binary in $binaries; do
        name=$(basename "$binary")
        echo "echo; echo \"== guest test binary $name\""
        echo "ran=\$((ran+1)); IPVS_GUEST=1 $(printf '%q' "$binary") --test-threads=1 || { failed=\$((failed+1)); echo \"== FAILED: $name\"; }"
    done
    echo 'echo; echo "== guest test binaries: $ran ran, $failed failed"'
    echo '[ "$ran" -gt 0 ] && [ "$failed" -eq 0 ]'
} > "$runner"
chmod +x "$runner"
bash "$root/integration/scripts/in-guest.sh" --memory 2G -- bash "$runner"
