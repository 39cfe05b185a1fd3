//! The Kubernetes API stand-in (`kube-standin`, a workspace binary) as a
//! process for the guest tests: started on a free loopback port with a
//! kubeconfig pointing at it, then driven as a controller would drive the
//! API (create/replace/delete JSON objects over HTTP) and through its test
//! controls (cut watches, go down or fail with a status, compact, store
//! an object as it is, bulk load). Requests are plain HTTP/1.1 over
//! loopback TCP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::agent::workspace_binary;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A running stand-in API server.
#[derive(Debug)]
pub struct Standin {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A kubeconfig pointing at it (what the agent gets).
    pub kubeconfig: PathBuf,
}

/// One HTTP answer: the status code and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// The body as text.
    pub body: String,
}

/// The body of a chunked HTTP answer.
fn dechunk(mut payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = payload.windows(2).position(|window| window == b"\r\n") {
        let size = std::str::from_utf8(&payload[..end])
            .ok()
            .and_then(|size| usize::from_str_radix(size.trim(), 16).ok());
        let rest = &payload[end + 2..];
        match size {
            Some(size) if size > 0 && rest.len() >= size => {
                body.extend_from_slice(&rest[..size]);
                payload = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
            }
            _ => break,
        }
    }
    body
}

/// The collection path of an object (from its apiVersion, kind and
/// namespace), e.g. `/api/v1/namespaces/default/services`.
pub fn collection_path(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    match kind {
        "Service" => format!("/api/v1/namespaces/{namespace}/services"),
        "Endpoints" => format!("/api/v1/namespaces/{namespace}/endpoints"),
        "EndpointSlice" => {
            format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices")
        }
        "Node" => "/api/v1/nodes".to_owned(),
        other => panic!("the stand-in does not serve kind {other:?}"),
    }
}

impl Standin {
    /// Starts `kube-standin` with the objects of `manifests` loaded.
    pub fn start(manifests: &[&Path]) -> Standin {
        let kubeconfig = std::env::temp_dir().join(format!(
            "standin-{}-{}.kubeconfig",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let mut command = Command::new(workspace_binary("kube-standin"));
        command
            .args(["--listen", "127.0.0.1:0", "--kubeconfig-out"])
            .arg(&kubeconfig);
        if !manifests.is_empty() {
            command.arg("--load").args(manifests);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kube-standin");
        let stdout = child.stdout.take().expect("kube-standin's stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read kube-standin's first line");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("kube-standin did not start: {line:?}"))
            .to_owned();
        Standin {
            child,
            url: format!("http://{address}"),
            kubeconfig,
        }
    }

    /// One HTTP request; `body` is sent as JSON (or YAML for controls).
    /// Plain HTTP/1.1 over a loopback TCP connection (a `curl` process per
    /// request costs most of a second under emulation, which the churn
    /// soak's rate cannot afford).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address)
            .unwrap_or_else(|e| panic!("connect to kube-standin at {address}: {e}"));
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"));
        let split = raw
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path}: no HTTP answer: {:?}",
                    String::from_utf8_lossy(&raw)
                )
            });
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let payload = &raw[split + 4..];
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let chunked = head.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("transfer-encoding:") && line.contains("chunked")
        });
        let body = if chunked {
            dechunk(payload)
        } else {
            payload.to_vec()
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        Answer { code, body }
    }

    /// Creates `object`, or replaces it when it exists (as `kubectl apply`
    /// would end up); fails the test on any other answer.
    pub fn apply(&self, object: &Value) {
        let collection = collection_path(object);
        let text = object.to_string();
        let created = self.request("POST", &collection, Some(&text));
        if created.code == 201 {
            return;
        }
        assert_eq!(created.code, 409, "create {collection}: {}", created.body);
        let name = object["metadata"]["name"].as_str().expect("a name");
        let replaced = self.request("PUT", &format!("{collection}/{name}"), Some(&text));
        assert_eq!(
            replaced.code, 200,
            "replace {collection}/{name}: {}",
            replaced.body
        );
    }

    /// Deletes the object `kind` `namespace/name`.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let shape = serde_json::json!({"kind": kind, "metadata": {"namespace": namespace}});
        let path = format!("{}/{name}", collection_path(&shape));
        let answer = self.request("DELETE", &path, None);
        assert_eq!(answer.code, 200, "delete {path}: {}", answer.body);
    }

    /// A test control (`drop-watches`, `compact`, `down?seconds=N`, ...).
    pub fn control(&self, control: &str) -> String {
        let answer = self.request("POST", &format!("/standin/{control}"), None);
        assert_eq!(answer.code, 200, "control {control}: {}", answer.body);
        answer.body
    }

    /// Stores `object` as it is, decoded as its kind or not (the `raw`
    /// control: created, or replaced when it exists).
    pub fn store_raw(&self, object: &Value) {
        let answer = self.request("POST", "/standin/raw", Some(&object.to_string()));
        assert_eq!(answer.code, 200, "raw: {}", answer.body);
    }

    /// Creates every object of a multi-document YAML text at once.
    pub fn load(&self, yaml: &str) {
        let answer = self.request("POST", "/standin/load", Some(yaml));
        assert_eq!(answer.code, 200, "load: {}", answer.body);
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}
