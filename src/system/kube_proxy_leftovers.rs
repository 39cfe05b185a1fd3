//! Removing what kube-proxy's IPVS mode leaves on a node it no longer runs
//! on: its iptables chains (and the jumps into them from the built-in
//! chains) in iptables and ip6tables, and its ipsets. Only kube-proxy's:
//! kubelet's chains and every other tool's chains, rules and sets stay.
//!
//! [`plan_iptables_cleanup`] and [`plan_set_cleanup`] (pure) decide from
//! `iptables-save` and `ipset list -name` output;
//! [`remove_kube_proxy_leftovers`] runs the reads and, only when something
//! of kube-proxy's is there, `iptables-restore --noflush` and
//! `ipset destroy`. The caller runs it once the agent's own netfilter
//! table carries the traffic (it blocks: wrap it in `spawn_blocking`).
//!
//! # Whose chain is whose
//!
//! The reference is what kube-proxy itself removes with `--cleanup`
//! (`cmd/kube-proxy/app/server_linux.go` `platformCleanup`: the iptables
//! mode's `CleanupLeftovers` and the IPVS mode's, whatever the mode, so an
//! IPVS node that once ran iptables mode is cleaned of both), and what
//! kubelet creates (`pkg/kubelet/kubelet_network_linux.go`).
//!
//! Removed (each only if present), per table:
//!
//! - `nat`: `KUBE-SERVICES`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`,
//!   `KUBE-NODE-PORT`, `KUBE-LOAD-BALANCER` (IPVS mode,
//!   `pkg/proxy/ipvs/proxier.go` `iptablesCleanupChains`);
//!   `KUBE-FIREWALL` (the IPVS mode's load-balancer source-range chain
//!   until it moved to `filter` as `KUBE-PROXY-FIREWALL`; it was in
//!   `iptablesCleanupChains` with `TableNAT` then); `KUBE-NODEPORTS`,
//!   `KUBE-PROXY-CANARY` and every chain named `KUBE-SVC-*`, `KUBE-SVL-*`,
//!   `KUBE-SEP-*`, `KUBE-FW-*`, `KUBE-EXT-*`, `KUBE-XLB-*` (iptables mode,
//!   `pkg/proxy/iptables` `cleanupLeftoversForFamily` and
//!   `isServiceChainName`).
//! - `filter`: `KUBE-FORWARD`, `KUBE-NODE-PORT`, `KUBE-PROXY-FIREWALL`,
//!   `KUBE-SOURCE-RANGES-FIREWALL`, `KUBE-IPVS-FILTER`,
//!   `KUBE-IPVS-OUT-FILTER` (IPVS mode); `KUBE-SERVICES`,
//!   `KUBE-EXTERNAL-SERVICES`, `KUBE-NODEPORTS`, `KUBE-PROXY-CANARY`
//!   (iptables mode).
//! - `mangle`: `KUBE-PROXY-CANARY` (iptables mode, removed there too).
//! - every rule of a built-in chain (`PREROUTING`, `INPUT`, `FORWARD`,
//!   `OUTPUT`, `POSTROUTING`) whose `-j`/`-g` target is one of the chains
//!   removed, deleted by its exact text (`-D CHAIN <rule as saved>`).
//!
//! Kept:
//!
//! - `filter` `KUBE-FIREWALL` and the `INPUT`/`OUTPUT` jumps into it:
//!   kubelet's (the martian-packet rule; kube-proxy's iptables mode keeps
//!   its copy out of `CleanupLeftovers`: `iptablesKubeletJumpChains`).
//! - `nat` `KUBE-MARK-DROP`: kubelet's in older releases; kube-proxy
//!   created it too but never removed it (absent from both
//!   `CleanupLeftovers`).
//! - `KUBE-KUBELET-CANARY` (all tables) and `mangle` `KUBE-IPTABLES-HINT`:
//!   kubelet's.
//! - any other `KUBE-*` chain (kube-router's, a very old release's
//!   `KUBE-FIRE-WALL`): not known to be kube-proxy's, so not touched.
//! - a kube-proxy chain that a rule in a chain NOT removed (and not a
//!   built-in chain) still jumps to, e.g. another tool's chain doing
//!   `-j KUBE-MARK-MASQ`, and then every kube-proxy chain it jumps to:
//!   deleting it would make the whole table's `iptables-restore` fail,
//!   and rewriting other tools' rules is not ours to do. Reported with the
//!   referring chain.
//!
//! `KUBE-MARK-MASQ` and `KUBE-POSTROUTING` were also created by kubelets
//! before the iptables ownership clean-up (KEP-3178, gone in 1.28);
//! kube-proxy removes them anyway and so does this. Such an old kubelet
//! recreates them within a minute; they then only masquerade packets
//! carrying mark `0x4000`, which no rule sets any more.
//!
//! Sets destroyed (if present): the IPVS mode's `ipsetInfo`
//! (`pkg/proxy/ipvs/ipset.go` names, [`KUBE_PROXY_SETS`]) and their IPv6
//! twins, named `KUBE-6-...` and cut to ipset's 31 characters by
//! `NewIPSet` (kube-proxy's own cleanup misses those). A set still matched
//! by a rule that stays is kept, named with that rule's chain; the kernel
//! would refuse anyway ("in use by a kernel component").
//!
//! # iptables-legacy and iptables-nft
//!
//! Debian's `iptables` is a front-end to either backend (`update-
//! alternatives`), and kube-proxy writes with whichever its image picked
//! (its `iptables-wrapper` guesses from kubelet's hint chains), so its
//! rules may be in x_tables (legacy) or nf_tables, even partly in both
//! after a mismatch. Each family is read with `iptables-legacy-save` and
//! `iptables-nft-save` when they exist (and restored with the matching
//! `-restore`); only when neither exists, with plain `iptables-save`
//! (a distribution shipping one backend). The saves run without `-t`, so
//! they list the tables that exist and never create one (`-t nat` would
//! load `iptable_nat` on a legacy node). Missing binaries mean "nothing to
//! remove there" and a note in the report, not an error: an nft-only
//! image has no kube-proxy leftovers it could see anyway. kube-proxy's
//! nftables mode (table `kube-proxy`) is not an IPVS-mode leftover and is
//! not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

/// kube-proxy's IPVS-mode ipsets (IPv4 names), from `ipsetInfo`.
pub const KUBE_PROXY_SETS: [&str; 17] = [
    "KUBE-LOOP-BACK",
    "KUBE-CLUSTER-IP",
    "KUBE-EXTERNAL-IP",
    "KUBE-EXTERNAL-IP-LOCAL",
    "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-FW",
    "KUBE-LOAD-BALANCER-LOCAL",
    "KUBE-LOAD-BALANCER-SOURCE-IP",
    "KUBE-LOAD-BALANCER-SOURCE-CIDR",
    "KUBE-NODE-PORT-TCP",
    "KUBE-NODE-PORT-LOCAL-TCP",
    "KUBE-NODE-PORT-UDP",
    "KUBE-NODE-PORT-LOCAL-UDP",
    "KUBE-NODE-PORT-SCTP-HASH",
    "KUBE-NODE-PORT-LOCAL-SCTP-HASH",
    "KUBE-HEALTH-CHECK-NODE-PORT",
    "KUBE-IPVS-IPS",
];

/// ipset's longest set name (`IPSET_MAXNAMELEN` - 1).
const IPSET_NAME_MAX: usize = 31;

const NAT_CHAINS: [&str; 8] = [
    "KUBE-SERVICES",
    "KUBE-POSTROUTING",
    "KUBE-MARK-MASQ",
    "KUBE-NODE-PORT",
    "KUBE-LOAD-BALANCER",
    "KUBE-FIREWALL",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-CANARY",
];
const NAT_CHAIN_PREFIXES: [&str; 6] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-SEP-",
    "KUBE-FW-",
    "KUBE-EXT-",
    "KUBE-XLB-",
];
const FILTER_CHAINS: [&str; 10] = [
    "KUBE-FORWARD",
    "KUBE-NODE-PORT",
    "KUBE-PROXY-FIREWALL",
    "KUBE-SOURCE-RANGES-FIREWALL",
    "KUBE-IPVS-FILTER",
    "KUBE-IPVS-OUT-FILTER",
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-PROXY-CANARY",
];
const MANGLE_CHAINS: [&str; 1] = ["KUBE-PROXY-CANARY"];

/// Whether `chain` in `table` is one kube-proxy creates and removes with
/// `--cleanup` (see the module documentation for the list and why).
pub fn is_kube_proxy_chain(table: &str, chain: &str) -> bool {
    match table {
        "nat" => {
            NAT_CHAINS.contains(&chain) || NAT_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
        }
        "filter" => FILTER_CHAINS.contains(&chain),
        "mangle" => MANGLE_CHAINS.contains(&chain),
        _ => false,
    }
}

/// Whether `name` is one of kube-proxy's IPVS-mode sets, IPv4 or IPv6.
pub fn is_kube_proxy_set(name: &str) -> bool {
    KUBE_PROXY_SETS
        .iter()
        .any(|set| *set == name || ipv6_set_name(set) == name)
}

/// The name kube-proxy gives the IPv6 twin of `set` (`NewIPSet`).
fn ipv6_set_name(set: &str) -> String {
    let mut name = set.replacen("KUBE-", "KUBE-6-", 1);
    name.truncate(IPSET_NAME_MAX);
    name
}

/// `iptables-save` output that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SaveParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// One chain of a saved table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedChain {
    /// Its name.
    pub name: String,
    /// A built-in chain (it has a policy; user chains show `-`).
    pub builtin: bool,
}

/// One rule of a saved table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRule {
    /// The chain it is in.
    pub chain: String,
    /// The rule after `-A CHAIN `, exactly as saved (quotes kept).
    pub spec: String,
    /// Its `-j`/`-g` target, if any.
    pub target: Option<String>,
    /// The sets it matches (`--match-set NAME`).
    pub sets: Vec<String>,
}

/// One table of `iptables-save` output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedTable {
    /// `nat`, `filter`, `mangle`, ...
    pub name: String,
    /// Its chains, in saved order.
    pub chains: Vec<SavedChain>,
    /// Its rules, in saved order.
    pub rules: Vec<SavedRule>,
}

/// Splits a saved rule into words the way `iptables-restore` does:
/// double quotes group, a backslash escapes the next character.
fn words(spec: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next().ok_or("a backslash ends the line")?;
                word.push(next);
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err("an unclosed double quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn parse_rule(chain: &str, spec: &str) -> Result<SavedRule, String> {
    let words = words(spec)?;
    let mut target = None;
    let mut sets = Vec::new();
    for pair in words.windows(2) {
        match pair[0].as_str() {
            "-j" | "--jump" | "-g" | "--goto" => target = Some(pair[1].clone()),
            "--match-set" => sets.push(pair[1].clone()),
            _ => {}
        }
    }
    Ok(SavedRule {
        chain: chain.to_owned(),
        spec: spec.to_owned(),
        target,
        sets,
    })
}

/// Reads `iptables-save` (or `ip6tables-save`) output, every table in it.
pub fn parse_iptables_save(text: &str) -> Result<Vec<SavedTable>, SaveParseError> {
    let mut tables: Vec<SavedTable> = Vec::new();
    let mut open = false;
    for (index, raw) in text.lines().enumerate() {
        let error = |message: String| SaveParseError {
            line: index + 1,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            tables.push(SavedTable {
                name: name.trim().to_owned(),
                ..SavedTable::default()
            });
            open = true;
            continue;
        }
        let table = match tables.last_mut() {
            Some(table) if open => table,
            _ => return Err(error(format!("{line:?} outside a table"))),
        };
        if line == "COMMIT" {
            open = false;
        } else if let Some(chain) = line.strip_prefix(':') {
            let mut parts = chain.split_whitespace();
            let name = parts
                .next()
                .ok_or_else(|| error("a chain without a name".into()))?;
            let policy = parts.next().unwrap_or("-");
            table.chains.push(SavedChain {
                name: name.to_owned(),
                builtin: policy != "-",
            });
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let rest = rest.trim_start();
            let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
            let rule = parse_rule(chain, spec.trim()).map_err(error)?;
            table.rules.push(rule);
        } else {
            return Err(error(format!("unexpected {line:?}")));
        }
    }
    Ok(tables)
}

/// A `KUBE-*` chain left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptChain {
    /// The chain.
    pub name: String,
    /// Why it stays.
    pub reason: String,
}

/// What to do in one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableCleanup {
    /// `nat`, `filter`, `mangle`.
    pub table: String,
    /// Jumps from built-in chains to delete, as `(chain, rule spec)`.
    pub jumps: Vec<(String, String)>,
    /// kube-proxy's chains to flush and delete.
    pub chains: Vec<String>,
    /// `KUBE-*` chains that stay, with the reason.
    pub kept: Vec<KeptChain>,
}

/// What to do in one backend of one family (one `iptables-save`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IptablesCleanup {
    /// Per table, only tables with something to remove or keep.
    pub tables: Vec<TableCleanup>,
    /// Sets still matched by rules that stay, with the chain and table of
    /// one such rule (`"CNI-FOO in filter"`).
    pub remaining_set_references: BTreeMap<String, String>,
}

impl IptablesCleanup {
    /// Whether nothing is to be removed.
    pub fn is_empty(&self) -> bool {
        self.tables
            .iter()
            .all(|table| table.jumps.is_empty() && table.chains.is_empty())
    }

    /// The `iptables-restore --noflush` input doing it: per table, the
    /// built-in jumps deleted, then every chain flushed, then every chain
    /// deleted (so no removed chain still references another), one
    /// `COMMIT` (atomic) per table. `None` when there is nothing to do.
    pub fn restore_input(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let mut input = String::new();
        for table in &self.tables {
            if table.jumps.is_empty() && table.chains.is_empty() {
                continue;
            }
            input.push_str(&format!("*{}\n", table.table));
            for (chain, spec) in &table.jumps {
                input.push_str(&format!("-D {chain} {spec}\n"));
            }
            for chain in &table.chains {
                input.push_str(&format!("-F {chain}\n"));
            }
            for chain in &table.chains {
                input.push_str(&format!("-X {chain}\n"));
            }
            input.push_str("COMMIT\n");
        }
        Some(input)
    }
}

fn plan_table(table: &SavedTable) -> TableCleanup {
    let builtin: BTreeSet<&str> = table
        .chains
        .iter()
        .filter(|c| c.builtin)
        .map(|c| c.name.as_str())
        .collect();
    let mut removed: BTreeSet<&str> = table
        .chains
        .iter()
        .filter(|c| !c.builtin && is_kube_proxy_chain(&table.name, &c.name))
        .map(|c| c.name.as_str())
        .collect();
    let mut kept: Vec<KeptChain> = Vec::new();
    // A kube-proxy chain referred to from a chain that stays (other than a
    // built-in one, whose jumps are deleted) stays too, and so on.
    loop {
        let referred = table.rules.iter().find_map(|rule| {
            let target = rule.target.as_deref()?;
            let stays =
                !removed.contains(rule.chain.as_str()) && !builtin.contains(rule.chain.as_str());
            (stays && removed.contains(target)).then_some((target, rule.chain.as_str()))
        });
        let Some((target, referrer)) = referred else {
            break;
        };
        removed.remove(target);
        kept.push(KeptChain {
            name: target.to_owned(),
            reason: format!("kube-proxy's, but {referrer} still jumps to it"),
        });
    }
    for chain in &table.chains {
        if chain.builtin
            || !chain.name.starts_with("KUBE-")
            || removed.contains(chain.name.as_str())
            || kept.iter().any(|k| k.name == chain.name)
        {
            continue;
        }
        kept.push(KeptChain {
            name: chain.name.clone(),
            reason: kept_reason(&table.name, &chain.name).to_owned(),
        });
    }
    let jumps = table
        .rules
        .iter()
        .filter(|rule| builtin.contains(rule.chain.as_str()))
        .filter(|rule| rule.target.as_deref().is_some_and(|t| removed.contains(t)))
        .map(|rule| (rule.chain.clone(), rule.spec.clone()))
        .collect();
    let chains = table
        .chains
        .iter()
        .filter(|c| removed.contains(c.name.as_str()))
        .map(|c| c.name.clone())
        .collect();
    TableCleanup {
        table: table.name.clone(),
        jumps,
        chains,
        kept,
    }
}

fn kept_reason(table: &str, chain: &str) -> &'static str {
    match (table, chain) {
        ("filter", "KUBE-FIREWALL") => "kubelet's (martian-packet rule)",
        ("nat", "KUBE-MARK-DROP") => "kubelet's (kube-proxy never removes it)",
        (_, "KUBE-KUBELET-CANARY") | ("mangle", "KUBE-IPTABLES-HINT") => "kubelet's",
        _ => "not known to be kube-proxy's",
    }
}

/// What to remove from one `iptables-save`'s tables (one backend of one
/// family): kube-proxy's chains in `nat`, `filter` and `mangle` and the
/// built-in chains' jumps into them; nothing else.
pub fn plan_iptables_cleanup(tables: &[SavedTable]) -> IptablesCleanup {
    let mut cleanup = IptablesCleanup::default();
    for table in tables {
        let plan = plan_table(table);
        let removed: BTreeSet<&str> = plan.chains.iter().map(String::as_str).collect();
        let deleted: BTreeSet<(&str, &str)> = plan
            .jumps
            .iter()
            .map(|(c, s)| (c.as_str(), s.as_str()))
            .collect();
        for rule in &table.rules {
            if removed.contains(rule.chain.as_str())
                || deleted.contains(&(rule.chain.as_str(), rule.spec.as_str()))
            {
                continue;
            }
            for set in &rule.sets {
                cleanup
                    .remaining_set_references
                    .entry(set.clone())
                    .or_insert_with(|| format!("{} in {}", rule.chain, table.name));
            }
        }
        if !(plan.jumps.is_empty() && plan.chains.is_empty() && plan.kept.is_empty()) {
            cleanup.tables.push(plan);
        }
    }
    cleanup
}

/// Reads `ipset list -name` output: one set name per line.
pub fn parse_ipset_names(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A set left in place, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptSet {
    /// The set.
    pub name: String,
    /// Why it stays.
    pub reason: String,
}

/// The sets to destroy, and kube-proxy's sets that stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetCleanup {
    /// kube-proxy's sets no remaining rule matches, to destroy.
    pub destroy: Vec<String>,
    /// kube-proxy's sets still matched by a rule that stays.
    pub kept: Vec<KeptSet>,
}

/// Of the sets present, kube-proxy's that no rule left after the iptables
/// clean-up matches (`references`: set to the rule's chain, from every
/// backend and family read).
pub fn plan_set_cleanup(present: &[String], references: &BTreeMap<String, String>) -> SetCleanup {
    let mut cleanup = SetCleanup::default();
    for name in present.iter().filter(|name| is_kube_proxy_set(name)) {
        match references.get(name) {
            Some(referrer) => cleanup.kept.push(KeptSet {
                name: name.clone(),
                reason: format!("still matched by a rule of {referrer}"),
            }),
            None => cleanup.destroy.push(name.clone()),
        }
    }
    cleanup
}

/// One iptables front-end: a family and a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IptablesTool {
    /// `iptables-legacy-save`, `ip6tables-nft-save`, `iptables-save`, ...
    pub save: &'static str,
    /// The matching `-restore`.
    pub restore: &'static str,
}

const LEGACY_AND_NFT: [[IptablesTool; 2]; 2] = [
    [
        IptablesTool {
            save: "iptables-legacy-save",
            restore: "iptables-legacy-restore",
        },
        IptablesTool {
            save: "iptables-nft-save",
            restore: "iptables-nft-restore",
        },
    ],
    [
        IptablesTool {
            save: "ip6tables-legacy-save",
            restore: "ip6tables-legacy-restore",
        },
        IptablesTool {
            save: "ip6tables-nft-save",
            restore: "ip6tables-nft-restore",
        },
    ],
];
const UNVERSIONED: [IptablesTool; 2] = [
    IptablesTool {
        save: "iptables-save",
        restore: "iptables-restore",
    },
    IptablesTool {
        save: "ip6tables-save",
        restore: "ip6tables-restore",
    },
];

/// What was removed from one backend of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    /// The front-end read and written.
    pub tool: IptablesTool,
    /// Per table: what was removed and kept.
    pub tables: Vec<TableCleanup>,
}

/// What [`remove_kube_proxy_leftovers`] found and removed, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeftoverReport {
    /// Per front-end read (empty ones left out).
    pub backends: Vec<BackendReport>,
    /// Sets destroyed.
    pub sets_destroyed: Vec<String>,
    /// kube-proxy's sets kept, and why.
    pub sets_kept: Vec<KeptSet>,
    /// Tools not found, and similar remarks.
    pub notes: Vec<String>,
}

impl LeftoverReport {
    /// Jump rules deleted from built-in chains, over every backend.
    pub fn jumps_deleted(&self) -> usize {
        self.tables().map(|t| t.jumps.len()).sum()
    }

    /// Chains deleted, over every backend.
    pub fn chains_deleted(&self) -> usize {
        self.tables().map(|t| t.chains.len()).sum()
    }

    /// Whether nothing was removed.
    pub fn removed_nothing(&self) -> bool {
        self.jumps_deleted() == 0 && self.chains_deleted() == 0 && self.sets_destroyed.is_empty()
    }

    fn tables(&self) -> impl Iterator<Item = &TableCleanup> {
        self.backends.iter().flat_map(|b| b.tables.iter())
    }
}

/// Why one set was not destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDestroyFailure {
    /// The set.
    pub set: String,
    /// The kernel said it is still in use.
    pub in_use: bool,
    /// `ipset`'s message.
    pub stderr: String,
}

impl std::fmt::Display for SetDestroyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.in_use {
            write!(
                f,
                "ipset destroy {}: still in use by a kernel component (a rule outside \
                 kube-proxy's chains, in a backend or namespace not read, matches it)",
                self.set
            )
        } else {
            write!(f, "ipset destroy {}: {}", self.set, self.stderr)
        }
    }
}

/// A clean-up step that failed, naming the command.
#[derive(Debug, thiserror::Error)]
pub enum LeftoverError {
    /// A command could not be started (other than not being installed).
    #[error("running {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A save's output could not be read.
    #[error("reading the output of {command}: {source}")]
    Parse {
        /// The command whose output it was.
        command: String,
        /// Where and why.
        #[source]
        source: SaveParseError,
    },
    /// Rules were removed, but some sets could not be destroyed.
    #[error(
        "destroying kube-proxy's ipsets: {}",
        failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    SetsNotDestroyed {
        /// One per set not destroyed.
        failures: Vec<SetDestroyFailure>,
        /// What was removed before.
        report: Box<LeftoverReport>,
    },
}

/// What a command printed, or that it is not installed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ran {
    Missing,
    Done {
        success: bool,
        status: String,
        stdout: String,
        stderr: String,
    },
}

/// Runs commands: the processes in the agent, a script in the tests.
trait Runner {
    fn run(&mut self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Ran>;
}

#[derive(Debug)]
struct Processes;

impl Runner for Processes {
    fn run(&mut self, program: &str, args: &[&str], stdin: Option<&str>) -> std::io::Result<Ran> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ran::Missing),
            Err(e) => return Err(e),
        };
        if let Some(input) = stdin {
            // Dropped at the end of the statement: the tool sees EOF.
            child
                .stdin
                .take()
                .expect("stdin is piped")
                .write_all(input.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        Ok(Ran::Done {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command that must succeed; `None` when it is not installed.
fn run_checked(
    runner: &mut dyn Runner,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Option<String>, LeftoverError> {
    let command = command_line(program, args);
    match runner.run(program, args, stdin) {
        Err(source) => Err(LeftoverError::Spawn { command, source }),
        Ok(Ran::Missing) => Ok(None),
        Ok(Ran::Done {
            success: true,
            stdout,
            ..
        }) => Ok(Some(stdout)),
        Ok(Ran::Done { status, stderr, .. }) => Err(LeftoverError::Failed {
            command,
            status,
            stderr,
        }),
    }
}

/// Removes kube-proxy's IPVS-mode (and iptables-mode) leftovers from
/// iptables, ip6tables (both backends) and ipset, and nothing else; see
/// the module documentation. Runs only the reads when there is nothing of
/// kube-proxy's. Blocking.
pub fn remove_kube_proxy_leftovers() -> Result<LeftoverReport, LeftoverError> {
    remove_with(&mut Processes)
}

fn remove_with(runner: &mut dyn Runner) -> Result<LeftoverReport, LeftoverError> {
    let mut report = LeftoverReport::default();
    let mut references: BTreeMap<String, String> = BTreeMap::new();
    let mut writes: Vec<(IptablesTool, String)> = Vec::new();
    for (family, unversioned) in LEGACY_AND_NFT.iter().zip(UNVERSIONED) {
        let mut read_any = false;
        for tool in family.iter().copied().chain(std::iter::once(unversioned)) {
            if tool == unversioned && read_any {
                // `iptables-save` is one of the two already read.
                break;
            }
            let Some(saved) = run_checked(runner, tool.save, &[], None)? else {
                continue;
            };
            read_any = true;
            let tables = parse_iptables_save(&saved).map_err(|source| LeftoverError::Parse {
                command: tool.save.to_owned(),
                source,
            })?;
            let cleanup = plan_iptables_cleanup(&tables);
            for (set, referrer) in &cleanup.remaining_set_references {
                references
                    .entry(set.clone())
                    .or_insert_with(|| format!("{referrer} ({})", tool.save));
            }
            if let Some(input) = cleanup.restore_input() {
                writes.push((tool, input));
            }
            if !cleanup.tables.is_empty() {
                report.backends.push(BackendReport {
                    tool,
                    tables: cleanup.tables,
                });
            }
        }
        if !read_any {
            report.notes.push(format!(
                "neither {}, {} nor {} is installed: no {} rules to remove",
                family[0].save,
                family[1].save,
                unversioned.save,
                if unversioned.save.starts_with("ip6") {
                    "ip6tables"
                } else {
                    "iptables"
                },
            ));
        }
    }
    let sets = match run_checked(runner, "ipset", &["list", "-name"], None)? {
        Some(listed) => plan_set_cleanup(&parse_ipset_names(&listed), &references),
        None => {
            report
                .notes
                .push("ipset is not installed: no sets to destroy".into());
            SetCleanup::default()
        }
    };
    for (tool, input) in &writes {
        run_checked(runner, tool.restore, &["--noflush"], Some(input))?;
    }
    report.sets_kept = sets.kept;
    let mut failures = Vec::new();
    for set in sets.destroy {
        let args = ["destroy", set.as_str()];
        match runner.run("ipset", &args, None) {
            Ok(Ran::Done { success: true, .. }) => report.sets_destroyed.push(set),
            Ok(Ran::Done { stderr, .. }) => failures.push(SetDestroyFailure {
                in_use: stderr.contains("in use"),
                set,
                stderr,
            }),
            Ok(Ran::Missing) => failures.push(SetDestroyFailure {
                set,
                in_use: false,
                stderr: "ipset disappeared".into(),
            }),
            Err(source) => {
                return Err(LeftoverError::Spawn {
                    command: command_line("ipset", &args),
                    source,
                })
            }
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(LeftoverError::SetsNotDestroyed {
            failures,
            report: Box::new(report),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `iptables-legacy-save` of a node after kube-proxy (IPVS mode, one
    /// ClusterIP Service, a NodePort, a health-check port) stopped, with
    /// kubelet's chains and Docker's: the rules as `writeIptablesRules`
    /// and `createAndLinkKubeChain` write them, in `iptables-save`'s
    /// spelling (`--or-mark` saved as `--set-xmark`).
    const IPVS_NODE: &str = r#"# Generated by iptables-save v1.8.9 on Tue Dec  1 10:00:00 2026
*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
# Completed on Tue Dec  1 10:00:00 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-LOAD-BALANCER - [0:0]
:KUBE-MARK-DROP - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODE-PORT -p tcp -m comment --comment "Kubernetes nodeport TCP port for masquerade purpose" -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-POSTROUTING -m comment --comment "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-IPVS-FILTER - [0:0]
:KUBE-IPVS-OUT-FILTER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SOURCE-RANGES-FIREWALL - [0:0]
-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER
-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check rules" -j KUBE-NODE-PORT
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -o docker0 -j DOCKER
-A OUTPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-OUT-FILTER
-A OUTPUT -j KUBE-FIREWALL
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-IPVS-FILTER -m set --match-set KUBE-LOAD-BALANCER dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-CLUSTER-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-EXTERNAL-IP-LOCAL dst,dst -j RETURN
-A KUBE-IPVS-FILTER -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j RETURN
-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT --reject-with icmp-port-unreachable
-A KUBE-NODE-PORT -m comment --comment "Kubernetes health check node port" -m set --match-set KUBE-HEALTH-CHECK-NODE-PORT dst -j ACCEPT
-A KUBE-SOURCE-RANGES-FIREWALL -j DROP
COMMIT
"#;

    fn plan(text: &str) -> IptablesCleanup {
        plan_iptables_cleanup(&parse_iptables_save(text).expect("parses"))
    }

    fn kept(cleanup: &IptablesCleanup, table: &str) -> Vec<(String, String)> {
        cleanup
            .tables
            .iter()
            .filter(|t| t.table == table)
            .flat_map(|t| t.kept.iter().map(|k| (k.name.clone(), k.reason.clone())))
            .collect()
    }

    #[test]
    fn an_ipvs_mode_node_loses_exactly_kube_proxys_jumps_and_chains() {
        let cleanup = plan(IPVS_NODE);
        let expected = "\
*nat
-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-D OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-F KUBE-LOAD-BALANCER
-F KUBE-MARK-MASQ
-F KUBE-NODE-PORT
-F KUBE-POSTROUTING
-F KUBE-SERVICES
-X KUBE-LOAD-BALANCER
-X KUBE-MARK-MASQ
-X KUBE-NODE-PORT
-X KUBE-POSTROUTING
-X KUBE-SERVICES
COMMIT
*filter
-D INPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-FILTER
-D INPUT -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL
-D INPUT -m comment --comment \"kubernetes health check rules\" -j KUBE-NODE-PORT
-D FORWARD -m comment --comment \"kube-proxy firewall rules\" -j KUBE-PROXY-FIREWALL
-D FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD
-D OUTPUT -m comment --comment \"kubernetes ipvs access filter\" -j KUBE-IPVS-OUT-FILTER
-F KUBE-FORWARD
-F KUBE-IPVS-FILTER
-F KUBE-IPVS-OUT-FILTER
-F KUBE-NODE-PORT
-F KUBE-PROXY-FIREWALL
-F KUBE-SOURCE-RANGES-FIREWALL
-X KUBE-FORWARD
-X KUBE-IPVS-FILTER
-X KUBE-IPVS-OUT-FILTER
-X KUBE-NODE-PORT
-X KUBE-PROXY-FIREWALL
-X KUBE-SOURCE-RANGES-FIREWALL
COMMIT
";
        assert_eq!(cleanup.restore_input().as_deref(), Some(expected));
        let kubelets = |reason: &str| reason.starts_with("kubelet's");
        for (table, chains) in [
            ("mangle", vec!["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"]),
            ("nat", vec!["KUBE-KUBELET-CANARY", "KUBE-MARK-DROP"]),
            ("filter", vec!["KUBE-FIREWALL", "KUBE-KUBELET-CANARY"]),
        ] {
            let kept = kept(&cleanup, table);
            assert_eq!(
                kept.iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
                chains,
                "{table}"
            );
            assert!(kept.iter().all(|(_, reason)| kubelets(reason)), "{kept:?}");
        }
        // Only Docker's and kubelet's rules are left; they match no set.
        assert!(cleanup.remaining_set_references.is_empty());
    }

    #[test]
    fn a_node_without_kube_proxy_has_nothing_to_do() {
        let kubelet_and_docker = "\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-MARK-DROP - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000
COMMIT
*filter
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
COMMIT
";
        for text in ["", "# nothing\n", kubelet_and_docker] {
            let cleanup = plan(text);
            assert!(cleanup.is_empty(), "{text}");
            assert_eq!(cleanup.restore_input(), None, "{text}");
        }
    }

    #[test]
    fn iptables_mode_leftovers_go_too() {
        let text = r#"*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXT-7EJNTS7AENER2WX5 - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:KUBE-SVL-7EJNTS7AENER2WX5 - [0:0]
:KUBE-XLB-ABCDEFGHIJKLMNOP - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/nginx" -m tcp --dport 30000 -j KUBE-EXT-7EJNTS7AENER2WX5
-A KUBE-SEP-IT2ZTR26TO4XFPTO -s 10.244.1.20/32 -m comment --comment "default/nginx" -j KUBE-MARK-MASQ
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p tcp -m comment --comment "default/nginx" -m tcp -j DNAT --to-destination 10.244.1.20:80
-A KUBE-SERVICES -d 10.1.46.104/32 -p tcp -m comment --comment "default/nginx cluster IP" -m tcp --dport 8080 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/nginx -> 10.244.1.20:80" -j KUBE-SEP-IT2ZTR26TO4XFPTO
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-PROXY-CANARY - [0:0]
COMMIT
"#;
        let cleanup = plan(text);
        let chains: Vec<(&str, Vec<&str>)> = cleanup
            .tables
            .iter()
            .map(|t| {
                (
                    t.table.as_str(),
                    t.chains.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            chains,
            vec![
                (
                    "nat",
                    vec![
                        "KUBE-EXT-7EJNTS7AENER2WX5",
                        "KUBE-MARK-MASQ",
                        "KUBE-NODEPORTS",
                        "KUBE-PROXY-CANARY",
                        "KUBE-SEP-IT2ZTR26TO4XFPTO",
                        "KUBE-SERVICES",
                        "KUBE-SVC-NPX46M4PTMTKRN6Y",
                        "KUBE-SVL-7EJNTS7AENER2WX5",
                        "KUBE-XLB-ABCDEFGHIJKLMNOP",
                    ]
                ),
                ("filter", vec!["KUBE-EXTERNAL-SERVICES", "KUBE-SERVICES"]),
                ("mangle", vec!["KUBE-PROXY-CANARY"]),
            ]
        );
        let jumps: Vec<usize> = cleanup.tables.iter().map(|t| t.jumps.len()).collect();
        assert_eq!(jumps, vec![2, 3, 0]);
        let input = cleanup.restore_input().expect("something to do");
        assert!(input.contains(
            "-D INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes externally-visible service portals\" -j KUBE-EXTERNAL-SERVICES\n"
        ));
        assert!(input.ends_with("*mangle\n-F KUBE-PROXY-CANARY\n-X KUBE-PROXY-CANARY\nCOMMIT\n"));
    }

    #[test]
    fn a_kube_proxy_chain_another_tool_still_jumps_to_stays_with_what_it_jumps_to() {
        let text = r#"*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODE-PORT - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A CNI-HOSTPORT-DNAT -p tcp -m tcp --dport 8080 -g KUBE-SERVICES
-A KUBE-NODE-PORT -p tcp -m set --match-set KUBE-NODE-PORT-TCP dst -j KUBE-MARK-MASQ
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT
-A KUBE-SERVICES ! -s 10.244.0.0/16 -m set --match-set KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ
COMMIT
"#;
        let cleanup = plan(text);
        assert_eq!(
            cleanup.restore_input().as_deref(),
            Some(
                "*nat\n\
                 -D POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
                 -F KUBE-POSTROUTING\n\
                 -X KUBE-POSTROUTING\n\
                 COMMIT\n"
            )
        );
        assert_eq!(
            kept(&cleanup, "nat"),
            vec![
                (
                    "KUBE-SERVICES".to_owned(),
                    "kube-proxy's, but CNI-HOSTPORT-DNAT still jumps to it".to_owned()
                ),
                (
                    "KUBE-NODE-PORT".to_owned(),
                    "kube-proxy's, but KUBE-SERVICES still jumps to it".to_owned()
                ),
                (
                    "KUBE-MARK-MASQ".to_owned(),
                    "kube-proxy's, but KUBE-NODE-PORT still jumps to it".to_owned()
                ),
            ]
        );
        // The chains kept still match the sets: those must stay too.
        assert_eq!(
            cleanup
                .remaining_set_references
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            vec!["KUBE-CLUSTER-IP", "KUBE-NODE-PORT-TCP"]
        );
    }

    #[test]
    fn duplicate_jumps_are_each_deleted_and_quotes_escapes_survive() {
        // An old kubelet and kube-proxy both ensured this jump.
        let text = "*nat\n:POSTROUTING ACCEPT [0:0]\n:KUBE-POSTROUTING - [0:0]\n\
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
-A POSTROUTING -m comment --comment \"say \\\"-j KUBE-POSTROUTING\\\"\" -j ACCEPT\n\
COMMIT\n";
        let cleanup = plan(text);
        assert_eq!(cleanup.tables[0].jumps.len(), 2, "{cleanup:?}");
        assert_eq!(
            words(r#"-m comment --comment "say \"-j X\"" -j ACCEPT"#).unwrap(),
            vec!["-m", "comment", "--comment", "say \"-j X\"", "-j", "ACCEPT"]
        );
        assert!(words("--comment \"open").is_err());
    }

    #[test]
    fn unreadable_saves_name_the_line() {
        for (text, line) in [
            ("-A INPUT -j ACCEPT\n", 1),
            ("*nat\nCOMMIT\n-A INPUT -j ACCEPT\n", 3),
            ("*nat\n-A X -m comment --comment \"open\n", 2),
            ("*nat\n-I INPUT -j ACCEPT\n", 2),
        ] {
            assert_eq!(parse_iptables_save(text).unwrap_err().line, line, "{text}");
        }
    }

    #[test]
    fn chain_ownership_by_table() {
        let cases = [
            ("nat", "KUBE-FIREWALL", true),
            ("filter", "KUBE-FIREWALL", false),
            ("nat", "KUBE-MARK-DROP", false),
            ("nat", "KUBE-MARK-MASQ", true),
            ("filter", "KUBE-MARK-MASQ", false),
            ("nat", "KUBE-KUBELET-CANARY", false),
            ("mangle", "KUBE-PROXY-CANARY", true),
            ("mangle", "KUBE-IPTABLES-HINT", false),
            ("nat", "KUBE-SVC-NPX46M4PTMTKRN6Y", true),
            ("filter", "KUBE-SVC-NPX46M4PTMTKRN6Y", false),
            ("filter", "KUBE-IPVS-OUT-FILTER", true),
            ("nat", "KUBE-ROUTER-SERVICES", false),
            ("raw", "KUBE-SERVICES", false),
            ("filter", "DOCKER", false),
        ];
        for (table, chain, expected) in cases {
            assert_eq!(
                is_kube_proxy_chain(table, chain),
                expected,
                "{table} {chain}"
            );
        }
    }

    #[test]
    fn kube_proxys_sets_ipv4_and_ipv6_and_only_unreferenced_ones_are_destroyed() {
        let listed = "KUBE-CLUSTER-IP\nKUBE-6-CLUSTER-IP\nKUBE-6-LOAD-BALANCER-SOURCE-CID\n\
KUBE-6-NODE-PORT-LOCAL-SCTP-HAS\nKUBE-NODE-PORT-TCP\nKUBE-IPVS-IPS\ncni-portmap\n\
KUBE-ROUTER-SERVICES\nKUBE-6-LOAD-BALANCER-SOURCE-CIDR\n\n";
        let references = BTreeMap::from([(
            "KUBE-NODE-PORT-TCP".to_owned(),
            "KUBE-NODE-PORT in nat".to_owned(),
        )]);
        let sets = plan_set_cleanup(&parse_ipset_names(listed), &references);
        assert_eq!(
            sets.destroy,
            vec![
                "KUBE-CLUSTER-IP",
                "KUBE-6-CLUSTER-IP",
                "KUBE-6-LOAD-BALANCER-SOURCE-CID",
                "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS",
                "KUBE-IPVS-IPS",
            ]
        );
        assert_eq!(
            sets.kept,
            vec![KeptSet {
                name: "KUBE-NODE-PORT-TCP".into(),
                reason: "still matched by a rule of KUBE-NODE-PORT in nat".into(),
            }]
        );
        assert!(plan_set_cleanup(&parse_ipset_names(""), &BTreeMap::new())
            .destroy
            .is_empty());
    }

    /// A script of command results, recording what was run.
    #[derive(Debug, Default)]
    struct Script {
        results: BTreeMap<String, Ran>,
        ran: Vec<(String, Option<String>)>,
    }

    impl Script {
        fn with(mut self, command: &str, result: Ran) -> Script {
            self.results.insert(command.to_owned(), result);
            self
        }

        fn commands(&self) -> Vec<&str> {
            self.ran.iter().map(|(c, _)| c.as_str()).collect()
        }
    }

    fn ok(stdout: &str) -> Ran {
        Ran::Done {
            success: true,
            status: "exit status: 0".into(),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    fn failed(stderr: &str) -> Ran {
        Ran::Done {
            success: false,
            status: "exit status: 1".into(),
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    impl Runner for Script {
        fn run(
            &mut self,
            program: &str,
            args: &[&str],
            stdin: Option<&str>,
        ) -> std::io::Result<Ran> {
            let command = command_line(program, args);
            self.ran.push((command.clone(), stdin.map(str::to_owned)));
            Ok(self.results.get(&command).cloned().unwrap_or(Ran::Missing))
        }
    }

    const READS: [&str; 5] = [
        "iptables-legacy-save",
        "iptables-nft-save",
        "ip6tables-legacy-save",
        "ip6tables-nft-save",
        "ipset list -name",
    ];

    fn debian_node() -> Script {
        READS
            .iter()
            .fold(Script::default(), |script, read| script.with(read, ok("")))
    }

    #[test]
    fn a_clean_node_gets_only_the_reads() {
        let mut script = debian_node();
        let report = remove_with(&mut script).expect("nothing fails");
        assert_eq!(script.commands(), READS);
        assert!(report.removed_nothing());
        assert_eq!(report, LeftoverReport::default());
    }

    #[test]
    fn missing_tools_are_notes_not_errors() {
        let mut script = Script::default();
        let report = remove_with(&mut script).expect("nothing installed is fine");
        assert_eq!(
            script.commands(),
            vec![
                "iptables-legacy-save",
                "iptables-nft-save",
                "iptables-save",
                "ip6tables-legacy-save",
                "ip6tables-nft-save",
                "ip6tables-save",
                "ipset list -name",
            ]
        );
        assert_eq!(report.notes.len(), 3, "{:?}", report.notes);
        assert!(report.notes[0].contains("no iptables rules"));
        assert!(report.notes[1].contains("no ip6tables rules"));
        assert!(report.removed_nothing());
    }

    #[test]
    fn leftovers_are_restored_away_per_backend_then_sets_destroyed() {
        let mut script = debian_node()
            .with("iptables-legacy-save", ok(IPVS_NODE))
            .with("iptables-legacy-restore --noflush", ok(""))
            .with(
                "ipset list -name",
                ok("KUBE-CLUSTER-IP\nKUBE-LOOP-BACK\ncni-portmap\n"),
            )
            .with("ipset destroy KUBE-CLUSTER-IP", ok(""))
            .with("ipset destroy KUBE-LOOP-BACK", ok(""));
        let report = remove_with(&mut script).expect("all removed");
        assert_eq!(
            script.commands()[READS.len()..],
            [
                "iptables-legacy-restore --noflush",
                "ipset destroy KUBE-CLUSTER-IP",
                "ipset destroy KUBE-LOOP-BACK",
            ]
        );
        let input = script.ran[READS.len()].1.as_deref();
        assert_eq!(input, plan(IPVS_NODE).restore_input().as_deref());
        assert_eq!((report.jumps_deleted(), report.chains_deleted()), (9, 11));
        assert_eq!(report.backends.len(), 1);
        assert_eq!(report.backends[0].tool.save, "iptables-legacy-save");
        assert_eq!(report.sets_destroyed, ["KUBE-CLUSTER-IP", "KUBE-LOOP-BACK"]);
    }

    #[test]
    fn only_plain_iptables_save_is_read_when_no_backend_is_named() {
        let mut script = Script::default()
            .with("iptables-save", ok(IPVS_NODE))
            .with("iptables-restore --noflush", ok(""))
            .with("ip6tables-save", ok(""))
            .with("ipset list -name", ok(""));
        let report = remove_with(&mut script).expect("removed");
        assert!(script.commands().contains(&"iptables-restore --noflush"));
        assert_eq!(report.backends[0].tool.restore, "iptables-restore");
        assert!(report.notes.is_empty(), "{:?}", report.notes);
    }

    #[test]
    fn a_refused_restore_is_an_error_naming_the_tool_and_no_set_is_touched() {
        let mut script = debian_node()
            .with("iptables-nft-save", ok(IPVS_NODE))
            .with(
                "iptables-nft-restore --noflush",
                failed("iptables-nft-restore: line 5 failed"),
            )
            .with("ipset list -name", ok("KUBE-CLUSTER-IP\n"));
        let error = remove_with(&mut script).unwrap_err();
        assert_eq!(
            error.to_string(),
            "iptables-nft-restore --noflush failed (exit status: 1): iptables-nft-restore: line 5 failed"
        );
        assert!(!script
            .commands()
            .iter()
            .any(|c| c.starts_with("ipset destroy")));
    }

    #[test]
    fn a_set_in_use_is_reported_by_name_after_the_others_are_destroyed() {
        let mut script = debian_node()
            .with("ipset list -name", ok("KUBE-CLUSTER-IP\nKUBE-IPVS-IPS\n"))
            .with(
                "ipset destroy KUBE-CLUSTER-IP",
                failed("ipset v7.17: Set cannot be destroyed: it is in use by a kernel component"),
            )
            .with("ipset destroy KUBE-IPVS-IPS", ok(""));
        let LeftoverError::SetsNotDestroyed { failures, report } =
            remove_with(&mut script).unwrap_err()
        else {
            panic!("not a set error");
        };
        assert_eq!(failures.len(), 1);
        assert!(failures[0].in_use);
        assert!(failures[0]
            .to_string()
            .starts_with("ipset destroy KUBE-CLUSTER-IP: still in use by a kernel component"));
        assert_eq!(report.sets_destroyed, ["KUBE-IPVS-IPS"]);
    }
}
