#!/usr/bin/env bash
# Boots the newest Debian kernel in /boot under QEMU (virtme-ng, software
# emulation: KVM hangs on this host's PVM hypervisor) and runs COMMAND in
# it as root, with the workspace as working directory and the host's
# filesystem shared read-only (build on the host, run the binaries here).
#
#   integration/scripts/in-guest.sh [--memory 2G] -- COMMAND [ARG...]
#
# Before COMMAND it loads ip_vs, its schedulers, dummy, nlmon and the
# nf_tables modules the agent's rules use (loaded on demand they took 18 s
# of the first `nft -f` under emulation, a cost a real node pays in
# milliseconds and once), and
# prints `uname -r` and `ipvsadm --version`. COMMAND's exit status is
# passed back. If the guest never ran COMMAND (boot failure), exits 125
# and says so. Environment variables named IPVS_* and RUST_BACKTRACE are
# passed into the guest. Writable from the guest: $GUEST_RWDIR (default
# target/guest).
set -euo pipefail

memory=2G
while [ $# -gt 0 ]; do
    case "$1" in
        --memory) memory="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: $0 [--memory SIZE] -- COMMAND [ARG...]" >&2; exit 2; }

root=$(cd "$(dirname "$0")/../.." && pwd)
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
[ -n "$kernel" ] || { echo "in-guest: no kernel in /boot (run integration/scripts/install-deps.sh)" >&2; exit 125; }
command -v vng >/dev/null || { echo "in-guest: vng (virtme-ng) is missing (run integration/scripts/install-deps.sh)" >&2; exit 125; }

rwdir=${GUEST_RWDIR:-$root/target/guest}
mkdir -p "$rwdir"
marker="$rwdir/.guest-ran-$$"
status_file="$rwdir/.guest-status-$$"
rm -f "$marker" "$status_file"

# The command, quoted for the guest shell, with the environment to pass.
quoted=$(printf '%q ' "$@")
exports=""
while IFS='=' read -r name _; do
    exports+="export $name=$(printf '%q' "${!name}"); "
done < <(env | grep -E '^(IPVS_[A-Za-z0-9_]*|RUST_BACKTRACE)=' || true)

script="set +e; echo guest-ran > $(printf '%q' "$marker");
for module in ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh dummy nlmon nf_tables nf_nat nft_chain_nat nft_ct nft_masq nft_nat nft_reject_ipv4 nft_reject_ipv6 nft_fib_ipv4 nft_fib_ipv6; do modprobe \$module 2>/dev/null || echo \"in-guest: modprobe \$module failed\"; done;
echo \"guest kernel: \$(uname -r)\"; echo \"guest \$(ipvsadm --version)\";
cd $(printf '%q' "$root"); $exports $quoted; status=\$?; echo \$status > $(printf '%q' "$status_file"); exit \$status"

set +e
setsid vng --disable-kvm --run "$kernel" --user root --memory "$memory" \
    --rwdir "$rwdir" --exec "$script" < /dev/null
vng_status=$?
set -e

if [ ! -f "$marker" ]; then
    echo "in-guest: the guest never ran the command (vng exited $vng_status): boot failed" >&2
    exit 125
fi
rm -f "$marker"
if [ -f "$status_file" ]; then
    status=$(cat "$status_file")
    rm -f "$status_file"
    exit "$status"
fi
echo "in-guest: the command did not finish in the guest (vng exited $vng_status)" >&2
exit 125
