//! Kernel-side proof of what was sent: records every generic netlink
//! message on an `nlmon` link with tcpdump while something runs, then
//! counts the IPVS write requests (NEW/SET/DEL service and dest) in the
//! capture. Independent of what the sender says it sent.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netlink_packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;

const LINKTYPE_NETLINK: u32 = 253;
const NETLINK_GENERIC: u16 = 16;
/// IPVS_CMD_NEW_SERVICE .. IPVS_CMD_DEL_DEST without the GET commands.
const WRITE_COMMANDS: [u8; 6] = [1, 2, 3, 5, 6, 7];

/// A running capture on `nlmon0`.
#[derive(Debug)]
pub struct NetlinkCapture {
    tcpdump: Option<Child>,
    file: PathBuf,
    markers: u32,
}

impl NetlinkCapture {
    /// Creates `nlmon0` if needed and starts tcpdump on it; returns once
    /// tcpdump is writing its file.
    pub fn start(name: &str) -> NetlinkCapture {
        if !std::path::Path::new("/sys/class/net/nlmon0").exists() {
            crate::pods::run(&["ip", "link", "add", "nlmon0", "type", "nlmon"]);
        }
        crate::pods::run(&["ip", "link", "set", "nlmon0", "up"]);
        let file = std::env::temp_dir().join(format!("{name}-{}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let tcpdump = Command::new("tcpdump")
            // Immediate mode: each packet leaves the kernel's ring at once
            // instead of when a block fills or its timeout (1 s) passes.
            .args(["-i", "nlmon0", "--immediate-mode", "-U", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start tcpdump (is it installed?): {e}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) < 24 {
            assert!(Instant::now() < deadline, "tcpdump never started writing");
            std::thread::sleep(Duration::from_millis(100));
        }
        // tcpdump writes the file header before the capture is live: wait
        // for a message of our own to show up.
        let probe_deadline = Instant::now() + Duration::from_secs(30);
        let capture = NetlinkCapture {
            tcpdump: Some(tcpdump),
            file,
            markers: 0,
        };
        loop {
            let _ = Command::new("ipvsadm").arg("-Ln").output();
            if capture.generic_messages() > 0 {
                return capture;
            }
            assert!(
                Instant::now() < probe_deadline,
                "tcpdump on nlmon0 recorded nothing"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn read(&self) -> Vec<u8> {
        std::fs::read(&self.file).unwrap_or_default()
    }

    fn generic_messages(&self) -> usize {
        requests(&self.read()).count()
    }

    /// Stops tcpdump and returns the IPVS write requests recorded (generic
    /// netlink family `family_id`, with NLM_F_REQUEST, command NEW/SET/DEL
    /// service or dest), as `(command, message bytes)`.
    pub fn stop(&mut self, family_id: u16) -> Vec<(u8, Vec<u8>)> {
        if let Some(mut tcpdump) = self.tcpdump.take() {
            // Everything sent before the marker is in the file once the
            // marker is: the tap delivers in order.
            let marker = format!("capture-marker-{}-{}", std::process::id(), self.markers);
            self.markers += 1;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                send_marker(&marker);
                std::thread::sleep(Duration::from_millis(200));
                if contains(&self.read(), marker.as_bytes()) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the capture never recorded its end marker: messages may be missing"
                );
            }
            let _ = Command::new("kill")
                .args(["-INT", &tcpdump.id().to_string()])
                .status();
            let _ = tcpdump.wait();
        }
        requests(&self.read())
            .filter(|(kind, flags, message)| {
                *kind == family_id
                    && flags & NLM_F_REQUEST != 0
                    && message.len() > 16
                    && WRITE_COMMANDS.contains(&message[16])
            })
            .map(|(_, _, message)| (message[16], message))
            .collect()
    }
}

impl NetlinkCapture {
    /// After [`NetlinkCapture::stop`]: the nf_tables write requests
    /// recorded (`NETLINK_NETFILTER`, subsystem nf_tables, a NEW or DEL
    /// of a table, chain, rule, set or set element), by message type.
    pub fn netfilter_writes(&self) -> Vec<u16> {
        netfilter_messages(&self.read())
            .into_iter()
            .filter(|(kind, flags)| {
                kind >> 8 == NFNL_SUBSYS_NFTABLES
                    && flags & NLM_F_REQUEST != 0
                    && NFT_WRITES.contains(&(kind & 0xff))
            })
            .map(|(kind, _)| kind & 0xff)
            .collect()
    }
}

/// `NETLINK_NETFILTER`.
const NETLINK_NETFILTER: u16 = 12;
/// The nf_tables subsystem of nfnetlink.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// NEW/DEL TABLE, CHAIN, RULE, SET, SETELEM.
const NFT_WRITES: [u16; 10] = [0, 2, 3, 5, 6, 8, 9, 11, 12, 14];

/// Every netfilter netlink message in a pcap: (type, flags).
fn netfilter_messages(pcap: &[u8]) -> Vec<(u16, u16)> {
    frames(pcap, NETLINK_NETFILTER)
        .into_iter()
        .map(|(kind, flags, _)| (kind, flags))
        .collect()
}

impl Drop for NetlinkCapture {
    fn drop(&mut self) {
        if let Some(mut tcpdump) = self.tcpdump.take() {
            let _ = tcpdump.kill();
            let _ = tcpdump.wait();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Asks the generic netlink controller for a family named `marker` (none
/// exists: the kernel answers ENOENT); the request carries the name, so
/// its arrival in the capture file marks a point in the message stream.
fn send_marker(marker: &str) {
    let mut genl = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(marker.to_owned())],
    });
    genl.finalize();
    let mut message = NetlinkMessage::from(genl);
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    let socket = crate::raw::kernel_socket(64 * 1024);
    socket.send(&bytes, 0).expect("send the capture marker");
    let mut answer = vec![0u8; 4096];
    let _ = socket.recv(&mut &mut answer[..], 0);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Every generic netlink message in a pcap: (type, flags, bytes).
fn requests(pcap: &[u8]) -> impl Iterator<Item = (u16, u16, Vec<u8>)> + '_ {
    frames(pcap, NETLINK_GENERIC).into_iter()
}

/// Every netlink message of `protocol` in a pcap: (type, flags, bytes).
fn frames(pcap: &[u8], protocol: u16) -> Vec<(u16, u16, Vec<u8>)> {
    let mut messages = Vec::new();
    if pcap.len() < 24 {
        return messages;
    }
    let magic = u32::from_le_bytes([pcap[0], pcap[1], pcap[2], pcap[3]]);
    let little = matches!(magic, 0xA1B2_C3D4 | 0xA1B2_3C4D);
    let read_u32 = |bytes: &[u8]| {
        let array = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if little {
            u32::from_le_bytes(array)
        } else {
            u32::from_be_bytes(array)
        }
    };
    if read_u32(&pcap[20..24]) != LINKTYPE_NETLINK {
        return messages;
    }
    let mut offset = 24;
    while offset + 16 <= pcap.len() {
        let captured = read_u32(&pcap[offset + 8..offset + 12]) as usize;
        offset += 16;
        let Some(frame) = pcap.get(offset..offset + captured) else {
            break;
        };
        offset += captured;
        // The 16-byte nlmon header ends with the protocol (big endian).
        if frame.len() < 16 || u16::from_be_bytes([frame[14], frame[15]]) != protocol {
            continue;
        }
        let body = &frame[16..];
        let mut at = 0;
        while at + 16 <= body.len() {
            let length =
                u32::from_ne_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
            if length < 16 || at + length > body.len() {
                break;
            }
            let kind = u16::from_ne_bytes([body[at + 4], body[at + 5]]);
            let flags = u16::from_ne_bytes([body[at + 6], body[at + 7]]);
            messages.push((kind, flags, body[at..at + length].to_vec()));
            at += (length + 3) & !3;
        }
    }
    messages
}
