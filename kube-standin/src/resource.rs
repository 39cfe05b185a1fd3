//! The resource kinds the stand-in serves (their paths, kinds and API
//! versions), what a request path addresses, and the JSON handling of
//! objects: their names and JSON merge patches.

use serde_json::{json, Value};

/// A resource type the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Resource {
    Services,
    Endpoints,
    Nodes,
    EndpointSlices,
    Events,
}

impl Resource {
    fn from_plural(group: &str, plural: &str) -> Option<Self> {
        match (group, plural) {
            ("", "services") => Some(Self::Services),
            ("", "endpoints") => Some(Self::Endpoints),
            ("", "nodes") => Some(Self::Nodes),
            ("discovery.k8s.io", "endpointslices") => Some(Self::EndpointSlices),
            ("events.k8s.io", "events") => Some(Self::Events),
            _ => None,
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Services => "Service",
            Self::Endpoints => "Endpoints",
            Self::Nodes => "Node",
            Self::EndpointSlices => "EndpointSlice",
            Self::Events => "Event",
        }
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Self::EndpointSlices => "discovery.k8s.io/v1",
            Self::Events => "events.k8s.io/v1",
            _ => "v1",
        }
    }

    pub(crate) fn namespaced(self) -> bool {
        self != Self::Nodes
    }

    pub(crate) fn from_kind(kind: &str) -> Option<Self> {
        [
            Self::Services,
            Self::Endpoints,
            Self::Nodes,
            Self::EndpointSlices,
            Self::Events,
        ]
        .into_iter()
        .find(|resource| resource.kind() == kind)
    }
}

/// Where an object is kept: its resource, namespace (empty when
/// cluster-scoped) and name.
pub(crate) type Key = (Resource, String, String);

/// A path, split into what it addresses.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) resource: Resource,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
}

impl Target {
    /// What `path` addresses, if it is a path of a resource served here.
    pub(crate) fn parse(path: &str) -> Option<Target> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", "v1", rest @ ..] => ("", rest),
            ["apis", group, "v1", rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
                (Some(namespace.to_string()), rest)
            }
            _ => (None, rest),
        };
        let (plural, name) = match rest {
            [plural] => (*plural, None),
            [plural, name] => (*plural, Some(name.to_string())),
            // The status subresource is the object itself here.
            [plural, name, "status"] => (*plural, Some(name.to_string())),
            _ => return None,
        };
        let resource = Resource::from_plural(group, plural)?;
        if !resource.namespaced() && namespace.is_some() {
            return None;
        }
        Some(Target {
            resource,
            namespace,
            name,
        })
    }

    /// The key of the object `name` in the addressed collection.
    pub(crate) fn key(&self, name: &str) -> Key {
        (
            self.resource,
            self.namespace.clone().unwrap_or_default(),
            name.to_owned(),
        )
    }
}

pub(crate) fn object_namespace(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

pub(crate) fn object_name(object: &Value) -> String {
    object["metadata"]["name"].as_str().unwrap_or("").to_owned()
}

/// Applies a JSON merge patch (RFC 7386) to `target`.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(entries) => {
            if !target.is_object() {
                *target = json!({});
            }
            let Some(map) = target.as_object_mut() else {
                return;
            };
            for (key, value) in entries {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        other => *target = other.clone(),
    }
}
