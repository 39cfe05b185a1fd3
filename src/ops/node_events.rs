//! Kubernetes Events on the agent's Node, as kube-proxy records them: one
//! when the agent starts, and warnings when a sync fails or the kernel
//! refuses operations; and on a Service whose health-check port cannot
//! be opened. Published in the background through kube-runtime's
//! event recorder (events.k8s.io/v1; repeated events become a series);
//! a failure to publish is logged and never stops the agent.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tracing::debug;

use crate::engine::report::SyncReport;
use crate::model::ObjectRef;

/// Publishes Events about the agent on its Node.
#[derive(Clone)]
pub struct NodeEvents {
    recorder: Recorder,
    node: ObjectReference,
}

impl std::fmt::Debug for NodeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEvents")
            .field("node", &self.node.name)
            .finish_non_exhaustive()
    }
}

impl NodeEvents {
    /// Events for the Node `node_name`, reported by `ipvs-agent` on it.
    pub fn new(client: Client, node_name: &str) -> Self {
        let reporter = Reporter {
            controller: "ipvs-agent".into(),
            instance: Some(node_name.to_owned()),
        };
        // kube-proxy refers to its Node by name, with the name as UID.
        let node = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_owned()),
            uid: Some(node_name.to_owned()),
            ..ObjectReference::default()
        };
        Self {
            recorder: Recorder::new(client, reporter),
            node,
        }
    }

    fn publish(&self, type_: EventType, reason: &str, action: &str, note: String) {
        self.publish_on(self.node.clone(), type_, reason, action, note);
    }

    fn publish_on(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let recorder = self.recorder.clone();
        let node = regarding;
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &node).await {
                debug!(%error, reason = event.reason, "publishing an Event");
            }
        });
    }

    /// The agent started (kube-proxy: `Starting`).
    pub fn starting(&self) {
        self.publish(
            EventType::Normal,
            "Starting",
            "Start",
            format!("Starting ipvs-agent {}.", env!("CARGO_PKG_VERSION")),
        );
    }

    /// A Service's health-check port could not be opened (kube-proxy:
    /// `FailedToStartServiceHealthcheck` on the Service, its name as UID).
    pub fn health_check_failed(&self, service: &ObjectRef, port: u16, error: &str) {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(service.namespace.clone()),
            name: Some(service.name.clone()),
            uid: Some(service.to_string()),
            ..ObjectReference::default()
        };
        let node = self.node.name.as_deref().unwrap_or_default();
        self.publish_on(
            regarding,
            EventType::Warning,
            "FailedToStartServiceHealthcheck",
            "Listen",
            format!(
                "node {node} failed to start healthcheck \"{service}\" on port {port}: {error}"
            ),
        );
    }

    /// A sync could not run.
    pub fn sync_failed(&self, error: &dyn std::fmt::Display) {
        self.publish(
            EventType::Warning,
            "SyncFailed",
            "Sync",
            format!("Programming IPVS failed: {error}"),
        );
    }

    /// A sync ran but the kernel refused some operations (retried by the
    /// next sync).
    pub fn report(&self, report: &SyncReport) {
        if report.failed() == 0 {
            return;
        }
        let errnos: Vec<String> = report
            .errors
            .iter()
            .map(|(errno, count)| format!("errno {errno} x{count}"))
            .collect();
        self.publish(
            EventType::Warning,
            "KernelRefused",
            "Sync",
            format!(
                "The kernel refused {} IPVS operations ({}); the next sync retries.",
                report.failed(),
                errnos.join(", ")
            ),
        );
    }
}
