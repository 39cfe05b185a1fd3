//! Pods for end-to-end traffic tests in the guest: network namespaces with a
//! veth to the guest's root namespace, routed /32 addresses (Calico-style),
//! as `../shared/docs/real-kernel.md` describes and verified there.
//!
//! - [`prepare_node`]: the root namespace's side (gateway `169.254.1.1` on
//!   `lo`, forwarding on, IPVS conntrack so replies are un-NATed).
//! - [`Pod`]: one namespace with its address; [`Pod::serve`] starts a tiny
//!   server answering the pod's name over TCP (HTTP) or UDP;
//!   [`Pod::request`] is a client call from inside the pod.
//!
//! Everything is removed when the [`Pod`] is dropped.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Runs a command (argv), fails the test with its output if it fails, and
/// returns its stdout.
pub fn run(argv: &[&str]) -> String {
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", argv.join(" ")));
    assert!(
        output.status.success(),
        "{} failed: {}{}",
        argv.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The root namespace's side of the pod network: the gateway address pods
/// route through, IPv4 forwarding, and `net.ipv4.vs.conntrack=1`.
pub fn prepare_node() {
    let _ = Command::new("ip")
        .args(["addr", "add", "169.254.1.1/32", "dev", "lo"])
        .output();
    run(&["ip", "link", "set", "lo", "up"]);
    run(&["sysctl", "-q", "net.ipv4.ip_forward=1"]);
}

static NEXT_VETH: AtomicUsize = AtomicUsize::new(0);

/// A pod: a network namespace with one address on `eth0`.
#[derive(Debug)]
pub struct Pod {
    /// Namespace name (also the name the pod's servers answer with).
    pub name: String,
    /// The pod's address.
    pub address: String,
    veth: String,
    servers: Vec<Child>,
}

/// The Python server a pod runs: answers its name to every HTTP request
/// (TCP) or datagram (UDP), like the document's `serve_hostname` image.
const SERVER: &str = r#"
import socket, sys, threading
name, proto, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(name.encode(), peer)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen(128)
def serve(c):
    try:
        c.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        body = name.encode()
        if data.startswith(b"HOLD"):
            # A long-lived connection: answer each line until the peer closes.
            c.sendall(body + b"\n")
            while True:
                line = c.recv(4096)
                if not line:
                    break
                c.sendall(body + b"\n")
        else:
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except Exception:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

impl Pod {
    /// Creates the namespace `name` with `address`/32 on its `eth0`, routed
    /// through the root namespace.
    pub fn create(name: &str, address: &str) -> Pod {
        let veth = format!("veth{}", NEXT_VETH.fetch_add(1, Ordering::SeqCst));
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["ip", "netns", "add", name]);
        run(&[
            "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", name,
        ]);
        let host = format!("{address}/32");
        run(&["ip", "-n", name, "addr", "add", &host, "dev", "eth0"]);
        run(&["ip", "-n", name, "link", "set", "eth0", "up"]);
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            name,
            "route",
            "add",
            "169.254.1.1",
            "dev",
            "eth0",
        ]);
        run(&[
            "ip",
            "-n",
            name,
            "route",
            "add",
            "default",
            "via",
            "169.254.1.1",
        ]);
        run(&["ip", "link", "set", &veth, "up"]);
        // `replace`: a pod of the same address left by a failed test may
        // still hold a route.
        run(&["ip", "route", "replace", &host, "dev", &veth]);
        run(&["sysctl", "-q", &format!("net.ipv4.conf.{veth}.proxy_arp=1")]);
        Pod {
            name: name.to_owned(),
            address: address.to_owned(),
            veth,
            servers: Vec::new(),
        }
    }

    /// Starts a server in the pod answering its name on `port` (`tcp`:
    /// HTTP; `udp`: one datagram per datagram) and waits until it listens.
    pub fn serve(&mut self, protocol: &str, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", SERVER])
            .args([&self.name, protocol, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start a server in {}: {e}", self.name));
        self.servers.push(child);
        let flag = if protocol == "udp" { "-uln" } else { "-tln" };
        let wanted = format!(":{port} ");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let listening = Command::new("ip")
                .args(["netns", "exec", &self.name, "ss", flag])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains(&wanted))
                .unwrap_or(false);
            if listening {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the {protocol} server in {} did not listen on {port}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One HTTP GET from inside the pod to `address:port`; the answer's
    /// body, or `None` when no answer came within `timeout`.
    pub fn http_get(&self, address: &str, port: u16, timeout: Duration) -> Option<String> {
        let url = if address.contains(':') {
            format!("http://[{address}]:{port}/")
        } else {
            format!("http://{address}:{port}/")
        };
        let output = Command::new("ip")
            .args(["netns", "exec", &self.name, "curl", "-s", "--max-time"])
            .arg(format!("{}", timeout.as_secs_f64()))
            .arg(&url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl in {}: {e}", self.name));
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// One UDP datagram from inside the pod; the answer or `None`.
    pub fn udp_request(&self, address: &str, port: u16, timeout: Duration) -> Option<String> {
        let script = "import socket,sys\n\
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
s.settimeout(float(sys.argv[3]))\n\
s.sendto(b'hi',(sys.argv[1],int(sys.argv[2])))\n\
print(s.recvfrom(2048)[0].decode())";
        let output = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "python3", "-c", script, address,
            ])
            .arg(port.to_string())
            .arg(timeout.as_secs_f64().to_string())
            .output()
            .unwrap_or_else(|e| panic!("cannot run python3 in {}: {e}", self.name));
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Opens a long-lived TCP connection from this pod to `address:port`
    /// (the server answers its name to each line sent). Returns the client
    /// process: write lines to its stdin, read answers from its stdout.
    pub fn hold_connection(&self, address: &str, port: u16) -> Child {
        let script = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"HOLD\n\n")
f = s.makefile("rb")
print(f.readline().decode().strip(), flush=True)
for line in sys.stdin:
    s.sendall(line.encode())
    answer = f.readline().decode().strip()
    print(answer if answer else "CLOSED", flush=True)
"#;
        Command::new("ip")
            .args([
                "netns", "exec", &self.name, "python3", "-u", "-c", script, address,
            ])
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 in {}: {e}", self.name))
    }
}

/// The three pods of the hostname example (`examples/hostname.yaml`, §2.1
/// of the Service document), each answering its name over HTTP on 9376.
pub fn hostname_pods() -> Vec<Pod> {
    [
        ("hostname-1", "10.244.1.54"),
        ("hostname-2", "10.244.1.55"),
        ("hostname-3", "10.244.2.53"),
    ]
    .into_iter()
    .map(|(name, address)| {
        let mut pod = Pod::create(name, address);
        pod.serve("tcp", 9376);
        pod
    })
    .collect()
}

impl Drop for Pod {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
