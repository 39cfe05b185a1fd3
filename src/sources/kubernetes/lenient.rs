//! Objects that may not decode as their type, so that one bad object
//! never stops the others.
//!
//! A typed watcher (`Api<Service>`) decodes a list as a whole: one item
//! the API server serves but the type refuses (a `port` of `"abc"`, a
//! newer server's field of another shape, a broken conversion webhook)
//! fails the list, the watcher retries it forever, and nothing of that
//! kind updates again. So the watchers watch [`Lenient<K>`] instead: the
//! same resource (kind, group, version, plural are `K`'s), whose decoding
//! never fails. It keeps the object's identity and either the typed
//! object or where and why it did not decode:
//!
//! ```no_run
//! # use ipvs_agent::sources::kubernetes::lenient::{sort_event, Lenient, Sorted};
//! # use k8s_openapi::api::core::v1::Service;
//! # use futures::StreamExt;
//! # async fn run(client: kube::Client) {
//! use kube::runtime::watcher;
//! let mut events = watcher::watcher(
//!     kube::Api::<Lenient<Service>>::all(client),
//!     watcher::Config::default(),
//! )
//! .boxed();
//! while let Some(Ok(event)) = events.next().await {
//!     match sort_event(event) {
//!         Sorted::Event(event) => { /* a watcher::Event<Service> */ }
//!         Sorted::Undecodable(bad) => eprintln!("{bad}"),
//!     }
//! }
//! # }
//! ```
//!
//! What becomes of an undecodable object is the store's: its last good
//! version is kept (a new object that is bad from the start is skipped),
//! and a deletion still deletes it (it needs only the name).

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Where and why an object did not decode as its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The field, as serde_path_to_error spells it (`spec.ports[0].port`;
    /// `.` for the object itself).
    pub field: String,
    /// serde's message (`invalid type: string "abc", expected i32`).
    pub message: String,
}

/// An object of `K`'s resource, decoded as `K` or not.
#[derive(Debug, Clone)]
pub struct Lenient<K> {
    /// The object's identity only (name, namespace, uid,
    /// resourceVersion), read whether it decodes or not: the watcher
    /// needs its resourceVersion, the store its name.
    pub metadata: ObjectMeta,
    /// The typed object (without managedFields, which the agent never
    /// reads), or where it failed.
    pub decoded: Result<K, DecodeError>,
}

impl<K: DeserializeOwned> Lenient<K> {
    /// Decodes `value` as `K`, keeping its identity either way.
    pub fn from_value(mut value: Value) -> Self {
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
        let metadata = identity(&value);
        let decoded = serde_path_to_error::deserialize::<_, K>(value).map_err(|error| {
            let field = error.path().to_string();
            DecodeError {
                field,
                message: error.into_inner().to_string(),
            }
        });
        Self { metadata, decoded }
    }
}

/// The identity fields of an object's metadata, each read on its own (a
/// bad `labels` must not lose the name).
fn identity(value: &Value) -> ObjectMeta {
    let field = |name: &str| {
        value["metadata"][name]
            .as_str()
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
    };
    ObjectMeta {
        name: field("name"),
        namespace: field("namespace"),
        uid: field("uid"),
        resource_version: field("resourceVersion"),
        ..ObjectMeta::default()
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    /// Never fails on a JSON value: a list or event with one bad item
    /// still decodes.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

/// `K`'s resource: requests and paths are exactly `K`'s.
impl<K: Resource<DynamicType = ()>> Resource for Lenient<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }

    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }

    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }

    fn api_version(_: &()) -> Cow<'_, str> {
        K::api_version(&())
    }

    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }

    fn url_path(_: &(), namespace: Option<&str>) -> String {
        K::url_path(&(), namespace)
    }

    fn metadata_api() -> bool {
        K::metadata_api()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// An object received (listed, added or modified) that does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Its kind (`Service`).
    pub kind: String,
    /// Its namespace (none: cluster-scoped, or not given).
    pub namespace: Option<String>,
    /// Its name (empty: it has none).
    pub name: String,
    /// Where and why.
    pub error: DecodeError,
}

impl Undecodable {
    /// `namespace/name`, or the name of a cluster-scoped object.
    pub fn object(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl fmt::Display for Undecodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} does not decode: {}: {}; its last good version is kept (a new object is skipped)",
            self.kind,
            self.object(),
            self.error.field,
            self.error.message
        )
    }
}

/// A watcher event, sorted: an event of typed objects, or one object that
/// did not decode.
#[derive(Debug)]
pub enum Sorted<K> {
    /// Every object in it decoded (a deletion always does: it needs only
    /// the name, and carries `K`'s default with the identity otherwise).
    Event(Event<K>),
    /// A listed, added or modified object that did not decode.
    Undecodable(Undecodable),
}

/// Sorts one event of lenient objects.
pub fn sort_event<K>(event: Event<Lenient<K>>) -> Sorted<K>
where
    K: Resource<DynamicType = ()> + Default,
{
    let undecodable = |metadata: ObjectMeta, error: DecodeError| {
        Sorted::Undecodable(Undecodable {
            kind: K::kind(&()).into_owned(),
            namespace: metadata.namespace,
            name: metadata.name.unwrap_or_default(),
            error,
        })
    };
    match event {
        Event::Init => Sorted::Event(Event::Init),
        Event::InitDone => Sorted::Event(Event::InitDone),
        Event::InitApply(object) => match object.decoded {
            Ok(decoded) => Sorted::Event(Event::InitApply(decoded)),
            Err(error) => undecodable(object.metadata, error),
        },
        Event::Apply(object) => match object.decoded {
            Ok(decoded) => Sorted::Event(Event::Apply(decoded)),
            Err(error) => undecodable(object.metadata, error),
        },
        Event::Delete(object) => Sorted::Event(Event::Delete(match object.decoded {
            Ok(decoded) => decoded,
            Err(_) => {
                let mut deleted = K::default();
                *deleted.meta_mut() = object.metadata;
                deleted
            }
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7",
                "managedFields": [{"manager": "kubectl"}]},
            "spec": spec})
    }

    #[test]
    fn bad_objects_keep_their_identity_and_say_where_they_fail() {
        let cases = [
            (
                service(json!({"ports": "80"})),
                "spec.ports",
                "invalid type: string \"80\", expected a sequence",
            ),
            (
                service(json!({"ports": [{"port": 80}, {"port": "abc"}]})),
                "spec.ports[1].port",
                "invalid type: string \"abc\", expected i32",
            ),
            (
                service(json!({"clusterIP": 10})),
                "spec.clusterIP",
                "invalid type: integer `10`, expected a string",
            ),
            (
                json!({"metadata": {"name": "web", "namespace": "default",
                    "resourceVersion": "7", "labels": ["x"]}}),
                "metadata.labels",
                "invalid type: sequence, expected a map",
            ),
        ];
        for (value, field, message) in cases {
            let lenient = Lenient::<Service>::from_value(value.clone());
            assert_eq!(
                lenient.decoded.as_ref().map(|_| ()),
                Err(&DecodeError {
                    field: field.into(),
                    message: message.into()
                }),
                "{value}"
            );
            assert_eq!(lenient.metadata.name.as_deref(), Some("web"));
            assert_eq!(lenient.metadata.namespace.as_deref(), Some("default"));
            assert_eq!(lenient.metadata.resource_version.as_deref(), Some("7"));
        }
    }

    #[test]
    fn good_objects_decode_as_their_type_without_managed_fields() {
        let lenient = Lenient::<Service>::from_value(service(json!({"ports": [{"port": 80}]})));
        let service = lenient.decoded.expect("decodes");
        assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
        assert_eq!(service.metadata.managed_fields, None);
        assert_eq!(service.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn a_list_with_one_bad_item_decodes_with_the_others() {
        let list = json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {"resourceVersion": "9"},
            "items": [service(json!({"ports": [{"port": 80}]})),
                      service(json!({"ports": [{"port": "abc"}]})),
                      42]});
        let typed: Result<kube::core::ObjectList<Service>, _> =
            serde_json::from_value(list.clone());
        assert!(typed.is_err(), "the typed list fails as a whole");
        let lenient: kube::core::ObjectList<Lenient<Service>> =
            serde_json::from_value(list).expect("the lenient list decodes");
        let decoded: Vec<bool> = lenient.items.iter().map(|i| i.decoded.is_ok()).collect();
        assert_eq!(decoded, [true, false, false]);
        assert_eq!(lenient.items[2].metadata.name, None);
        assert_eq!(
            lenient.items[2].decoded.as_ref().map(|_| ()),
            Err(&DecodeError {
                field: ".".into(),
                message: "invalid type: integer `42`, expected Service".into()
            })
        );
    }

    #[test]
    fn the_resource_is_the_typed_ones() {
        assert_eq!(Lenient::<Service>::kind(&()), "Service");
        assert_eq!(
            Lenient::<EndpointSlice>::api_version(&()),
            "discovery.k8s.io/v1"
        );
        assert_eq!(
            Lenient::<EndpointSlice>::url_path(&(), Some("default")),
            EndpointSlice::url_path(&(), Some("default"))
        );
        assert_eq!(Lenient::<Service>::url_path(&(), None), "/api/v1/services");
    }

    #[test]
    fn events_are_sorted_and_a_bad_deletion_still_deletes() {
        let good = || Lenient::<Service>::from_value(service(json!({"ports": [{"port": 80}]})));
        let bad = || Lenient::<Service>::from_value(service(json!({"ports": "80"})));
        let name = |sorted: &Sorted<Service>| match sorted {
            Sorted::Event(Event::InitApply(s) | Event::Apply(s) | Event::Delete(s)) => {
                format!("event {}", s.metadata.name.as_deref().unwrap_or(""))
            }
            Sorted::Event(Event::Init) => "init".into(),
            Sorted::Event(Event::InitDone) => "init done".into(),
            Sorted::Undecodable(bad) => format!("undecodable {}", bad.object()),
        };
        let cases: Vec<(Event<Lenient<Service>>, &str)> = vec![
            (Event::Init, "init"),
            (Event::InitApply(good()), "event web"),
            (Event::InitApply(bad()), "undecodable default/web"),
            (Event::InitDone, "init done"),
            (Event::Apply(good()), "event web"),
            (Event::Apply(bad()), "undecodable default/web"),
            (Event::Delete(bad()), "event web"),
        ];
        for (event, expected) in cases {
            assert_eq!(name(&sort_event(event)), expected);
        }
        let Sorted::Undecodable(report) = sort_event(Event::Apply(bad())) else {
            panic!("a bad object");
        };
        assert_eq!(
            report.to_string(),
            "Service default/web does not decode: spec.ports: invalid type: string \"80\", \
             expected a sequence; its last good version is kept (a new object is skipped)"
        );
        let Sorted::Event(Event::Delete(deleted)) = sort_event(Event::Delete(bad())) else {
            panic!("a deletion");
        };
        assert_eq!(deleted.metadata.namespace.as_deref(), Some("default"));
    }
}
