//! Loading Kubernetes objects from manifest files (`--manifests`).
//!
//! A path is a YAML file (several documents separated by `---`) or a
//! directory, whose `*.yaml`, `*.yml` and `*.json` files are read in name
//! order (not recursively). Kept: v1 `Service`, v1 `Endpoints`,
//! discovery.k8s.io/v1 `EndpointSlice`, and the items of a v1 `List`.
//! Other kinds (Deployments, Pods, ...) are skipped without a word: they
//! legitimately live in the same files. A kept kind with another
//! `apiVersion`, or an object that does not parse, is reported with its
//! file, document, object and field, and skipped; the rest still loads.

use std::fmt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::desired::ClusterState;

/// A path that could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("reading {path}: {source}")]
pub struct ManifestError {
    /// The path.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// One object (or document) skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The file.
    pub file: PathBuf,
    /// The document's position in the file, from 1.
    pub document: usize,
    /// `Kind namespace/name`, when known.
    pub object: Option<String>,
    /// The field at fault, when known (`spec.ports[0].port`).
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)?;
        if let Some(object) = &self.object {
            write!(f, ": {object}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What the manifests held.
#[derive(Debug, Clone, Default)]
pub struct LoadedManifests {
    /// The objects that loaded.
    pub cluster: ClusterState,
    /// The objects that did not.
    pub problems: Vec<ManifestProblem>,
    /// Files read.
    pub files: Vec<PathBuf>,
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The files behind `paths` (directories expanded, in name order).
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        let error = |source| ManifestError {
            path: path.clone(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(error)?;
        if metadata.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(error)?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|entry| entry.is_file() && is_manifest_file(entry))
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Loads every object of `paths`.
pub fn load_manifests(paths: &[PathBuf]) -> Result<LoadedManifests, ManifestError> {
    let mut loaded = LoadedManifests::default();
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ManifestError {
            path: file.clone(),
            source,
        })?;
        load_text(&file, &text, &mut loaded);
        loaded.files.push(file);
    }
    Ok(loaded)
}

/// Loads the documents of one file's text into `loaded`.
pub fn load_text(file: &Path, text: &str, loaded: &mut LoadedManifests) {
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let problem = |message: String| ManifestProblem {
            file: file.to_owned(),
            document: index + 1,
            object: None,
            field: None,
            message,
        };
        let value = match Value::deserialize(document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(error) => {
                loaded
                    .problems
                    .push(problem(format!("not valid YAML: {error}")));
                // The parser cannot go on after a syntax error.
                break;
            }
        };
        load_value(file, index + 1, value, loaded);
    }
}

fn describe(value: &Value) -> String {
    let kind = value["kind"].as_str().unwrap_or("object");
    let name = value["metadata"]["name"].as_str().unwrap_or("<unnamed>");
    let namespace = value["metadata"]["namespace"].as_str().unwrap_or("default");
    format!("{kind} {namespace}/{name}")
}

fn load_value(file: &Path, document: usize, value: Value, loaded: &mut LoadedManifests) {
    let problem = |field: Option<&str>, message: String| ManifestProblem {
        file: file.to_owned(),
        document,
        object: Some(describe(&value)),
        field: field.map(str::to_owned),
        message,
    };
    if !value.is_object() {
        loaded.problems.push(ManifestProblem {
            file: file.to_owned(),
            document,
            object: None,
            field: None,
            message: "not a Kubernetes object (a mapping with apiVersion and kind)".into(),
        });
        return;
    }
    let kind = value["kind"].as_str().unwrap_or("");
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    let expected = match kind {
        "Service" | "Endpoints" | "List" => "v1",
        "EndpointSlice" => "discovery.k8s.io/v1",
        "" => {
            loaded
                .problems
                .push(problem(Some("kind"), "missing".into()));
            return;
        }
        _ => return,
    };
    if api_version != expected {
        loaded.problems.push(problem(
            Some("apiVersion"),
            format!("{api_version:?} is not {expected} (the {kind} is skipped)"),
        ));
        return;
    }
    match kind {
        "List" => {
            if let Some(items) = value["items"].as_array() {
                for item in items.clone() {
                    load_value(file, document, item, loaded);
                }
            }
        }
        "Service" => {
            if let Some(service) = parse::<Service>(&value, &problem, loaded) {
                loaded.cluster.insert_service(service);
            }
        }
        "Endpoints" => {
            if let Some(endpoints) = parse::<Endpoints>(&value, &problem, loaded) {
                loaded.cluster.insert_endpoints(endpoints);
            }
        }
        "EndpointSlice" => {
            if let Some(slice) = parse::<EndpointSlice>(&value, &problem, loaded) {
                loaded.cluster.insert_slice(&slice);
            }
        }
        _ => {}
    }
}

fn parse<T: DeserializeOwned>(
    value: &Value,
    problem: &dyn Fn(Option<&str>, String) -> ManifestProblem,
    loaded: &mut LoadedManifests,
) -> Option<T> {
    if value["metadata"]["name"].as_str().unwrap_or("").is_empty() {
        loaded
            .problems
            .push(problem(Some("metadata.name"), "missing".into()));
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(object) => Some(object),
        Err(error) => {
            let field = error.path().to_string();
            loaded
                .problems
                .push(problem(Some(&field), error.into_inner().to_string()));
            None
        }
    }
}
