//! The kube-runtime watchers (Services and EndpointSlices in every
//! namespace, the agent's own Node), each with the default backoff,
//! watching [`Lenient`] objects (managedFields stripped) so that one
//! object that does not decode is reported and the others flow, sending
//! every event stamped with its time of receipt; and the probe that
//! notices the API server is back.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::lenient::{sort_event, Lenient, Sorted, Undecodable};
use super::store::{WatchEvent, WatchedKind};
use crate::model::ObjectRef;
use crate::ops::health::Health;
use crate::ops::metrics::record_undecodable;

/// Watches `api` with `config`, sending each event (wrapped by `wrap`;
/// an object that does not decode as [`WatchEvent::Undecodable`] of
/// `watched`, after a warning) to `sender`, and telling `health` when the
/// API server answers or not.
pub fn spawn_watcher<K, F>(
    api: Api<Lenient<K>>,
    config: watcher::Config,
    watched: WatchedKind,
    wrap: F,
    sender: mpsc::Sender<(Instant, WatchEvent)>,
    health: Health,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + Default
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    F: Fn(Event<K>) -> WatchEvent + Send + 'static,
{
    let kind = K::kind(&()).to_string();
    tokio::spawn(async move {
        // kube-runtime's default backoff (client-go's reflector's: 800 ms
        // doubling to 30 s, jittered, reset after 2 quiet minutes), applied
        // here rather than with `.default_backoff()` so that a 410 Expired
        // relists at once (see `wait_before_retry`).
        let mut backoff = watcher::DefaultBackoff::default();
        let mut expired_skipped = false;
        let mut stream = watcher::watcher(api, config).boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    // As `StreamBackoff` does: any answer resets the backoff.
                    backoff.reset();
                    expired_skipped = false;
                    api_answered(&health);
                    let event = match sort_event(event) {
                        Sorted::Event(event) => wrap(event),
                        Sorted::Undecodable(bad) => {
                            report_undecodable(&bad);
                            WatchEvent::Undecodable(
                                watched,
                                ObjectRef::new(
                                    bad.namespace.as_deref().unwrap_or("default"),
                                    bad.name,
                                ),
                            )
                        }
                    };
                    // Stamped on receipt, so time spent queued behind a
                    // sync counts in the event-to-ACK time.
                    if sender.send((Instant::now(), event)).await.is_err() {
                        return;
                    }
                }
                Err(error) => {
                    if health.api_failed() {
                        warn!("the API server is unreachable; the kernel table is kept as it is, health checks are unaffected (ipvs_agent_api_unreachable_seconds)");
                    }
                    warn!(%error, kind, "watch failed; retrying with backoff, the kernel table is left as it is");
                    if wait_before_retry(&error, expired_skipped) {
                        if let Some(delay) = backoff.next() {
                            tokio::time::sleep(delay).await;
                        }
                    } else {
                        expired_skipped = true;
                    }
                }
            }
        }
    });
}

/// Whether to wait out the backoff before the watcher's next attempt
/// after `error`. Not after a 410 Expired on a watch: the API server
/// answered, the resourceVersion is only too old, and the watcher relists
/// next (client-go's reflector relists at once too). Waiting there made
/// the agent take two backoff steps after an outage that compacted the
/// history: one to find the server back, one more to relist. Only one
/// Expired is skipped until the watcher delivers an event again
/// (`expired_skipped`), so a server that keeps answering 410 is still
/// retried with backoff.
fn wait_before_retry(error: &watcher::Error, expired_skipped: bool) -> bool {
    let expired = matches!(error, watcher::Error::WatchError(status) if status.code == 410);
    !expired || expired_skipped
}

/// Logs and counts an object that does not decode (each time it is
/// received: in every list and every event of it).
fn report_undecodable(bad: &Undecodable) {
    warn!(
        kind = bad.kind,
        object = bad.object(),
        field = bad.error.field,
        error = bad.error.message,
        "{bad}"
    );
    record_undecodable(&bad.kind);
}

/// Tells `health` the API server answered, logging the end of an outage.
fn api_answered(health: &Health) {
    if let Some(outage) = health.api_answered() {
        info!(
            outage_seconds = outage.as_secs_f64(),
            "the API server is reachable again"
        );
    }
}

/// While the API server is known to be unreachable (a watcher failed and
/// none has heard from it since), asks it for its version every few
/// seconds, so that health recovers even when no object changes.
pub fn spawn_reachability_probe(client: Client, health: Health) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(3));
        loop {
            every.tick().await;
            if health.api_unreachable() && client.apiserver_version().await.is_ok() {
                api_answered(&health);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_first_expired_watch_relists_without_waiting() {
        let status = |code: u16| {
            let mut status = kube::core::Status::failure("test", "Test");
            status.code = code;
            Box::new(status)
        };
        let expired = watcher::Error::WatchError(status(410));
        let other = watcher::Error::WatchError(status(500));
        let failed = watcher::Error::NoResourceVersion;
        let cases = [
            (&expired, false, false),
            (&expired, true, true),
            (&other, false, true),
            (&other, true, true),
            (&failed, false, true),
        ];
        for (error, skipped, wait) in cases {
            assert_eq!(wait_before_retry(error, skipped), wait, "{error} {skipped}");
        }
    }
}
