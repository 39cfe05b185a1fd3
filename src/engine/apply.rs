//! The apply layer: sends a plan's operations through the netlink-ipvs
//! batch API and keeps the agent's view of the kernel in step. The only
//! part of the agent that knows errno values.
//!
//! Races with the kernel are handled by level, not by edge:
//!
//! - a delete that finds nothing (`ESRCH` for a virtual server, `ENOENT`
//!   for a real server) already has what it wanted: success;
//! - an add that finds the object there (`EEXIST`), or an edit / add whose
//!   virtual server or real server vanished (`ESRCH`, `ENOENT`), means the
//!   agent's view was wrong: the virtual server is re-read from the kernel
//!   and planned again (a bounded number of rounds);
//! - anything else (an unknown scheduler, `ENOMEM`, a closed socket) is a
//!   failure, reported with the operation that caused it.

use std::collections::BTreeSet;

use netlink_ipvs::{IpvsError, IpvsOperation, IpvsServiceKey};

use super::kernel::Kernel;
use super::report::MessageCounts;
use crate::model::{Table, TableEntry};

/// What one operation's kernel answer means for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel did it.
    Done,
    /// The kernel already had what the operation wanted.
    AlreadyDone,
    /// The agent's view of this virtual server is wrong: re-read it.
    Reread,
    /// A real failure.
    Failed,
}

/// Classifies the kernel's answer to `operation`.
pub fn classify(operation: &IpvsOperation, result: &Result<(), IpvsError>) -> Outcome {
    let Err(error) = result else {
        return Outcome::Done;
    };
    let missing_service = error.is_no_such_service();
    let missing_real_server = error.is_not_found();
    let exists = error.is_already_exists();
    match operation {
        IpvsOperation::DeleteService(_) if missing_service => Outcome::AlreadyDone,
        IpvsOperation::DeleteDestination(..) if missing_service || missing_real_server => {
            Outcome::AlreadyDone
        }
        // ENOENT on adding a virtual server is an unknown scheduler or
        // persistence engine: re-reading would not help.
        IpvsOperation::AddService(_) if exists => Outcome::Reread,
        IpvsOperation::EditService(_) if missing_service => Outcome::Reread,
        IpvsOperation::AddDestination(..) if exists || missing_service => Outcome::Reread,
        IpvsOperation::EditDestination(..) if missing_service || missing_real_server => {
            Outcome::Reread
        }
        _ => Outcome::Failed,
    }
}

/// The virtual server an operation is about (`None` only for operation
/// kinds a newer netlink-ipvs may add).
pub fn service_key(operation: &IpvsOperation) -> Option<IpvsServiceKey> {
    match operation {
        IpvsOperation::AddService(service) | IpvsOperation::EditService(service) => {
            Some(service.key)
        }
        IpvsOperation::DeleteService(key)
        | IpvsOperation::AddDestination(key, _)
        | IpvsOperation::EditDestination(key, _)
        | IpvsOperation::DeleteDestination(key, _) => Some(*key),
        _ => None,
    }
}

/// Records in `view` the effect of an operation the kernel accepted (or
/// already had).
pub fn record(view: &mut Table, operation: &IpvsOperation) {
    match operation {
        IpvsOperation::AddService(service) => {
            view.entry(service.key).or_insert_with(|| TableEntry {
                service: service.clone(),
                real_servers: Default::default(),
            });
        }
        IpvsOperation::EditService(service) => {
            if let Some(entry) = view.get_mut(&service.key) {
                entry.service = service.clone();
            }
        }
        IpvsOperation::DeleteService(key) => {
            view.remove(key);
        }
        IpvsOperation::AddDestination(key, destination)
        | IpvsOperation::EditDestination(key, destination) => {
            if let Some(entry) = view.get_mut(key) {
                let kept = entry.real_servers.get(&destination.key).map(|existing| {
                    (
                        existing.active_connections,
                        existing.inactive_connections,
                        existing.persistent_connections,
                    )
                });
                let mut recorded = destination.clone();
                if let Some((active, inactive, persistent)) = kept {
                    recorded.active_connections = active;
                    recorded.inactive_connections = inactive;
                    recorded.persistent_connections = persistent;
                }
                entry.real_servers.insert(destination.key, recorded);
            }
        }
        IpvsOperation::DeleteDestination(key, destination) => {
            if let Some(entry) = view.get_mut(key) {
                entry.real_servers.remove(destination);
            }
        }
        _ => {}
    }
}

/// One operation the kernel refused.
#[derive(Debug)]
pub struct FailedOperation {
    /// What was sent.
    pub operation: IpvsOperation,
    /// The kernel's (or the socket's) answer.
    pub error: IpvsError,
}

/// What applying a batch did.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Messages sent, by kind.
    pub sent: MessageCounts,
    /// Real failures.
    pub failed: Vec<FailedOperation>,
    /// Virtual servers whose view must be re-read.
    pub reread: BTreeSet<IpvsServiceKey>,
}

/// Sends `operations` in one pipelined batch, records what the kernel
/// accepted in `view`, and says what failed and what must be re-read.
pub async fn apply_batch(
    kernel: &mut impl Kernel,
    operations: Vec<IpvsOperation>,
    view: &mut Table,
) -> BatchReport {
    let mut report = BatchReport::default();
    if operations.is_empty() {
        return report;
    }
    let results = kernel.apply(&operations).await;
    // Virtual servers whose add the kernel refused in this batch: their
    // real servers' "no such service" follows from it, it is no
    // disagreement with the view (re-reading would send the refused add
    // again at once, and again after each re-read).
    let mut refused_adds: BTreeSet<IpvsServiceKey> = BTreeSet::new();
    for (operation, result) in operations.into_iter().zip(results) {
        report.sent.count(&operation);
        match classify(&operation, &result) {
            Outcome::Done | Outcome::AlreadyDone => record(view, &operation),
            Outcome::Reread if matches!(&operation, IpvsOperation::AddDestination(key, _) if refused_adds.contains(key)) =>
                {}
            Outcome::Reread => report.reread.extend(service_key(&operation)),
            Outcome::Failed => {
                if let IpvsOperation::AddService(service) = &operation {
                    refused_adds.insert(service.key);
                }
                if let Err(error) = result {
                    report.failed.push(FailedOperation { operation, error });
                }
            }
        }
    }
    report
}

/// Re-reads the virtual servers `keys` from the kernel into `view` (a
/// missing one is removed from it).
pub async fn reread(
    kernel: &mut impl Kernel,
    keys: &BTreeSet<IpvsServiceKey>,
    view: &mut Table,
) -> Result<(), IpvsError> {
    for key in keys {
        match kernel.read_virtual_server(key).await? {
            Some(entry) => {
                view.insert(*key, entry);
            }
            None => {
                view.remove(key);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_ipvs::{IpvsDestination, IpvsForwardingMethod, IpvsService};
    use std::io;

    use crate::system::errno::{EEXIST, ENOENT, ENOMEM, ESRCH};

    fn kernel_error(errno: i32) -> Result<(), IpvsError> {
        Err(IpvsError::Kernel {
            request: "test".to_owned(),
            errno,
            source: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn kernel_answers_are_classified_by_operation() {
        let key = IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80);
        let service = IpvsService::new(key, "rr");
        let real = IpvsDestination::new(
            "10.244.0.11".parse().unwrap(),
            8080,
            IpvsForwardingMethod::Masquerade,
            1,
        );
        let add_service = IpvsOperation::AddService(service.clone());
        let edit_service = IpvsOperation::EditService(service);
        let delete_service = IpvsOperation::DeleteService(key);
        let add_real = IpvsOperation::AddDestination(key, real.clone());
        let edit_real = IpvsOperation::EditDestination(key, real.clone());
        let delete_real = IpvsOperation::DeleteDestination(key, real.key);
        let cases = [
            (&add_service, Ok(()), Outcome::Done),
            (&add_service, kernel_error(EEXIST), Outcome::Reread),
            (&add_service, kernel_error(ENOENT), Outcome::Failed),
            (&edit_service, kernel_error(ESRCH), Outcome::Reread),
            (&delete_service, kernel_error(ESRCH), Outcome::AlreadyDone),
            (&delete_service, kernel_error(ENOMEM), Outcome::Failed),
            (&add_real, kernel_error(EEXIST), Outcome::Reread),
            (&add_real, kernel_error(ESRCH), Outcome::Reread),
            (&edit_real, kernel_error(ENOENT), Outcome::Reread),
            (&edit_real, kernel_error(ESRCH), Outcome::Reread),
            (&delete_real, kernel_error(ENOENT), Outcome::AlreadyDone),
            (&delete_real, kernel_error(ESRCH), Outcome::AlreadyDone),
            (
                &delete_real,
                Err(IpvsError::ConnectionClosed),
                Outcome::Failed,
            ),
        ];
        for (operation, result, expected) in cases {
            assert_eq!(
                classify(operation, &result),
                expected,
                "{operation} answered {result:?}"
            );
        }
    }

    #[test]
    fn accepted_operations_are_recorded_in_the_view() {
        let key = IpvsServiceKey::tcp("10.96.0.10".parse().unwrap(), 80);
        let mut view = Table::new();
        let mut service = IpvsService::new(key, "rr");
        record(&mut view, &IpvsOperation::AddService(service.clone()));
        let mut real = IpvsDestination::new(
            "10.244.0.11".parse().unwrap(),
            8080,
            IpvsForwardingMethod::Masquerade,
            1,
        );
        record(&mut view, &IpvsOperation::AddDestination(key, real.clone()));
        assert_eq!(view[&key].real_servers[&real.key].weight, 1);

        view.get_mut(&key)
            .unwrap()
            .real_servers
            .get_mut(&real.key)
            .unwrap()
            .active_connections = 3;
        real.weight = 0;
        record(
            &mut view,
            &IpvsOperation::EditDestination(key, real.clone()),
        );
        let recorded = &view[&key].real_servers[&real.key];
        assert_eq!(
            (recorded.weight, recorded.active_connections),
            (0, 3),
            "an edit keeps the connection counts the agent last read"
        );

        service.scheduler = "wrr".to_owned();
        record(&mut view, &IpvsOperation::EditService(service));
        assert_eq!(view[&key].service.scheduler, "wrr");

        record(&mut view, &IpvsOperation::DeleteDestination(key, real.key));
        assert!(view[&key].real_servers.is_empty());
        record(&mut view, &IpvsOperation::DeleteService(key));
        assert!(view.is_empty());
    }
}
