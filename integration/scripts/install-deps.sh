#!/usr/bin/env bash
# Installs what the real-kernel tests need, when missing: QEMU, a Debian
# kernel with IPVS (linux-image-amd64), ipvsadm, nftables, iptables, ipset,
# conntrack, busybox (static, for
# virtme-ng's init), tcpdump, a C compiler (mimalloc, the agent's allocator,
# is built from C), and virtme-ng (PyPI, command `vng`); plus the rustfmt
# and clippy components. Idempotent. Exits non-zero naming whatever
# is still missing.
set -euo pipefail

missing_packages=()
command -v qemu-system-x86_64 >/dev/null || missing_packages+=(qemu-system-x86)
command -v ipvsadm >/dev/null || [ -x /usr/sbin/ipvsadm ] || missing_packages+=(ipvsadm)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing_packages+=(busybox-static)
command -v tcpdump >/dev/null || [ -x /usr/bin/tcpdump ] || missing_packages+=(tcpdump)
command -v ip >/dev/null || missing_packages+=(iproute2)
command -v cc >/dev/null || missing_packages+=(gcc libc6-dev)
# The agent's netfilter tables are written with nft; the migration tests
# make kube-proxy-shaped leftovers with iptables and ipset; conntrack for
# the datapath tests.
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing_packages+=(nftables)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || missing_packages+=(iptables)
command -v ipset >/dev/null || [ -x /usr/sbin/ipset ] || missing_packages+=(ipset)
command -v conntrack >/dev/null || [ -x /usr/sbin/conntrack ] || missing_packages+=(conntrack)
command -v modprobe >/dev/null || [ -x /sbin/modprobe ] || missing_packages+=(kmod)
compgen -G '/boot/vmlinuz-*' >/dev/null || missing_packages+=(linux-image-amd64)

if [ ${#missing_packages[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing_packages[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_packages[@]}"
fi

if ! command -v vng >/dev/null; then
    echo "install-deps: installing virtme-ng"
    pip install -q virtme-ng
    hash -r
fi

if command -v rustup >/dev/null; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
fi

still_missing=()
command -v qemu-system-x86_64 >/dev/null || still_missing+=("qemu-system-x86_64 (apt: qemu-system-x86)")
command -v ipvsadm >/dev/null || [ -x /usr/sbin/ipvsadm ] || still_missing+=("ipvsadm (apt: ipvsadm)")
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || still_missing+=("busybox (apt: busybox-static)")
compgen -G '/boot/vmlinuz-*' >/dev/null || still_missing+=("a kernel in /boot (apt: linux-image-amd64)")
command -v vng >/dev/null || still_missing+=("vng (pip: virtme-ng)")
command -v cargo >/dev/null || still_missing+=("cargo (the Rust toolchain)")
command -v cc >/dev/null || still_missing+=("a C compiler for mimalloc (apt: gcc libc6-dev)")
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || still_missing+=("nft (apt: nftables)")
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || still_missing+=("iptables (apt: iptables)")
command -v ipset >/dev/null || [ -x /usr/sbin/ipset ] || still_missing+=("ipset (apt: ipset)")
command -v conntrack >/dev/null || [ -x /usr/sbin/conntrack ] || still_missing+=("conntrack (apt: conntrack)")
cargo fmt --version >/dev/null 2>&1 || still_missing+=("rustfmt (rustup component add rustfmt)")
cargo clippy --version >/dev/null 2>&1 || still_missing+=("clippy (rustup component add clippy)")
if [ ${#still_missing[@]} -gt 0 ]; then
    printf 'install-deps: MISSING, the real-kernel tests cannot run:\n' >&2
    printf '  - %s\n' "${still_missing[@]}" >&2
    exit 1
fi
echo "install-deps: all present (kernel $(ls /boot/vmlinuz-* | sort -V | tail -1 | sed 's|/boot/vmlinuz-||'))"
