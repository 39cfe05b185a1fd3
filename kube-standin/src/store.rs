//! The object store and the state every request shares. Every create,
//! update and delete goes through one commit path ([`Shared::commit`]):
//! it bumps the one global resourceVersion and stamps it on the object,
//! keeps the change in the bounded history watches resume from, and sends
//! it to the open watches.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::reply::{not_found, status};
use crate::resource::{object_name, object_namespace, Key, Resource};

/// How many changes a watch can resume from.
const HISTORY: usize = 10_000;

/// One change, as watches send it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) revision: u64,
    pub(crate) resource: Resource,
    pub(crate) kind: &'static str,
    pub(crate) object: Value,
}

/// The objects and their history: read through [`Shared::store`],
/// changed only by [`Shared::commit`] (and forgotten by
/// [`Store::compact`]).
#[derive(Debug, Default)]
pub(crate) struct Store {
    revision: u64,
    /// The oldest version a watch may start from.
    compacted: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Change>,
}

impl Store {
    /// The current resourceVersion.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// The oldest version a watch may start from.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn objects(&self) -> &BTreeMap<Key, Value> {
        &self.objects
    }

    /// The latest changes, oldest first.
    pub(crate) fn history(&self) -> &VecDeque<Change> {
        &self.history
    }

    /// Forgets the history: watches from older versions get 410.
    pub(crate) fn compact(&mut self) {
        self.compacted = self.revision;
        self.history.clear();
    }
}

/// What a commit does at its key.
#[derive(Debug)]
enum Write {
    /// Adds a new object (`ADDED`).
    Add(Value),
    /// Replaces the object (`MODIFIED`).
    Modify(Value),
    /// Removes the object (`DELETED`).
    Delete,
}

#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Change>,
    /// Bumped to cut every open watch.
    pub(crate) cuts: tokio::sync::watch::Sender<u64>,
    /// While set and not over, every API request (not the controls) is
    /// answered with this failure (the `down` and `fail` controls).
    pub(crate) failing: Mutex<Option<Failure>>,
}

/// A time during which every API request fails with one status code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    pub(crate) until: Instant,
    pub(crate) code: StatusCode,
}

pub(crate) type App = Arc<Shared>;

impl Shared {
    pub(crate) fn new() -> Self {
        let (changes, _) = broadcast::channel(65_536);
        let (cuts, _) = tokio::sync::watch::channel(0u64);
        Self {
            store: Mutex::new(Store::default()),
            changes,
            cuts,
            failing: Mutex::new(None),
        }
    }

    /// The store, locked.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live feed of changes after the current version (subscribe
    /// with the store locked to miss none).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// The one path by which objects change: bumps the resourceVersion and
    /// stamps it (with the server's metadata) on the object, keeps or
    /// removes the object, and records the change in the history and on
    /// the live feed. Returns the object as it is sent, or `None`, changing
    /// nothing, if the key is taken (add) or free (modify, delete).
    fn commit(&self, store: &mut Store, key: Key, write: Write) -> Option<Value> {
        let current = store.objects.get(&key);
        if current.is_some() == matches!(write, Write::Add(_)) {
            return None;
        }
        store.revision += 1;
        let revision = store.revision;
        let resource = key.0;
        let (kind, mut object) = match write {
            Write::Add(object) => ("ADDED", stamp_new(object, &key, revision)),
            Write::Modify(object) => ("MODIFIED", stamp_kept(object, current?, resource)),
            Write::Delete => ("DELETED", current?.clone()),
        };
        object["metadata"]["resourceVersion"] = json!(revision.to_string());
        match kind {
            "DELETED" => {
                store.objects.remove(&key);
            }
            // An update that changes nothing is not recorded. (It cannot
            // happen: the new resourceVersion on it always differs.)
            "MODIFIED" if current == Some(&object) => return Some(object),
            _ => {
                store.objects.insert(key, object.clone());
            }
        }
        let change = Change {
            revision,
            resource,
            kind,
            object: object.clone(),
        };
        store.history.push_back(change.clone());
        while store.history.len() > HISTORY {
            if let Some(dropped) = store.history.pop_front() {
                store.compacted = store.compacted.max(dropped.revision);
            }
        }
        let _ = self.changes.send(change);
        Some(object)
    }

    /// Creates an object (used by the API and by `--load`); the error is
    /// the API's answer.
    // Only ever returned to be sent: boxing the Response would gain nothing.
    #[allow(clippy::result_large_err)]
    pub(crate) fn create(
        &self,
        resource: Resource,
        namespace: Option<String>,
        object: Value,
    ) -> Result<Value, Response> {
        if !object.is_object() {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the body is not an object",
            ));
        }
        let namespace = namespace_of_new(resource, namespace, &object)?;
        let mut name = object_name(&object);
        let mut store = self.store();
        if name.is_empty() {
            match object["metadata"]["generateName"].as_str() {
                Some(prefix) => name = format!("{prefix}{:05x}", store.revision + 1),
                None => {
                    return Err(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name: Required value",
                    ))
                }
            }
        }
        let key = (resource, namespace, name.clone());
        self.commit(&mut store, key, Write::Add(object))
            .ok_or_else(|| {
                status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!(
                        "{} \"{name}\" already exists",
                        resource.kind().to_lowercase()
                    ),
                )
            })
    }

    /// Replaces the object at `key` with what `make` makes of it (`Err`:
    /// there is no body); with `check_version`, a `resourceVersion` given
    /// must be the current one. The error is the API's answer.
    #[allow(clippy::result_large_err)]
    pub(crate) fn update(
        &self,
        key: Key,
        make: impl FnOnce(&Value, u64) -> Result<Value, ()>,
        check_version: bool,
    ) -> Result<Value, Response> {
        let (resource, name) = (key.0, key.2.clone());
        let mut store = self.store();
        let Some(current) = store.objects.get(&key).cloned() else {
            return Err(not_found(resource, &name));
        };
        let Ok(object) = make(&current, store.revision) else {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "a body is required",
            ));
        };
        if check_version {
            if let Some(given) = object["metadata"]["resourceVersion"]
                .as_str()
                .filter(|v| !v.is_empty())
            {
                if Some(given) != current["metadata"]["resourceVersion"].as_str() {
                    return Err(status(StatusCode::CONFLICT, "Conflict", format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        resource.kind().to_lowercase())));
                }
            }
        }
        if object_name(&object) != name {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the name of the object does not match the name on the URL",
            ));
        }
        self.commit(&mut store, key, Write::Modify(object))
            .ok_or_else(|| not_found(resource, &name))
    }

    /// Stores `object` (of `resource`, in its own namespace, else
    /// `default`) as it is, decoded as its type or not: created (`ADDED`)
    /// or replaced (`MODIFIED`, no resourceVersion check). The `raw`
    /// control, for objects a real API server would refuse.
    #[allow(clippy::result_large_err)]
    pub(crate) fn store_raw(&self, resource: Resource, object: Value) -> Result<Value, Response> {
        let name = object_name(&object);
        if !object.is_object() || name.is_empty() {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "raw: the body must be an object with metadata.name",
            ));
        }
        let namespace = namespace_of_new(resource, None, &object)?;
        let key = (resource, namespace, name.clone());
        let mut store = self.store();
        let write = if store.objects.contains_key(&key) {
            Write::Modify(object)
        } else {
            Write::Add(object)
        };
        self.commit(&mut store, key, write)
            .ok_or_else(|| not_found(resource, &name))
    }

    /// Deletes the object at `key`; the error is the API's answer.
    #[allow(clippy::result_large_err)]
    pub(crate) fn delete(&self, key: Key) -> Result<Value, Response> {
        let (resource, name) = (key.0, key.2.clone());
        let mut store = self.store();
        self.commit(&mut store, key, Write::Delete)
            .ok_or_else(|| not_found(resource, &name))
    }
}

/// The namespace a new object goes in: the request's, else the object's,
/// else `default` (empty for cluster-scoped resources); the request's and
/// the object's must agree.
#[allow(clippy::result_large_err)]
fn namespace_of_new(
    resource: Resource,
    namespace: Option<String>,
    object: &Value,
) -> Result<String, Response> {
    if !resource.namespaced() {
        return Ok(String::new());
    }
    let given = object_namespace(object);
    let namespace = namespace.unwrap_or_else(|| {
        if given.is_empty() {
            "default".into()
        } else {
            given.clone()
        }
    });
    if !given.is_empty() && given != namespace {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(namespace)
}

/// A new object's server-set fields: kind, apiVersion, name, namespace,
/// uid and creationTimestamp (the resourceVersion is the commit's).
fn stamp_new(mut object: Value, key: &Key, revision: u64) -> Value {
    let (resource, namespace, name) = key;
    object["kind"] = json!(resource.kind());
    object["apiVersion"] = json!(resource.api_version());
    let metadata = &mut object["metadata"];
    metadata["name"] = json!(name);
    if resource.namespaced() {
        metadata["namespace"] = json!(namespace);
    }
    metadata["uid"] = json!(format!("00000000-0000-4000-8000-{revision:012x}"));
    metadata["creationTimestamp"] = json!(now_rfc3339());
    object
}

/// A replacement's server-set fields: kind and apiVersion, and the
/// current object's uid, creationTimestamp and namespace.
fn stamp_kept(mut object: Value, current: &Value, resource: Resource) -> Value {
    object["kind"] = json!(resource.kind());
    object["apiVersion"] = json!(resource.api_version());
    for field in ["uid", "creationTimestamp", "namespace"] {
        if !current["metadata"][field].is_null() {
            object["metadata"][field] = current["metadata"][field].clone();
        }
    }
    object
}

fn now_rfc3339() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let (hour, minute, second) = (seconds % 86_400 / 3600, seconds % 3600 / 60, seconds % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}
