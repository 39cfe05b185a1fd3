#!/usr/bin/env python3
"""Writes the fuzz targets' seed inputs into corpus/<target>/seed-*.

- ipvs_message: every message of the nlmon captures in
  netlink-ipvs/tests/captures/ (sent and received).
- route_address, nftables_reply, conntrack_reply: replies laid out by hand
  from the kernel's structs, as the agent's byte tests are (no capture tool
  for them runs on the project's machines).
- manifest: examples/*.yaml, each behind one byte (the family mode).
- kube_proxy_config: kubeadm's config.conf and the agent's deploy/ one.
- desired_state: a few byte strings (its input is structured by the
  target itself).
Run again after changing a capture; libFuzzer grows the rest of each
corpus (integration/scripts/fuzz.sh).
"""
import pathlib
import struct

here = pathlib.Path(__file__).resolve().parent
root = here.parent


def write(target, name, data):
    folder = here / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seed-{name}").write_bytes(data)


def attr(kind, value, nested=False):
    length = 4 + len(value)
    kind |= 0x8000 if nested else 0
    return struct.pack("=HH", length, kind) + value + b"\0" * ((4 - length % 4) % 4)


def message(kind, flags, payload, seq=1):
    return struct.pack("=IHHII", 16 + len(payload), kind, flags, seq, 4242) + payload


def done(seq=1):
    return message(3, 2, struct.pack("=i", 0), seq)


# IPVS: the captures.
for capture in sorted((root / "netlink-ipvs/tests/captures").glob("*.txt")):
    count = 0
    for line in capture.read_text().splitlines():
        if line[:2] in ("> ", "< "):
            write("ipvs_message", f"{capture.stem}-{count}", bytes.fromhex(line[2:].replace(" ", "")))
            count += 1

# rtnetlink: RTM_NEWADDR (20) of kube-ipvs0's 10.96.0.10/32 and of eth0's
# fd00::11/64.
ifaddr4 = struct.pack("=BBBBI", 2, 32, 0, 0, 7)
write("route_address", "v4", message(20, 2, ifaddr4
      + attr(1, bytes([10, 96, 0, 10])) + attr(2, bytes([10, 96, 0, 10]))
      + attr(3, b"kube-ipvs0\0") + attr(8, struct.pack("=I", 0x80))))
ifaddr6 = struct.pack("=BBBBI", 10, 64, 0, 0, 2)
write("route_address", "v6", message(20, 2, ifaddr6
      + attr(1, bytes.fromhex("fd000000000000000000000000000011"))
      + attr(6, struct.pack("=IIII", 0xffffffff, 0xffffffff, 1, 1))))

# nf_tables: NFT_MSG_NEWSETELEM (subsystem 10, message 13) of the
# cluster-ips set (10.96.0.10 . tcp . 80) and the vips set, then done.
nfgen4 = struct.pack("=BBH", 2, 0, 0)
def elements(*keys):
    return b"".join(
        attr(1, attr(1, attr(1, key), nested=True), nested=True) for key in keys)
cluster_ip = bytes([10, 96, 0, 10]) + bytes([6, 0, 0, 0]) + struct.pack(">H", 80) + b"\0\0"
write("nftables_reply", "cluster-ips", message((10 << 8) | 13, 2, nfgen4
      + attr(1, b"ipvs-agent\0") + attr(2, b"cluster-ips\0")
      + attr(3, elements(cluster_ip), nested=True)) + done())
write("nftables_reply", "vips", message((10 << 8) | 13, 2, nfgen4
      + attr(1, b"ipvs-agent\0") + attr(2, b"vips\0")
      + attr(3, elements(bytes([10, 96, 0, 10]), bytes([10, 96, 0, 11])), nested=True)) + done())
write("nftables_reply", "error", message(2, 0, struct.pack("=i", -2) + message(0, 0, b"")))

# ctnetlink: IPCTNL_MSG_CT_NEW (subsystem 1, message 0) of a UDP entry
# 10.244.1.14:40000 -> 10.96.0.53:53, replied by 10.244.0.11:5353.
def tuple_(kind, source, destination, protocol, sport, dport):
    ip = attr(1, attr(1, bytes(source)) + attr(2, bytes(destination)), nested=True)
    proto = attr(2, attr(1, bytes([protocol])) + attr(2, struct.pack(">H", sport))
                 + attr(3, struct.pack(">H", dport)), nested=True)
    return attr(kind, ip + proto, nested=True)
entry = (tuple_(1, [10, 244, 1, 14], [10, 96, 0, 53], 17, 40000, 53)
         + tuple_(2, [10, 244, 0, 11], [10, 244, 1, 14], 17, 5353, 40000)
         + attr(3, struct.pack(">I", 0x188)))
write("conntrack_reply", "udp", message(1 << 8, 2, nfgen4 + entry) + done())

# Manifests and configurations.
for index, example in enumerate(sorted((root / "examples").glob("*.yaml"))):
    write("manifest", example.stem, bytes([index % 3]) + example.read_bytes())
for config in [root / "deploy/configmap.yaml"]:
    if config.exists():
        write("kube_proxy_config", "deploy-configmap", config.read_bytes())
write("kube_proxy_config", "kubeadm", b"""apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
clusterCIDR: 10.244.0.0/16
conntrack:
  maxPerCore: null
  min: null
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
kind: KubeProxyConfiguration
metricsBindAddress: ""
mode: ipvs
nodePortAddresses: null
""")
for index, data in enumerate([b"\0" * 64, bytes(range(256)), b"\xff" * 128]):
    write("desired_state", str(index), data)
