//! Which objects a list or watch gets: the `fieldSelector`
//! (`metadata.name`, `metadata.namespace`) and `labelSelector` (`k=v`,
//! `k!=v`, `k`, `!k`) filters, and lists in pages of `limit` objects with
//! `continue` tokens.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::resource::{object_name, object_namespace, Key, Target};
use crate::store::Store;

/// Whether `object` passes the list/watch filters.
pub(crate) fn matches(
    object: &Value,
    namespace: Option<&str>,
    query: &HashMap<String, String>,
) -> bool {
    if let Some(namespace) = namespace {
        if object_namespace(object) != namespace {
            return false;
        }
    }
    if let Some(selector) = query.get("fieldSelector").filter(|s| !s.is_empty()) {
        if !fields_match(object, selector) {
            return false;
        }
    }
    if let Some(selector) = query.get("labelSelector").filter(|s| !s.is_empty()) {
        if !labels_match(object, selector) {
            return false;
        }
    }
    true
}

/// Whether `object` passes a field selector (terms on fields other than
/// the name and namespace are ignored).
fn fields_match(object: &Value, selector: &str) -> bool {
    for term in selector.split(',') {
        let (field, wanted, equal) = match term.split_once("!=") {
            Some((field, value)) => (field, value, false),
            None => match term.split_once("==").or_else(|| term.split_once('=')) {
                Some((field, value)) => (field, value, true),
                None => continue,
            },
        };
        let actual = match field {
            "metadata.name" => object_name(object),
            "metadata.namespace" => object_namespace(object),
            _ => continue,
        };
        if (actual == wanted) != equal {
            return false;
        }
    }
    true
}

/// Whether `object` passes a label selector.
fn labels_match(object: &Value, selector: &str) -> bool {
    let labels = &object["metadata"]["labels"];
    for term in selector.split(',') {
        let term = term.trim();
        let ok = if let Some((key, value)) = term.split_once("!=") {
            labels[key].as_str() != Some(value)
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[key].as_str() == Some(value)
        } else if let Some(key) = term.strip_prefix('!') {
            labels.get(key).is_none()
        } else {
            labels.get(term).is_some()
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The `continue` token of a page that ended at `key`: the namespace and
/// name to go on after (a real API server's token is opaque too).
fn continue_token(key: &Key) -> String {
    format!("{}/{}", key.1, key.2)
}

/// The list (one page of it, with `limit`) of the objects `target`
/// addresses that pass the filters, after the `continue` token's.
pub(crate) fn list(store: &Store, target: &Target, query: &HashMap<String, String>) -> Value {
    let limit = query
        .get("limit")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|limit| *limit > 0)
        .unwrap_or(usize::MAX);
    // Namespaces hold no `/`: the token splits back into the key.
    let after: Option<(&str, &str)> = query
        .get("continue")
        .and_then(|token| token.split_once('/'));
    let mut matching = store
        .objects()
        .iter()
        .filter(|((resource, _, _), _)| *resource == target.resource)
        .filter(|(key, _)| after.is_none_or(|after| (key.1.as_str(), key.2.as_str()) > after))
        .filter(|(_, object)| matches(object, target.namespace.as_deref(), query));
    let page: Vec<(&Key, &Value)> = matching.by_ref().take(limit).collect();
    let remaining = matching.count();
    let mut metadata = json!({"resourceVersion": store.revision().to_string()});
    if remaining > 0 {
        if let Some((last, _)) = page.last() {
            metadata["continue"] = json!(continue_token(last));
            metadata["remainingItemCount"] = json!(remaining);
        }
    }
    let items: Vec<&Value> = page.into_iter().map(|(_, object)| object).collect();
    json!({
        "kind": format!("{}List", target.resource.kind()),
        "apiVersion": target.resource.api_version(),
        "metadata": metadata,
        "items": items,
    })
}
