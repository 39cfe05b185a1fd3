#!/usr/bin/env bash
# What one `nft -f` of one set element costs, against an empty table and a
# table of 220,000 elements, beside the cost of starting `nft` at all
# (issue 16, P2: the agent runs one `nft` per incremental change that
# changes an element). Run inside the guest, as root, in a fresh network
# namespace (it flushes that namespace's ruleset):
#
#   bash integration/scripts/in-guest.sh --memory 2G -- bash -c \
#     'ip netns add nft-cost && ip netns exec nft-cost bash integration/scripts/nft-process-cost.sh'
set -euo pipefail
work=$(mktemp -d)
python3 - > "$work/big.nft" <<'PY'
print("table ip probe {")
print("  set hairpin { type ipv4_addr . ipv4_addr; }")
print("  set vips { type ipv4_addr; }")
print("}")
def address(i):
    return f"10.{200 + i % 10}.{(i // 10) >> 8 & 255}.{(i // 10) & 255}"
for start in range(0, 200000, 512):
    items = ", ".join(f"{address(i)} . {address(i)}" for i in range(start, min(start + 512, 200000)))
    print(f"add element ip probe hairpin {{ {items} }}")
for start in range(0, 20000, 512):
    items = ", ".join(f"10.100.{i >> 8 & 255}.{i & 255}" for i in range(start, min(start + 512, 20000)))
    print(f"add element ip probe vips {{ {items} }}")
PY
echo 'add element ip probe vips { 10.99.0.1 }' > "$work/one.nft"
time_of() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
nft flush ruleset
nft add table ip probe
nft add set ip probe vips '{ type ipv4_addr; }'
for round in 1 2 3; do
  echo "empty table, one element: $(time_of nft -f "$work/one.nft") s"
  nft delete element ip probe vips '{ 10.99.0.1 }'
done
nft flush ruleset
echo "loading 220,000 elements: $(time_of nft -f "$work/big.nft") s"
for round in 1 2 3; do
  echo "220,000-element table, one element: $(time_of nft -f "$work/one.nft") s"
  nft delete element ip probe vips '{ 10.99.0.1 }'
done
for round in 1 2 3; do
  echo "nft --version: $(time_of nft --version) s"
done
nft flush ruleset
rm -rf "$work"
