//! No credential is ever logged: the agent runs against a fake API server
//! (a few lines of HTTP here) with a kubeconfig carrying a bearer token, at
//! the highest verbosity (`--v=10`, and `RUST_LOG=trace`, which also opens
//! kube's, hyper's and tower's own trace logs), and the token must not
//! appear in anything it prints. The server checks that the token was
//! sent, so the credential was really in use. Runs on the host and never
//! reaches the kernel: with `--detect-local-mode NodeCIDR` the agent
//! waits for its Node's pod CIDRs, which this server never lists, so it
//! lists and watches (again and again: every watch ends at once) until it
//! is stopped after a few seconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The credential: a string no log line would hold by chance.
const TOKEN: &str = "sentinel-token-7c1f9e04b2d84a6f93e1c5d0a8b7e2f6";

/// The answer to one request: an empty list of what was asked for (a
/// watch ends at once; the watcher watches again).
fn answer(path: &str) -> (u16, String) {
    let list = |api_version: &str, kind: &str| {
        format!(
            r#"{{"apiVersion":"{api_version}","kind":"{kind}","metadata":{{"resourceVersion":"1"}},"items":[]}}"#
        )
    };
    if path.contains("watch=true") || path.contains("watch=1") {
        return (200, String::new());
    }
    if path.contains("/endpointslices") {
        (200, list("discovery.k8s.io/v1", "EndpointSliceList"))
    } else if path.contains("/services") {
        (200, list("v1", "ServiceList"))
    } else if path.contains("/nodes") {
        (200, list("v1", "NodeList"))
    } else {
        (
            404,
            r#"{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404}"#
                .to_owned(),
        )
    }
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut head = Vec::new();
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
    }
    let mut body = vec![0; content_length];
    let _ = reader.read_exact(&mut body);
    let path = head
        .first()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    seen.lock().unwrap().push(head.join("\n"));
    let (code, body) = answer(&path);
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Runs the agent at the highest verbosity against the fake server, with
/// `rust_log` (None: unset); returns (stdout + stderr, request heads).
fn run_agent(rust_log: Option<&str>) -> (String, Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake API server");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&seen);
                std::thread::spawn(move || serve(stream, &seen));
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: agent
  user:
    token: {TOKEN}
contexts:
- name: fake
  context:
    cluster: fake
    user: agent
current-context: fake
"
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipvs-agent"));
    command
        .args(["run", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--hostname-override",
            "node1",
            "--node-ip",
            "192.168.122.10",
            "--v=10",
            // Wait for a Node that never comes: no kernel change.
            "--detect-local-mode",
            "NodeCIDR",
            "--healthz-bind-address=",
            "--metrics-bind-address=",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        command.env("RUST_LOG", filter);
    }
    let mut child = command.spawn().expect("start ipvs-agent");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let output = out.join().unwrap() + &err.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    (output, seen)
}

fn assert_token_not_logged(rust_log: Option<&str>) {
    let (output, seen) = run_agent(rust_log);
    let authorized = format!("authorization: bearer {TOKEN}");
    assert!(
        seen.iter()
            .any(|head| head.to_ascii_lowercase().contains(&authorized)),
        "the agent sent its token to the API server; requests:\n{}\noutput:\n{output}",
        seen.join("\n\n")
    );
    assert!(
        output.contains("TRACE") && output.contains("otel.name=\"watch\""),
        "the agent logged its requests at trace level:\n{output}"
    );
    assert!(
        !output.contains("synced"),
        "the agent must not have synced:\n{output}"
    );
    assert!(
        !output.contains(TOKEN),
        "the token appears in the agent's output (RUST_LOG={rust_log:?}):\n{}",
        output
            .lines()
            .filter(|line| line.contains(TOKEN))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Nor a recognisable part of it (a prefix cut by a log line).
    assert!(
        !output.contains(&TOKEN[..24]),
        "a part of the token is logged"
    );
}

#[test]
fn the_token_is_not_logged_at_the_agents_highest_verbosity() {
    assert_token_not_logged(None);
}

#[test]
fn the_token_is_not_logged_with_every_crates_trace_on() {
    assert_token_not_logged(Some("trace"));
}
