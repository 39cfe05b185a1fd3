//! Kubernetes Events on the agent's Node, as kube-proxy records them: one
//! when the agent starts, and warnings when a sync fails or the kernel
//! refuses operations. Published in the background through kube-runtime's
//! event recorder (events.k8s.io/v1; repeated events become a series);
//! a failure to publish is logged and never stops the agent.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use tracing::debug;

use crate::engine::report::SyncReport;

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
        let recorder = self.recorder.clone();
        let node = self.node.clone();
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        tokio::spawn(async move {
            if let Err(error) = recorder.publish(&event, &node).await {
                debug!(%error, reason = event.reason, "publishing an Event on the Node");
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
