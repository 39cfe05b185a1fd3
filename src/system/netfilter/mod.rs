//! The agent's nftables tables: the netfilter rules kube-proxy's IPVS
//! mode puts around IPVS (masquerade, hairpin, the VIP filter, source
//! ranges), one table per family (`ip ipvs-agent`, `ip6 ipvs-agent`),
//! fixed rules over sets whose elements are the Services'.
//!
//! - [`script`]: the rules and element changes as nft scripts (pure).
//! - [`read`]: the tables read back over nfnetlink (blocking).
//! - [`mod@write`]: element changes as nfnetlink batches, without an
//!   `nft` process: a small change as one, a first sync's bulk as many
//!   ([`write::parts`]).
//! - [`apply`] sends one transaction: as a batch when [`mod@write`] can
//!   carry it, else as one script (`nft -f -`); [`read_tables`] reads
//!   both families' tables.
//!
//! Why `nft` for writing: it is what kube-proxy's own nftables mode
//! drives, the kernel's transaction semantics come with it (a whole
//! script commits or nothing does), and its text is what an operator
//! reads with `nft list table ip ipvs-agent`. Its listing is too slow at
//! scale (see [`read`]), so reading goes straight to the kernel. Nothing
//! outside the agent's tables is ever read or written.

pub mod read;
pub mod script;
pub mod write;

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::process::{Command, Stdio};

use crate::model::netfilter::NetfilterFamily;
use crate::model::settings::DatapathSettings;
use script::Transaction;

pub use read::KernelTable;

/// A failure to read or change the agent's tables.
#[derive(Debug, thiserror::Error)]
pub enum NetfilterError {
    /// The nfnetlink socket failed.
    #[error("{what}: {error}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The socket's error.
        error: io::Error,
    },
    /// The kernel refused a read.
    #[error("{what}: the kernel refused it (errno {errno})")]
    Refused {
        /// What was asked.
        what: String,
        /// Its errno.
        errno: i32,
    },
    /// A reply that is not what nf_tables sends.
    #[error("decoding nf_tables replies: {0}")]
    Decode(String),
    /// `nft` could not be started.
    #[error("running nft: {0} (the agent needs the nftables package's nft binary)")]
    NftMissing(io::Error),
    /// `nft -f` refused the transaction (nothing of it was applied).
    #[error("nft -f refused the transaction ({status}): {stderr}")]
    Nft {
        /// Its exit status.
        status: String,
        /// What it printed (the first lines).
        stderr: String,
    },
    /// A blocking task did not finish.
    #[error("netfilter task: {0}")]
    Task(String),
}

/// Runs `script` as one nft transaction (`nft -f -`), blocking.
pub fn run_nft_blocking(script: &str) -> Result<(), NetfilterError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetfilterError::NftMissing)?;
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(script.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(NetfilterError::NftMissing)?;
    if output.status.success() {
        if let Some(Err(error)) = written {
            return Err(NetfilterError::NftMissing(error));
        }
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr: Vec<&str> = stderr.lines().take(6).collect();
    Err(NetfilterError::Nft {
        status: output.status.to_string(),
        stderr: stderr.join(" | "),
    })
}

/// Applies `transaction` off the async threads: as one nfnetlink batch
/// when it is small element changes only ([`write::netlink_batch`]),
/// else as one `nft -f` script. Either way all of it or none.
pub async fn apply(
    transaction: Transaction,
    settings: DatapathSettings,
) -> Result<(), NetfilterError> {
    tokio::task::spawn_blocking(move || {
        if write::send_batch_blocking(&transaction)? {
            return Ok(());
        }
        run_nft_blocking(&transaction.script(&settings))
    })
    .await
    .map_err(|error| NetfilterError::Task(error.to_string()))?
}

/// Runs `script` as one nft transaction, off the async threads.
pub async fn run_nft(script: String) -> Result<(), NetfilterError> {
    tokio::task::spawn_blocking(move || run_nft_blocking(&script))
        .await
        .map_err(|error| NetfilterError::Task(error.to_string()))?
}

/// The agent's tables of some families as read (`None`: absent).
pub type KernelTables = BTreeMap<NetfilterFamily, Option<KernelTable>>;

/// Reads the agent's table of each of `families` (with their set
/// elements when `elements`), off the async threads.
pub async fn read_tables(
    families: Vec<NetfilterFamily>,
    elements: bool,
) -> Result<KernelTables, NetfilterError> {
    tokio::task::spawn_blocking(move || {
        let mut reader = read::TableReader::new()?;
        families
            .into_iter()
            .map(|family| Ok((family, reader.read(family, elements)?)))
            .collect()
    })
    .await
    .map_err(|error| NetfilterError::Task(error.to_string()))?
}
