//! A two-node cluster inside the guest, for end-to-end datapath tests from
//! every vantage point (a pod, a node, a client outside the cluster), as
//! `../shared/docs/real-kernel.md` ("a two-node cluster in one guest")
//! describes.
//!
//! - Nodes `node1` / `node2` and the client `outside` are network
//!   namespaces, each with its own IPVS table, conntrack and netfilter, on
//!   one bridge `br-nodes` in the guest's root namespace
//!   (`192.168.50.0/24`: node1 `.11`, node2 `.12`, outside `.100`; and
//!   IPv6 `fd00::/64`: node1 `fd00::11`, node2 `fd00::12`, outside
//!   `fd00::100`, all without duplicate address detection, so usable at
//!   once).
//! - Pods hang off their node Calico-style: a namespace with a routed /32
//!   on `eth0` (node1 `10.244.1.x`, node2 `10.244.2.x`), default route via
//!   `169.254.1.1` (on the node's `lo`, scope link so it is never picked as
//!   a source), `proxy_arp` on the node's side of the veth. Each node routes
//!   the other node's pod /24 via the other node; `outside` routes both
//!   pod /24s (a flat, routed network, as with Calico peering with the
//!   top-of-rack router), nothing else unless a test asks
//!   ([`Cluster::route_from_outside`]). IPv6 the same way: a pod added
//!   with [`Cluster::add_dual_stack_pod`] also has a routed /128 (node1
//!   `fd10:1::x`, node2 `fd10:2::x`) and its default route via
//!   [`GATEWAY6`] (`fe80::1` on the node's side of the veth); the nodes
//!   forward IPv6 and route each other's pod /64, `outside` both.
//! - [`Cluster::serve`] / [`Cluster::start_servers`]: tiny servers in any
//!   namespace answering `NAME CLIENT-ADDRESS` (the name they were given
//!   and the source address they saw) over TCP (HTTP) or UDP;
//!   [`Cluster::tcp`] / [`Cluster::udp`] make one request from any
//!   namespace and return the parsed [`Answer`] or why none came. Both are
//!   one Python process each that enters namespaces with setns(2) per
//!   socket: a process start costs seconds under emulation. The servers
//!   listen on both families (one IPv6 socket taking IPv4 too; an IPv4
//!   client is reported by its IPv4 address, not `::ffff:a.b.c.d`).
//! - [`run_in`] / [`exec_in`]: any command in a namespace
//!   (`ip netns exec`).
//! - [`Cluster::start_agents`] runs one `ipvs-agent run` per node
//!   (`ip netns exec nodeN ...`), all reading the same manifest folder
//!   ([`Cluster::write_manifest`]).
//!
//! Everything (agents, servers, namespaces, the bridge) is removed when the
//! [`Cluster`] is dropped; [`Cluster::create`] also removes what a crashed
//! earlier run may have left under the same names.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::agent::agent_binary;
use crate::require_guest;

/// The bridge in the guest's root namespace joining nodes and `outside`.
pub const BRIDGE: &str = "br-nodes";
/// The client outside the cluster (namespace name).
pub const OUTSIDE: &str = "outside";
/// The outside client's address.
pub const OUTSIDE_IP: &str = "192.168.50.100";
/// The outside client's IPv6 address.
pub const OUTSIDE_IP6: &str = "fd00::100";
/// The cluster's pod CIDR (both nodes' pod /24s).
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The cluster's IPv6 pod CIDR (both nodes' pod /64s).
pub const CLUSTER_CIDR6: &str = "fd10::/16";
/// The pods' IPv6 gateway: a link-local address on the node's side of
/// each pod's veth.
pub const GATEWAY6: &str = "fe80::1";
/// The pods' gateway, on each node's `lo`.
pub const GATEWAY: &str = "169.254.1.1";
/// The interpreter the servers and clients run (Debian's, visible in the
/// guest; the host's pyenv shims are slow to start under emulation).
pub const PYTHON: &str = "/usr/bin/python3";

/// How long a server may take to listen, an agent to sync.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One node of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// `node1`, 192.168.50.11, pods 10.244.1.0/24.
    One,
    /// `node2`, 192.168.50.12, pods 10.244.2.0/24.
    Two,
}

impl Node {
    /// Both nodes.
    pub const ALL: [Node; 2] = [Node::One, Node::Two];

    /// The node's name: its namespace and its `--node-name`.
    pub fn name(self) -> &'static str {
        match self {
            Node::One => "node1",
            Node::Two => "node2",
        }
    }

    /// The node's address on the bridge.
    pub fn ip(self) -> &'static str {
        match self {
            Node::One => "192.168.50.11",
            Node::Two => "192.168.50.12",
        }
    }

    /// The node's pod /24.
    pub fn pod_cidr(self) -> &'static str {
        match self {
            Node::One => "10.244.1.0/24",
            Node::Two => "10.244.2.0/24",
        }
    }

    /// The node's IPv6 address on the bridge.
    pub fn ip6(self) -> &'static str {
        match self {
            Node::One => "fd00::11",
            Node::Two => "fd00::12",
        }
    }

    /// The node's IPv6 pod /64.
    pub fn pod_cidr6(self) -> &'static str {
        match self {
            Node::One => "fd10:1::/64",
            Node::Two => "fd10:2::/64",
        }
    }

    /// The other node.
    pub fn other(self) -> Node {
        match self {
            Node::One => Node::Two,
            Node::Two => Node::One,
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Transport of a server or a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TCP: one HTTP/1.0 GET, the answer is the body.
    Tcp,
    /// UDP: one datagram, the answer is the reply datagram.
    Udp,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// What a server answered: its name and the client address it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The name the server was started with (a pod's name, ...).
    pub server: String,
    /// The source address of the connection as the server saw it.
    pub client: String,
}

impl Answer {
    /// `Answer { server, client }` from string slices (for assertions).
    pub fn new(server: &str, client: &str) -> Answer {
        Answer {
            server: server.to_owned(),
            client: client.to_owned(),
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (saw client {})", self.server, self.client)
    }
}

/// Runs `argv`, fails the test with its output if it fails; stdout.
fn run(argv: &[&str]) -> String {
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

/// Runs `argv`, ignoring failure (clean-up of what may not exist).
fn try_run(argv: &[&str]) {
    let _ = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output();
}

/// Runs `ip [-n NS] -batch -` with `commands` (one `ip` command a line,
/// without the `ip`): one process instead of one per command, which
/// matters under emulation (about half a second per process). Fails the
/// test if any command fails.
pub fn ip_batch(ns: Option<&str>, commands: &[String]) {
    use std::io::Write;
    let mut command = Command::new("ip");
    if let Some(ns) = ns {
        command.args(["-n", ns]);
    }
    let mut child = command
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run ip -batch: {e}"));
    let text = commands.join("\n") + "\n";
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write ip's batch");
    let output = child.wait_with_output().expect("wait for ip -batch");
    assert!(
        output.status.success(),
        "ip {}-batch failed: {}{}\ncommands:\n{text}",
        ns.map(|ns| format!("-n {ns} ")).unwrap_or_default(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `argv` in namespace `ns`, fails the test if it fails; stdout.
pub fn run_in(ns: &str, argv: &[&str]) -> String {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(argv);
    run(&full)
}

/// Runs `argv` in namespace `ns` and returns its output whatever its status.
pub fn exec_in(ns: &str, argv: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip netns exec {ns} {}: {e}", argv.join(" ")))
}

/// The Python helpers' common part: entering a named network namespace
/// (`/run/netns/NAME`) with setns(2) from the calling thread, so that one
/// process can open sockets in every namespace (a socket stays in the
/// namespace it was created in). Python 3.11 has no `os.setns`: ctypes.
const NETNS_PY: &str = r#"
import ctypes, os, socket, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
def enter(ns):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, "setns %s: %s" % (ns, os.strerror(errno)))
    finally:
        os.close(fd)
"#;

/// The servers: `SERVER NS NAME PROTO PORT [NS NAME PROTO PORT ...]`; each
/// listens on `[::]:PORT` (both families; `0.0.0.0:PORT` without IPv6) in
/// namespace NS and answers `NAME
/// CLIENT-ADDRESS` to each HTTP request (TCP) or datagram (UDP). Prints
/// `ready` once every socket is bound.
const SERVER_PY: &str = r#"
def listener(kind, port):
    # One socket for both families where the namespace has IPv6.
    try:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        address = ("::", port)
    except OSError:
        s = socket.socket(socket.AF_INET, kind)
        address = ("0.0.0.0", port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(address)
    return s
def shown(peer):
    host = peer[0]
    if host.startswith("::ffff:") and "." in host:
        return host[7:]
    return host
def udp(s, name):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(("%s %s" % (name, shown(peer))).encode(), peer)
def answer(c, peer, name):
    try:
        c.settimeout(30)
        data = b""
        while b"\r\n\r\n" not in data and b"\n\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        body = ("%s %s" % (name, shown(peer))).encode()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    except Exception:
        pass
    finally:
        c.close()
def tcp(s, name):
    while True:
        c, peer = s.accept()
        threading.Thread(target=answer, args=(c, peer, name), daemon=True).start()
args = sys.argv[1:]
threads = []
for i in range(0, len(args), 4):
    ns, name, proto, port = args[i], args[i + 1], args[i + 2], int(args[i + 3])
    enter(ns)
    if proto == "udp":
        s = listener(socket.SOCK_DGRAM, port)
        threads.append(threading.Thread(target=udp, args=(s, name), daemon=True))
    else:
        s = listener(socket.SOCK_STREAM, port)
        s.listen(128)
        threads.append(threading.Thread(target=tcp, args=(s, name), daemon=True))
for t in threads:
    t.start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The client: reads `PROTO NS HOST PORT TIMEOUT` lines, makes that one
/// request from namespace NS and prints `OK BODY` or `ERR WHY` (one line
/// each). The socket timeout bounds the connect and every receive.
const CLIENT_PY: &str = r#"
def request(proto, host, port, timeout):
    if proto == "udp":
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.settimeout(timeout)
            s.sendto(b"hi", (host, port))
            return s.recvfrom(2048)[0]
        finally:
            s.close()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise RuntimeError("not an HTTP answer: %r" % data)
    return body
for line in sys.stdin:
    proto, ns, host, port, timeout = line.split()
    try:
        enter(ns)
        body = request(proto, host, int(port), float(timeout))
        print("OK " + " ".join(body.decode(errors="replace").split()), flush=True)
    except Exception as e:
        print("ERR " + " ".join(("%s: %s" % (type(e).__name__, e)).split()), flush=True)
"#;

/// A server requested with [`Cluster::serve`], not started yet.
#[derive(Debug)]
struct ServerSpec {
    ns: String,
    name: String,
    protocol: Protocol,
    port: u16,
}

/// The client helper process and the lines it printed (read by a thread,
/// so that every wait for an answer is bounded).
#[derive(Debug)]
struct Client {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

/// A pod: its namespace (also its name) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace name, also the name its servers answer with.
    pub name: String,
    /// The pod's address.
    pub address: String,
    /// Its IPv6 address ([`Cluster::add_dual_stack_pod`]).
    pub address6: Option<String>,
    /// The node it runs on.
    pub node: Node,
}

/// One node's `ipvs-agent run`, started in the node's namespace.
#[derive(Debug)]
pub struct NodeAgent {
    /// The node it programs.
    pub node: Node,
    child: Option<Child>,
    /// Where its stderr (the log) goes.
    pub log: PathBuf,
    /// `ip netns exec nodeN ipvs-agent run ...`'s arguments after `ip`, for
    /// [`NodeAgent::respawn`].
    command: Vec<std::ffi::OsString>,
    /// The cluster's pid file (its watchdog kills what is listed there).
    pid_file: PathBuf,
}

impl NodeAgent {
    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many `synced` lines the agent has logged.
    pub fn sync_count(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains(" synced"))
            .count()
    }

    /// Waits until at least `count` syncs are logged; fails the test with
    /// the log if the agent exits or `timeout` passes first.
    pub fn wait_for_syncs(&mut self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.sync_count() >= count {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the agent of {} exited ({status}); log:\n{}",
                        self.node,
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the agent of {} logged {} syncs, not {count}, within {timeout:?}; log:\n{}",
                self.node,
                self.sync_count(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits (bounded) for the agent to exit; kills it if it
    /// does not. Returns whether it exited cleanly by itself.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        try_run(&["kill", "-TERM", &child.id().to_string()]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
            }
        }
    }

    /// SIGKILL (no chance to clean up, as the OOM killer or a node crash
    /// ends it), and waits for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again with the same command line, its log appended
    /// to the same file (so [`NodeAgent::sync_count`] counts on); the
    /// previous process must be gone ([`NodeAgent::stop`] or
    /// [`NodeAgent::kill`]). Returns the log's length before the new
    /// process's first line (its part of the log starts there).
    pub fn respawn(&mut self) -> usize {
        assert!(
            self.child.is_none(),
            "the agent of {} still runs",
            self.node
        );
        let offset = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0) as usize;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open the agent's log to append");
        let child = spawn_agent_process(&self.command, file);
        record_pid(&self.pid_file, &child);
        self.child = Some(child);
        offset
    }

    /// Whether the process runs (not exited, not stopped or killed).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

/// Starts `ip COMMAND...` (an agent in a node's namespace) with its stderr
/// into `log`.
fn spawn_agent_process(command: &[std::ffi::OsString], log: std::fs::File) -> Child {
    Command::new("ip")
        .args(command)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start ipvs-agent")
}

/// Appends `child`'s pid to the cluster's pid file, which its watchdog
/// reads.
fn record_pid(pid_file: &Path, child: &Child) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(pid_file)
        .expect("open the cluster's pid file");
    writeln!(file, "{}", child.id()).expect("write the cluster's pid file");
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

static NEXT_CLUSTER: AtomicUsize = AtomicUsize::new(0);

/// `sh -c WATCHDOG watchdog TEST-PID PID-FILE NAMESPACE...`: once the test
/// process is gone, kills every pid in the file and deletes the nodes' and
/// outside's namespaces and the bridge (not the pods' namespaces: their
/// names may be reused at once by the next test binary; they are empty
/// once the processes are gone). Polls once a second, ends with the test
/// process.
const WATCHDOG: &str = r#"
test_pid=$1; pid_file=$2; shift 2
while kill -0 "$test_pid" 2>/dev/null; do sleep 1; done
[ -f "$pid_file" ] && xargs -r kill -9 < "$pid_file" 2>/dev/null
rm -f "$pid_file"
for ns in "$@"; do ip netns del "$ns" 2>/dev/null; ip link del "br-$ns" 2>/dev/null; done
ip link del br-nodes 2>/dev/null
exit 0
"#;

/// Waits (at most 30 s) until the watchdogs of clusters made by earlier
/// test processes have cleaned up: the previous test binary may have
/// exited a moment ago, and its watchdog (which polls once a second)
/// would otherwise delete the namespaces this cluster is about to make.
fn wait_for_earlier_watchdogs() {
    let me = std::process::id().to_string();
    let earlier = || -> Vec<String> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
            .filter_map(|cmdline| {
                let args: Vec<String> = cmdline
                    .split(|byte| *byte == 0)
                    .map(|arg| String::from_utf8_lossy(arg).into_owned())
                    .collect();
                let is_watchdog = args.len() > 4 && args[0] == "sh" && args[3] == "watchdog";
                (is_watchdog && args[4] != me).then(|| args[4].clone())
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !earlier().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The cluster: two nodes, `outside`, pods, servers, agents (see the
/// module's documentation). Removed on drop.
#[derive(Debug)]
pub struct Cluster {
    pods: Vec<Pod>,
    /// Servers asked for and not started yet.
    pending: Vec<ServerSpec>,
    /// Server processes (one per [`Cluster::start_servers`]).
    servers: Vec<Child>,
    /// The client helper, started on first request.
    client: std::sync::Mutex<Option<Client>>,
    /// The agents, node1's first (empty until [`Cluster::start_agents`]).
    pub agents: Vec<NodeAgent>,
    manifests: PathBuf,
    id: usize,
    /// The pids of every process the cluster started, one a line, for the
    /// watchdog.
    pid_file: PathBuf,
    /// Kills what the cluster started once the test process is gone (a
    /// cluster kept in a `static` is never dropped).
    watchdog: Option<Child>,
}

/// A test binary's one cluster, built by `build` on first use and lent
/// to its tests one at a time. A failed test panics while holding the
/// lock; tests leave the cluster as they found it, so the next one may
/// use it.
pub fn shared(
    cell: &'static OnceLock<Mutex<Cluster>>,
    build: fn() -> Cluster,
) -> MutexGuard<'static, Cluster> {
    cell.get_or_init(|| Mutex::new(build()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Creates the nodes, `outside` and the bridge (no pods, no agents).
    pub fn create() -> Cluster {
        require_guest();
        wait_for_earlier_watchdogs();
        remove_network(&[]);
        let id = NEXT_CLUSTER.fetch_add(1, Ordering::SeqCst);
        let manifests =
            std::env::temp_dir().join(format!("cluster-manifests-{}-{id}", std::process::id()));
        let _ = std::fs::remove_dir_all(&manifests);
        std::fs::create_dir_all(&manifests).expect("create the manifest folder");
        let pid_file =
            std::env::temp_dir().join(format!("cluster-pids-{}-{id}", std::process::id()));
        std::fs::write(&pid_file, "").expect("create the cluster's pid file");
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(&pid_file)
            .args([Node::One.name(), Node::Two.name(), OUTSIDE])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the cluster's watchdog");
        let cluster = Cluster {
            pods: Vec::new(),
            pending: Vec::new(),
            servers: Vec::new(),
            client: std::sync::Mutex::new(None),
            agents: Vec::new(),
            manifests,
            id,
            pid_file,
            watchdog: Some(watchdog),
        };

        let members = [
            (Node::One.name(), Node::One.ip()),
            (Node::Two.name(), Node::Two.ip()),
            (OUTSIDE, OUTSIDE_IP),
        ];
        let mut root = vec![
            format!("link add {BRIDGE} type bridge"),
            format!("link set {BRIDGE} up"),
        ];
        for (ns, _) in members {
            // The node's uplink is its first device after lo, so that it
            // comes before kube-ipvs0 in the namespace's device list:
            // masquerade out of an interface without addresses (a pod's
            // veth) takes the first global address of that list.
            root.extend([
                format!("netns add {ns}"),
                format!("link add br-{ns} type veth peer name eth0 netns {ns}"),
                format!("link set br-{ns} master {BRIDGE}"),
                format!("link set br-{ns} up"),
            ]);
        }
        ip_batch(None, &root);
        for (ns, address) in members {
            let address6 = Node::ALL
                .into_iter()
                .find(|node| node.name() == ns)
                .map_or(OUTSIDE_IP6, Node::ip6);
            let mut commands = vec![
                "link set lo up".to_owned(),
                format!("addr add {address}/24 dev eth0"),
                // No duplicate address detection: usable at once.
                format!("addr add {address6}/64 dev eth0 nodad"),
                "link set eth0 up".to_owned(),
            ];
            match Node::ALL.into_iter().find(|node| node.name() == ns) {
                Some(node) => commands.extend([
                    // Scope link: never picked as a source address.
                    format!("addr add {GATEWAY}/32 dev lo scope link"),
                    format!(
                        "route add {} via {}",
                        node.other().pod_cidr(),
                        node.other().ip()
                    ),
                    format!(
                        "route add {} via {}",
                        node.other().pod_cidr6(),
                        node.other().ip6()
                    ),
                ]),
                None => commands.extend(Node::ALL.into_iter().flat_map(|node| {
                    [
                        format!("route add {} via {}", node.pod_cidr(), node.ip()),
                        format!("route add {} via {}", node.pod_cidr6(), node.ip6()),
                    ]
                })),
            }
            ip_batch(Some(ns), &commands);
        }
        for node in Node::ALL {
            // Pods' veths are made later in the node: they inherit
            // `default`'s proxy_arp (eth0 and lo, already there, do not).
            run_in(
                node.name(),
                &[
                    "sysctl",
                    "-q",
                    "-w",
                    "net.ipv4.ip_forward=1",
                    "net.ipv4.vs.conntrack=1",
                    "net.ipv4.conf.default.proxy_arp=1",
                    "net.ipv6.conf.all.forwarding=1",
                ],
            );
        }
        cluster
    }

    /// The three pods of the hostname example (`examples/hostname.yaml`)
    /// at its endpoints' addresses, two on node1 and one on node2, each
    /// serving its name on TCP 9376 (once [`Cluster::start_servers`]).
    pub fn add_hostname_pods(&mut self) {
        for (node, name, address) in [
            (Node::One, "hostname-1", "10.244.1.54"),
            (Node::One, "hostname-2", "10.244.1.55"),
            (Node::Two, "hostname-3", "10.244.2.53"),
        ] {
            let pod = self.add_pod(node, name, address);
            self.serve(&pod.name, &pod.name, Protocol::Tcp, 9376);
        }
    }

    /// Adds a pod `name` with `address` (inside `node`'s pod /24) on `node`.
    pub fn add_pod(&mut self, node: Node, name: &str, address: &str) -> Pod {
        self.add_pod_with(node, name, address, None)
    }

    /// Adds a pod `name` with `address` (inside `node`'s pod /24) and
    /// `address6` (inside its pod /64) on `node`.
    pub fn add_dual_stack_pod(
        &mut self,
        node: Node,
        name: &str,
        address: &str,
        address6: &str,
    ) -> Pod {
        self.add_pod_with(node, name, address, Some(address6))
    }

    fn add_pod_with(
        &mut self,
        node: Node,
        name: &str,
        address: &str,
        address6: Option<&str>,
    ) -> Pod {
        let veth = format!("cali{}", self.pods.len());
        try_run(&["ip", "netns", "del", name]);
        run(&["ip", "netns", "add", name]);
        let mut on_node = vec![
            format!("link add {veth} type veth peer name eth0 netns {name}"),
            format!("link set {veth} up"),
            format!("route add {address}/32 dev {veth}"),
        ];
        let mut in_pod = vec![
            format!("addr add {address}/32 dev eth0"),
            "link set eth0 up".to_owned(),
            "link set lo up".to_owned(),
            format!("route add {GATEWAY} dev eth0"),
            format!("route add default via {GATEWAY}"),
        ];
        if let Some(address6) = address6 {
            on_node.extend([
                format!("addr add {GATEWAY6}/64 dev {veth} nodad"),
                format!("route add {address6}/128 dev {veth}"),
            ]);
            in_pod.extend([
                format!("addr add {address6}/128 dev eth0 nodad"),
                format!("route add ::/0 via {GATEWAY6} dev eth0"),
            ]);
        }
        ip_batch(Some(node.name()), &on_node);
        ip_batch(Some(name), &in_pod);
        let pod = Pod {
            name: name.to_owned(),
            address: address.to_owned(),
            address6: address6.map(str::to_owned),
            node,
        };
        self.pods.push(pod.clone());
        pod
    }

    /// Adds `child` (an `ip netns exec`, which execs the command: same
    /// pid) to what the watchdog kills.
    fn record_pid(&self, child: &Child) {
        record_pid(&self.pid_file, child);
    }

    /// The pods added so far.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Asks for a server in namespace `ns` (a pod, a node or `outside`)
    /// that answers `name CLIENT-ADDRESS` on `0.0.0.0:port`; it starts with
    /// the next [`Cluster::start_servers`].
    pub fn serve(&mut self, ns: &str, name: &str, protocol: Protocol, port: u16) {
        self.pending.push(ServerSpec {
            ns: ns.to_owned(),
            name: name.to_owned(),
            protocol,
            port,
        });
    }

    /// Starts every server asked for since the last call, in one process
    /// (setns per socket), and waits (bounded) until all are bound.
    pub fn start_servers(&mut self) {
        use std::io::BufRead;
        let specs = std::mem::take(&mut self.pending);
        if specs.is_empty() {
            return;
        }
        let mut command = Command::new(PYTHON);
        command.args(["-c", &format!("{NETNS_PY}{SERVER_PY}")]);
        for spec in &specs {
            command.args([
                spec.ns.as_str(),
                spec.name.as_str(),
                spec.protocol.as_str(),
                &spec.port.to_string(),
            ]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the servers: {e}"));
        self.record_pid(&child);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let ready = receiver.recv_timeout(START_TIMEOUT);
        if ready.as_deref().map(str::trim) != Ok("ready") {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait for the servers");
            panic!(
                "the servers {specs:?} did not start within {START_TIMEOUT:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        self.servers.push(child);
    }

    /// The manifest folder both agents read.
    pub fn manifests(&self) -> &Path {
        &self.manifests
    }

    /// Writes `text` to the manifest folder as `name`, in one rename (the
    /// agents never read half a file).
    pub fn write_manifest(&self, name: &str, text: &str) {
        let staging = self.manifests.join(format!(".{name}.tmp"));
        std::fs::write(&staging, text).expect("write a manifest");
        std::fs::rename(&staging, self.manifests.join(name)).expect("rename a manifest");
    }

    /// Starts one agent per node and waits for each one's first sync:
    /// [`Cluster::spawn_agents`] then [`Cluster::wait_for_agents`].
    pub fn start_agents(&mut self, extra: &[&str]) {
        self.spawn_agents(extra);
        self.wait_for_agents();
    }

    /// Starts one agent per node (`ip netns exec nodeN ipvs-agent run
    /// --manifests DIR --node-name nodeN --node-ip IP --healthz-bind-address
    /// '' --metrics-bind-address '' EXTRA...`) without waiting: an agent
    /// takes tens of seconds to start and sync under emulation, pods and
    /// servers can be made meanwhile. Write the manifests first (the
    /// first sync is what [`Cluster::wait_for_agents`] waits for).
    pub fn spawn_agents(&mut self, extra: &[&str]) {
        self.spawn_agents_with(|node| node.ip().to_owned(), extra);
    }

    /// [`Cluster::spawn_agents`] with `node_ip(node)` as each node's
    /// `--node-ip` (one address or several, comma-separated).
    pub fn spawn_agents_with(&mut self, node_ip: impl Fn(Node) -> String, extra: &[&str]) {
        assert!(self.agents.is_empty(), "the agents are already running");
        for node in Node::ALL {
            let log = std::env::temp_dir().join(format!(
                "ipvs-agent-{}-{}-{}.log",
                std::process::id(),
                self.id,
                node.name()
            ));
            let file = std::fs::File::create(&log).expect("create the agent's log file");
            let mut command: Vec<std::ffi::OsString> =
                vec!["netns".into(), "exec".into(), node.name().into()];
            command.push(agent_binary().into());
            command.extend(["run".into(), "--manifests".into()]);
            command.push(self.manifests.clone().into());
            let node_ip = node_ip(node);
            command.extend(
                [
                    "--node-name",
                    node.name(),
                    "--node-ip",
                    &node_ip,
                    "--healthz-bind-address",
                    "",
                    "--metrics-bind-address",
                    "",
                ]
                .into_iter()
                .chain(extra.iter().copied())
                .map(std::ffi::OsString::from),
            );
            let child = spawn_agent_process(&command, file);
            self.record_pid(&child);
            self.agents.push(NodeAgent {
                node,
                child: Some(child),
                log,
                command,
                pid_file: self.pid_file.clone(),
            });
        }
    }

    /// Waits (bounded) until every agent has logged its first sync.
    pub fn wait_for_agents(&mut self) {
        for agent in &mut self.agents {
            agent.wait_for_syncs(1, START_TIMEOUT);
        }
    }

    /// Stops the agents (SIGTERM); fails the test if one does not exit
    /// cleanly.
    pub fn stop_agents(&mut self) {
        for mut agent in std::mem::take(&mut self.agents) {
            let node = agent.node;
            assert!(
                agent.stop(),
                "the agent of {node} did not exit cleanly; log:\n{}",
                agent.log_text()
            );
        }
    }

    /// The agents' logs, for failure messages.
    pub fn agent_logs(&self) -> String {
        self.agents
            .iter()
            .map(|agent| format!("== agent of {}:\n{}", agent.node, agent.log_text()))
            .collect()
    }

    /// Routes `address` (an external IP, a load-balancer IP) from `outside`
    /// via `node`.
    pub fn route_from_outside(&self, address: &str, node: Node) {
        run(&[
            "ip",
            "-n",
            OUTSIDE,
            "route",
            "replace",
            &format!("{address}/32"),
            "via",
            node.ip(),
        ]);
    }

    /// One TCP (HTTP) request from namespace `from` to `address:port`: the
    /// answer, or what went wrong (refused, timed out, ...) within
    /// `timeout` per step.
    pub fn tcp(
        &self,
        from: &str,
        address: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Answer, String> {
        self.request(from, Protocol::Tcp, address, port, timeout)
    }

    /// One UDP datagram from namespace `from` to `address:port`: the
    /// answer, or why none came within `timeout`.
    pub fn udp(
        &self,
        from: &str,
        address: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Answer, String> {
        self.request(from, Protocol::Udp, address, port, timeout)
    }

    /// One request through the client helper (started on first use: one
    /// Python start-up, seconds under emulation, instead of one per
    /// request).
    pub fn request(
        &self,
        from: &str,
        protocol: Protocol,
        address: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Answer, String> {
        use std::io::{BufRead, Write};
        let what = format!("{} {from} -> {address}:{port}", protocol.as_str());
        let mut slot = self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.is_none() {
            let mut child = Command::new(PYTHON)
                .args(["-c", &format!("{NETNS_PY}{CLIENT_PY}")])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the client helper: {e}"));
            self.record_pid(&child);
            let stdin = child.stdin.take().expect("stdin is piped");
            let stdout = child.stdout.take().expect("stdout is piped");
            let (sender, lines) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            *slot = Some(Client {
                child,
                stdin,
                lines,
            });
        }
        let client = slot.as_mut().expect("the client helper runs");
        writeln!(
            client.stdin,
            "{} {from} {address} {port} {}",
            protocol.as_str(),
            timeout.as_secs_f64()
        )
        .unwrap_or_else(|e| panic!("{what}: the client helper is gone: {e}"));
        let _ = client.stdin.flush();
        // Connect plus receives each bounded by `timeout`, plus the
        // helper's start-up.
        let line = match client.lines.recv_timeout(timeout * 3 + START_TIMEOUT) {
            Ok(line) => line,
            Err(error) => {
                let _ = client.child.kill();
                let _ = client.child.wait();
                *slot = None;
                panic!("{what}: the client helper did not answer ({error})");
            }
        };
        if let Some(error) = line.strip_prefix("ERR ") {
            return Err(format!("{what}: {error}"));
        }
        let body = line.strip_prefix("OK ").unwrap_or(&line);
        match body.split_once(' ') {
            Some((server, client)) => Ok(Answer::new(server, client.trim())),
            None => Err(format!(
                "{what}: an answer without a client address: {body:?}"
            )),
        }
    }

    /// What a failed assertion should show: both nodes' IPVS tables,
    /// addresses, nftables rulesets and conntrack entries, and the logs.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for node in Node::ALL {
            for argv in [
                &["ipvsadm", "-Ln"][..],
                &["ip", "-o", "addr"][..],
                &["ip", "route"][..],
                &["ip", "-6", "route"][..],
                &["nft", "list", "ruleset"][..],
                &["conntrack", "-L"][..],
            ] {
                let output = exec_in(node.name(), argv);
                text.push_str(&format!(
                    "== {node}: {}\n{}{}",
                    argv.join(" "),
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        text.push_str(&self.agent_logs());
        text
    }
}

/// Removes the cluster's namespaces and bridge (and `pods`' namespaces).
/// One `ip -force -batch` (going on past what does not exist).
fn remove_network(pods: &[Pod]) {
    use std::io::Write;
    let mut commands: Vec<String> = pods
        .iter()
        .map(|pod| format!("netns del {}", pod.name))
        .collect();
    for ns in [Node::One.name(), Node::Two.name(), OUTSIDE] {
        commands.push(format!("netns del {ns}"));
        commands.push(format!("link del br-{ns}"));
    }
    commands.push(format!("link del {BRIDGE}"));
    let Ok(mut child) = Command::new("ip")
        .args(["-force", "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all((commands.join("\n") + "\n").as_bytes());
    }
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_file(&self.pid_file);
        self.agents.clear();
        if let Some(mut client) = self
            .client
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
        {
            let _ = client.child.kill();
            let _ = client.child.wait();
        }
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        remove_network(&self.pods);
        let _ = std::fs::remove_dir_all(&self.manifests);
    }
}
