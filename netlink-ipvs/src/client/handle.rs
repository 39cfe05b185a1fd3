// SPDX-License-Identifier: MIT

//! The async IPVS client: one netlink socket driven by a netlink-proto
//! connection task, and a cheap, clonable handle to send requests on it.
//! The handle's batches go over the batch socket (`batch.rs`), its table
//! reads over blocking sockets of their own (`read.rs`).

use std::sync::Arc;

use futures::StreamExt;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_generic::GenlMessage;
use netlink_proto::{sys::SocketAddr, ConnectionHandle};
use netlink_sys::{protocols::NETLINK_GENERIC, AsyncSocket};
use tokio::sync::Mutex;

use super::batch::{socket_error, BatchSocket, IpvsBatchOptions};
use super::decode::{keep_first_of_each, parse_destinations, parse_services, IpvsTableEntry};
use super::error::IpvsError;
use super::family::resolve_family_id;
use super::operation::IpvsOperation;
use super::read::{read_table, TABLE_READERS};
use super::wire::RECEIVE_BUFFER_BYTES;
use crate::attribute::IpvsAttribute;
use crate::command::IpvsCommand;
use crate::config::IpvsTimeouts;
use crate::daemon::{IpvsDaemon, IpvsDaemonAttribute, IpvsDaemonState};
use crate::dest::{IpvsDestination, IpvsDestinationKey};
use crate::info::IpvsInfo;
use crate::message::{IpvsMessage, IPVS_GENL_NAME};
use crate::service::{IpvsService, IpvsServiceKey};
use crate::stats::IpvsCounters;

/// The connection task: spawn it on the runtime (`tokio::spawn(connection)`)
/// before using the handle.
pub type IpvsConnection = netlink_proto::Connection<GenlMessage<IpvsMessage>>;

/// A handle to the IPVS table of the socket's network namespace.
///
/// Clones share one socket. Requests may be sent concurrently: netlink-proto
/// numbers them and routes each reply to its request. Dumps are serialised,
/// as the kernel runs one dump at a time per socket (`EBUSY` otherwise).
#[derive(Debug, Clone)]
pub struct IpvsHandle {
    connection: ConnectionHandle<GenlMessage<IpvsMessage>>,
    family_id: u16,
    dump_lock: Arc<Mutex<()>>,
    batch: Arc<Mutex<Option<BatchSocket>>>,
}

/// Opens a netlink socket for IPVS: resolves the `IPVS` family once (which
/// loads `ip_vs` where the kernel can), and returns the connection task to
/// spawn and a handle.
///
/// ```no_run
/// # async fn example() -> Result<(), netlink_ipvs::IpvsError> {
/// let (connection, handle) = netlink_ipvs::new_connection()?;
/// tokio::spawn(connection);
/// for service in handle.services().await? {
///     println!("{}", service.key);
/// }
/// # Ok(())
/// # }
/// ```
pub fn new_connection() -> Result<(IpvsConnection, IpvsHandle), IpvsError> {
    let family_id = resolve_family_id(IPVS_GENL_NAME)?;
    let (mut connection, handle, _unsolicited) =
        netlink_proto::new_connection(NETLINK_GENERIC).map_err(IpvsError::Socket)?;
    // Every request waits for its explicit answer (ACK, error or DONE): a
    // stream that ends without one means the connection died.
    connection.set_forward_ack(true);
    connection.set_forward_done(true);
    let socket = connection.socket_mut().socket_mut();
    // Best effort: a smaller buffer only lowers the useful in-flight bound.
    let _ = socket.set_rx_buf_sz(RECEIVE_BUFFER_BYTES);
    // Error replies carry only the request's header, not the whole request.
    socket.set_cap_ack(true).map_err(IpvsError::Socket)?;
    Ok((
        connection,
        IpvsHandle {
            connection: handle,
            family_id,
            dump_lock: Arc::new(Mutex::new(())),
            batch: Arc::new(Mutex::new(None)),
        },
    ))
}

/// How a request's replies end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyMode {
    /// A do-request with `NLM_F_ACK`: replies (if any), then the ACK.
    Acknowledged,
    /// A dump: replies, then `NLMSG_DONE`.
    Dump,
}

impl IpvsHandle {
    /// The resolved generic netlink family id of `IPVS`.
    pub fn family_id(&self) -> u16 {
        self.family_id
    }

    pub(crate) fn netlink_message(
        &self,
        message: IpvsMessage,
        flags: u16,
    ) -> NetlinkMessage<GenlMessage<IpvsMessage>> {
        let mut genl = GenlMessage::from_payload(message);
        genl.set_resolved_family_id(self.family_id);
        let mut netlink = NetlinkMessage::from(genl);
        netlink.header.flags = flags;
        netlink
    }

    async fn request(
        &self,
        message: IpvsMessage,
        mode: ReplyMode,
        describe: impl FnOnce() -> String,
    ) -> Result<Vec<IpvsMessage>, IpvsError> {
        let flags = match mode {
            ReplyMode::Acknowledged => NLM_F_REQUEST | NLM_F_ACK,
            ReplyMode::Dump => NLM_F_REQUEST | NLM_F_DUMP,
        };
        let _dump_guard = match mode {
            ReplyMode::Dump => Some(self.dump_lock.lock().await),
            ReplyMode::Acknowledged => None,
        };
        let mut replies = self
            .connection
            .request(self.netlink_message(message, flags), SocketAddr::new(0, 0))
            .map_err(|_| IpvsError::ConnectionClosed)?;
        let mut messages = Vec::new();
        while let Some(reply) = replies.next().await {
            match reply.payload {
                NetlinkPayload::InnerMessage(genl) => messages.push(genl.payload),
                NetlinkPayload::Error(error) => {
                    return match error.code {
                        Some(code) => Err(IpvsError::kernel(describe(), code.get())),
                        None => Ok(messages),
                    }
                }
                NetlinkPayload::Done(_) => return Ok(messages),
                NetlinkPayload::Overrun(_) => {
                    return Err(IpvsError::UnexpectedReply {
                        request: describe(),
                        detail: "the socket's receive buffer overran (ENOBUFS)".into(),
                    })
                }
                _ => {}
            }
        }
        // A stream that ends without ACK, error or DONE: the connection died.
        Err(IpvsError::ConnectionClosed)
    }

    async fn execute(&self, operation: &IpvsOperation) -> Result<(), IpvsError> {
        self.request(operation.to_message(), ReplyMode::Acknowledged, || {
            operation.to_string()
        })
        .await
        .map(drop)
    }

    /// Adds a virtual service, like `ipvsadm -A -t addr:port -s sched`.
    pub async fn add_service(&self, service: &IpvsService) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::AddService(service.clone()))
            .await
    }

    /// Edits a virtual service in place (scheduler, flags, timeout,
    /// netmask, persistence engine), like `ipvsadm -E`.
    pub async fn edit_service(&self, service: &IpvsService) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::EditService(service.clone()))
            .await
    }

    /// Deletes a virtual service and its real servers, like `ipvsadm -D`.
    pub async fn delete_service(&self, key: &IpvsServiceKey) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::DeleteService(*key)).await
    }

    /// Adds a real server, like `ipvsadm -a -t vip:port -r rip:port -m -w 1`.
    pub async fn add_destination(
        &self,
        service: &IpvsServiceKey,
        destination: &IpvsDestination,
    ) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::AddDestination(
            *service,
            destination.clone(),
        ))
        .await
    }

    /// Replaces a real server's settings, like `ipvsadm -e`.
    pub async fn edit_destination(
        &self,
        service: &IpvsServiceKey,
        destination: &IpvsDestination,
    ) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::EditDestination(
            *service,
            destination.clone(),
        ))
        .await
    }

    /// Deletes a real server, like `ipvsadm -d -t vip:port -r rip:port`.
    pub async fn delete_destination(
        &self,
        service: &IpvsServiceKey,
        destination: &IpvsDestinationKey,
    ) -> Result<(), IpvsError> {
        self.execute(&IpvsOperation::DeleteDestination(*service, *destination))
            .await
    }

    /// Reads one service, like `ipvsadm -Ln -t addr:port` (`ESRCH` when it
    /// does not exist).
    pub async fn service(&self, key: &IpvsServiceKey) -> Result<IpvsService, IpvsError> {
        let describe = || format!("get service {key}");
        let request = IpvsMessage::new(
            IpvsCommand::GetService,
            vec![IpvsAttribute::Service(key.to_attributes())],
        );
        let replies = self
            .request(request, ReplyMode::Acknowledged, describe)
            .await?;
        let mut services = parse_services(replies, describe)?;
        services.pop().ok_or_else(|| IpvsError::UnexpectedReply {
            request: describe(),
            detail: "no service in the reply".into(),
        })
    }

    /// Dumps every service, in the kernel's (hash) order, without
    /// duplicates.
    pub async fn services(&self) -> Result<Vec<IpvsService>, IpvsError> {
        let describe = || "list services".to_string();
        let request = IpvsMessage::new(IpvsCommand::GetService, vec![]);
        let replies = self.request(request, ReplyMode::Dump, describe).await?;
        let mut services = parse_services(replies, describe)?;
        keep_first_of_each(&mut services, |service| service.key);
        Ok(services)
    }

    /// Dumps the real servers of a service. A missing service gives an
    /// empty list (the kernel does not tell it apart in a dump).
    pub async fn destinations(
        &self,
        key: &IpvsServiceKey,
    ) -> Result<Vec<IpvsDestination>, IpvsError> {
        let describe = || format!("list real servers of {key}");
        let request = IpvsMessage::new(
            IpvsCommand::GetDest,
            vec![IpvsAttribute::Service(key.to_attributes())],
        );
        let replies = self.request(request, ReplyMode::Dump, describe).await?;
        parse_destinations(replies, key.family(), describe)
    }

    /// Reads every service with its real servers (what `ipvsadm -Ln`
    /// shows), in the kernel's order.
    ///
    /// Not over this handle's socket: the dumps run on
    /// [`TABLE_READERS`](super::read::TABLE_READERS) blocking sockets of
    /// their own, on blocking threads, back to back (see `read.rs` for
    /// why: the async path cost five times the kernel's own work).
    pub async fn table(&self) -> Result<Vec<IpvsTableEntry>, IpvsError> {
        self.table_with(IpvsCounters::Keep, |entry| entry).await
    }

    /// [`IpvsHandle::table`], with or without the `counters`, each entry
    /// turned by `convert` on the reader thread as soon as it is read (a
    /// caller that keeps the table in another shape never holds the whole
    /// dump beside it).
    pub async fn table_with<T, F>(
        &self,
        counters: IpvsCounters,
        convert: F,
    ) -> Result<Vec<T>, IpvsError>
    where
        T: Send + 'static,
        F: Fn(IpvsTableEntry) -> T + Send + Sync + 'static,
    {
        let family_id = self.family_id;
        tokio::task::spawn_blocking(move || read_table(family_id, TABLE_READERS, counters, convert))
            .await
            .map_err(|error| IpvsError::UnexpectedReply {
                request: "read the table".into(),
                detail: format!("the reading task failed: {error}"),
            })?
    }

    /// Reads the connection timeouts, like `ipvsadm -L --timeout`.
    pub async fn timeouts(&self) -> Result<IpvsTimeouts, IpvsError> {
        let request = IpvsMessage::new(IpvsCommand::GetConfig, vec![]);
        let replies = self
            .request(request, ReplyMode::Acknowledged, || "get timeouts".into())
            .await?;
        let attributes: Vec<IpvsAttribute> =
            replies.into_iter().flat_map(|m| m.attributes).collect();
        Ok(IpvsTimeouts::from_attributes(&attributes))
    }

    /// Sets the connection timeouts, like `ipvsadm --set tcp tcpfin udp`
    /// (0 leaves a value unchanged).
    pub async fn set_timeouts(&self, timeouts: &IpvsTimeouts) -> Result<(), IpvsError> {
        let request = IpvsMessage::new(IpvsCommand::SetConfig, timeouts.to_attributes());
        self.request(request, ReplyMode::Acknowledged, || {
            format!(
                "set timeouts tcp {} tcpfin {} udp {}",
                timeouts.tcp, timeouts.tcp_fin, timeouts.udp
            )
        })
        .await
        .map(drop)
    }

    /// Reads the IPVS version and connection table size.
    pub async fn info(&self) -> Result<IpvsInfo, IpvsError> {
        let describe = || "get IPVS info".to_string();
        let request = IpvsMessage::new(IpvsCommand::GetInfo, vec![]);
        let replies = self
            .request(request, ReplyMode::Acknowledged, describe)
            .await?;
        let attributes: Vec<IpvsAttribute> =
            replies.into_iter().flat_map(|m| m.attributes).collect();
        IpvsInfo::from_attributes(&attributes).map_err(|source| IpvsError::Decode {
            request: describe(),
            source,
        })
    }

    /// Zeroes the counters of one service (`ipvsadm -Z -t addr:port`), or of
    /// every service with `None` (`ipvsadm -Z`).
    pub async fn zero(&self, service: Option<&IpvsServiceKey>) -> Result<(), IpvsError> {
        let attributes = service
            .map(|key| vec![IpvsAttribute::Service(key.to_attributes())])
            .unwrap_or_default();
        let request = IpvsMessage::new(IpvsCommand::Zero, attributes);
        self.request(request, ReplyMode::Acknowledged, || match service {
            Some(key) => format!("zero counters of {key}"),
            None => "zero all counters".into(),
        })
        .await
        .map(drop)
    }

    /// Deletes every service, like `ipvsadm -C`. The agent never calls this
    /// on a table it does not wholly own.
    pub async fn flush(&self) -> Result<(), IpvsError> {
        let request = IpvsMessage::new(IpvsCommand::Flush, vec![]);
        self.request(request, ReplyMode::Acknowledged, || {
            "flush all services".into()
        })
        .await
        .map(drop)
    }

    /// Lists the running sync daemons, like `ipvsadm -L --daemon`.
    pub async fn daemons(&self) -> Result<Vec<IpvsDaemon>, IpvsError> {
        let describe = || "list sync daemons".to_string();
        let request = IpvsMessage::new(IpvsCommand::GetDaemon, vec![]);
        let replies = self.request(request, ReplyMode::Dump, describe).await?;
        let mut daemons = Vec::new();
        for reply in replies {
            for attribute in reply.attributes {
                if let IpvsAttribute::Daemon(nlas) = attribute {
                    daemons.push(IpvsDaemon::from_attributes(&nlas).map_err(|source| {
                        IpvsError::Decode {
                            request: describe(),
                            source,
                        }
                    })?);
                }
            }
        }
        Ok(daemons)
    }

    /// Starts a sync daemon, like `ipvsadm --start-daemon master
    /// --mcast-interface eth0 --syncid 1`.
    pub async fn start_daemon(&self, daemon: &IpvsDaemon) -> Result<(), IpvsError> {
        let request = IpvsMessage::new(
            IpvsCommand::NewDaemon,
            vec![IpvsAttribute::Daemon(daemon.to_attributes())],
        );
        self.request(request, ReplyMode::Acknowledged, || {
            format!(
                "start sync daemon {:?} on {}",
                daemon.state, daemon.interface
            )
        })
        .await
        .map(drop)
    }

    /// Stops a sync daemon, like `ipvsadm --stop-daemon master`.
    pub async fn stop_daemon(&self, state: IpvsDaemonState) -> Result<(), IpvsError> {
        let request = IpvsMessage::new(
            IpvsCommand::DelDaemon,
            vec![IpvsAttribute::Daemon(vec![IpvsDaemonAttribute::State(
                state.into(),
            )])],
        );
        self.request(request, ReplyMode::Acknowledged, || {
            format!("stop sync daemon {state:?}")
        })
        .await
        .map(drop)
    }

    /// Applies `operations` with the default pacing; see
    /// [`IpvsHandle::apply_with`].
    pub async fn apply(&self, operations: &[IpvsOperation]) -> Vec<Result<(), IpvsError>> {
        self.apply_with(operations, IpvsBatchOptions::default())
            .await
    }

    /// Applies `operations` in order, pipelined, and returns one result per
    /// operation, in the same order. A failed operation does not stop the
    /// ones after it (the kernel goes on too), so callers can treat
    /// `EEXIST` / `ESRCH` / `ENOENT` per operation.
    ///
    /// Operations that depend on each other (a service, then its real
    /// servers) may share a batch: the kernel runs them in order. Batches
    /// on one handle (and its clones) run one at a time.
    pub async fn apply_with(
        &self,
        operations: &[IpvsOperation],
        options: IpvsBatchOptions,
    ) -> Vec<Result<(), IpvsError>> {
        let mut batch = self.batch.lock().await;
        if batch.is_none() {
            match BatchSocket::open() {
                Ok(socket) => *batch = Some(socket),
                Err(error) => {
                    return operations
                        .iter()
                        .map(|operation| Err(socket_error(operation, &error)))
                        .collect()
                }
            }
        }
        match batch.as_mut() {
            Some(socket) => socket.apply(self.family_id(), operations, options).await,
            None => unreachable!("the batch socket was opened above"),
        }
    }
}
