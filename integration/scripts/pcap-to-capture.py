#!/usr/bin/env python3
"""Turns an nlmon pcap into a capture file for netlink-ipvs/tests/captures.

    pcap-to-capture.py FILE.pcap "ipvsadm -A ..." "kernel note" > NAME.txt

Keeps generic netlink (protocol 16) messages of the IPVS family, and the
NLMSG_ERROR / NLMSG_DONE answers to them; drops the genl controller
(nlctrl, type 0x10) exchange that resolves the family. Direction is read
from the message itself: requests carry NLM_F_REQUEST, kernel messages
never do. Output: one line per netlink message, '>' sent by ipvsadm, '<'
sent by the kernel, hex in 4-byte groups.
"""
import struct
import sys

LINKTYPE_NETLINK = 253
NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 1


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != LINKTYPE_NETLINK:
        sys.exit(f"{path}: link type {linktype}, expected {LINKTYPE_NETLINK} (nlmon)")
    offset = 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        offset += 16
        yield data[offset:offset + caplen]
        offset += caplen


def messages(frame):
    # The 16-byte nlmon header: pkttype, hatype, halen, addr[8], protocol (be16).
    protocol = struct.unpack(">H", frame[14:16])[0]
    if protocol != NETLINK_GENERIC:
        return
    body = frame[16:]
    offset = 0
    while offset + 16 <= len(body):
        length, kind, flags = struct.unpack("<IHH", body[offset:offset + 8])
        if length < 16 or offset + length > len(body):
            break
        yield kind, flags, body[offset:offset + length]
        offset += (length + 3) & ~3


def is_controller(kind, message):
    if kind == GENL_ID_CTRL:
        return True
    if kind == NLMSG_ERROR and len(message) >= 16 + 4 + 6:
        echoed_type = struct.unpack("<H", message[24:26])[0]
        return echoed_type == GENL_ID_CTRL
    return False


def hex_groups(message):
    text = message.hex()
    return " ".join(text[i:i + 8] for i in range(0, len(text), 8))


def main():
    path, command, note = sys.argv[1], sys.argv[2], sys.argv[3]
    print(f"# command: {command}")
    print(f"# kernel: {note}")
    print("# > sent by ipvsadm, < sent by the kernel; whole netlink messages in hex")
    count = 0
    for frame in frames(path):
        for kind, flags, message in messages(frame):
            if is_controller(kind, message):
                continue
            direction = ">" if flags & NLM_F_REQUEST else "<"
            print(f"{direction} {hex_groups(message)}")
            count += 1
    if count == 0:
        sys.exit(f"{path}: no IPVS message captured for {command!r}")


main()
