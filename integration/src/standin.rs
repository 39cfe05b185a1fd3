//! The Kubernetes API stand-in (`kube-standin`, a workspace binary) as a
//! process for the guest tests: started on a free loopback port with a
//! kubeconfig pointing at it, then driven as a controller would drive the
//! API (create/replace/delete JSON objects over HTTP) and through its test
//! controls (cut watches, go down or fail with a status, compact, store
//! an object as it is, bulk load). Requests go
//! through `curl`, which the guest has.

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
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Answer {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "-X", method, "-w", "\n%{http_code}"])
            .args(["-H", "Content-Type: application/json"])
            .arg(format!("{}{path}", self.url));
        if body.is_some() {
            command.args(["--data-binary", "@-"]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run curl");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("curl's stdin");
            if let Some(body) = body {
                stdin.write_all(body.as_bytes()).expect("write the body");
            }
        }
        let output = child.wait_with_output().expect("wait for curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "curl {method} {path} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Answer {
            code: code.trim().parse().unwrap_or(0),
            body: body.to_owned(),
        }
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
