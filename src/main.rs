//! `ipvs-agent`: the binary. The command line and its resolution are in
//! [`cli`]; this file sets up logging and runs what was
//! resolved: kube-proxy's `--write-config-to`, `--cleanup`,
//! `--init-only`, the run itself, and the agent's `plan`, `list` and
//! `cleanup`.

mod cli;

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use cli::resolve::{load_configuration, resolve, LogSettings, Resolved};
use cli::{Cli, Command, ListArgs, LogFormat, Output, PlanArgs, RunArgs};
use ipvs_agent::commands::cleanup::cleanup;
use ipvs_agent::commands::list::{list_kernel, ListFormat};
use ipvs_agent::commands::plan::{self, PlanFormat};
use ipvs_agent::driver::RunOptions;
use ipvs_agent::model::settings::LocalTrafficDetector;
use ipvs_agent::model::ProxySettings;
use ipvs_agent::ops::health::Health;
use ipvs_agent::ops::http::{serve_health, serve_metrics, BindFailure};
use ipvs_agent::ops::metrics::ServerMetrics;
use ipvs_agent::ops::node_events::NodeEvents;
use ipvs_agent::ops::Observers;
use ipvs_agent::sources::kubernetes::KubernetesSource;
use ipvs_agent::sources::manifests::ManifestSource;
use ipvs_agent::system::capabilities::require_net_admin;
use ipvs_agent::system::kube_proxy_leftovers::remove_kube_proxy_leftovers;
use ipvs_agent::system::oom_score::{apply_oom_score_adj, OOM_SCORE_ADJ};
use ipvs_agent::system::sysctl::check_net_sysctl_root;
use netlink_ipvs::format::IpvsListOptions;
use netlink_ipvs::IpvsTimeouts;
use tracing::{info, warn};

/// mimalloc instead of glibc's malloc: the agent rebuilds its view of a
/// 220,000-object kernel table on reader threads at every resync, and
/// glibc's per-thread arenas kept the freed views as resident memory.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr at the configuration's verbosity (`RUST_LOG`, when set,
/// wins), as text or JSON.
fn init_logging(log: LogSettings, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log.level()));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    let json = match format {
        Some(format) => format == LogFormat::Json,
        None => log.json,
    };
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// Loads the configuration, sets up logging from it and logs what is
/// worth a warning.
fn configure(args: &RunArgs, format: Option<LogFormat>) -> anyhow::Result<Resolved> {
    let loaded = load_configuration(args)?;
    let mut notes = loaded.notes;
    let resolved = resolve(loaded.config, &args.agent, &mut notes)?;
    init_logging(resolved.log, format);
    for note in notes {
        warn!("{note}");
    }
    Ok(resolved)
}

/// kube-proxy's `GetHostname`: the override (flag or file), else the
/// hostname; trimmed and lowercased, and a blank override is an error.
fn node_name(resolved: &Resolved) -> anyhow::Result<String> {
    if !resolved.hostname_override.is_empty() {
        let name = resolved.hostname_override.trim();
        if name.is_empty() {
            bail!("hostnameOverride (--hostname-override): an empty hostname is invalid");
        }
        return Ok(name.to_lowercase());
    }
    if let Ok(name) = std::env::var("NODE_NAME") {
        if !name.is_empty() {
            return Ok(name.to_lowercase());
        }
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("--hostname-override not given and the hostname could not be read")?;
    Ok(hostname.trim().to_lowercase())
}

fn plan(args: PlanArgs, format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let resolved = configure(&args.run, format)?;
    if args.run.agent.manifests.is_empty() {
        bail!("plan: --manifests is required");
    }
    let output = match args.output {
        Output::Text => PlanFormat::Text,
        Output::Save => PlanFormat::Save,
        Output::Json => PlanFormat::Json,
    };
    let planned = plan::plan(
        &args.run.agent.manifests,
        node_name(&resolved)?,
        &resolved.node_addresses,
        &resolved.settings,
        resolved.ip_family,
        output,
    )?;
    for problem in &planned.problems {
        eprintln!("ipvs-agent: skipped: {problem}");
    }
    print_stdout(&planned.text)?;
    Ok(if planned.nothing_read {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    init_logging(
        LogSettings {
            verbosity: 0,
            json: false,
        },
        None,
    );
    let format = if args.save {
        ListFormat::Save
    } else {
        ListFormat::Table(IpvsListOptions {
            stats: args.stats,
            rate: args.rate,
            exact: args.exact,
            ..IpvsListOptions::default()
        })
    };
    let text = runtime()?
        .block_on(list_kernel(format))
        .context("reading the kernel's IPVS table")?;
    print_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a closed pipe (`| head -1`) ends the output quietly,
/// as other Unix tools end (Rust's `print!` would panic).
fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => result.context("writing to stdout"),
    }
}

/// Removes what the agent owns; with `kube_proxy_leftovers` (kube-proxy's
/// `--cleanup`) kube-proxy's iptables chains and ipsets too.
fn cleanup_owned(settings: &ProxySettings, kube_proxy_leftovers: bool) -> anyhow::Result<ExitCode> {
    let report = runtime()?
        .block_on(cleanup(settings))
        .context("cleaning up")?;
    let tables: Vec<String> = report
        .tables_deleted
        .iter()
        .map(|family| format!(", nftables table {} ipvs-agent", family.nft_name()))
        .collect();
    print_stdout(&format!(
        "deleted {} virtual servers{}{}; left {} that are not the agent's\n",
        report.deleted.len(),
        if report.link_deleted {
            " and kube-ipvs0"
        } else {
            ""
        },
        tables.concat(),
        report.kept.len()
    ))?;
    if kube_proxy_leftovers {
        let leftovers = remove_kube_proxy_leftovers().context("removing kube-proxy's leftovers")?;
        for note in &leftovers.notes {
            info!("{note}");
        }
        print_stdout(&format!(
            "kube-proxy's leftovers: deleted {} jumps, {} chains and {} ipsets\n",
            leftovers.jumps_deleted(),
            leftovers.chains_deleted(),
            leftovers.sets_destroyed.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// kube-proxy's `--write-config-to`: the configuration as YAML, then exit.
fn write_config(resolved: &Resolved, path: &Path) -> anyhow::Result<ExitCode> {
    let text = serde_yaml_ng::to_string(&resolved.config).context("encoding the configuration")?;
    std::fs::write(path, text).with_context(|| format!("--write-config-to {}", path.display()))?;
    info!(file = %path.display(), "Wrote configuration");
    Ok(ExitCode::SUCCESS)
}

fn run_options(resolved: &Resolved, args: &RunArgs, node_name: String) -> RunOptions {
    let (tcp, tcp_fin, udp) = resolved.ipvs_timeouts;
    let node_cidr = matches!(
        resolved.settings.datapath.local_detector,
        LocalTrafficDetector::NodeCidr(_)
    );
    RunOptions {
        node_name,
        node_addresses: resolved.node_addresses.clone(),
        ip_family: resolved.ip_family,
        sync_period: resolved.sync_period,
        // Files are loaded whole when they change: nothing to coalesce.
        min_sync_period: if args.agent.manifests.is_empty() {
            resolved.min_sync_period
        } else {
            std::time::Duration::ZERO
        },
        drain_check_interval: args.agent.drain_check_interval,
        timeouts: IpvsTimeouts { tcp, tcp_fin, udp },
        strict_arp: resolved.strict_arp,
        conntrack: resolved.conntrack,
        keep_counters: args.agent.per_server_metrics,
        wait_for_pod_cidrs: node_cidr,
        remove_kube_proxy_leftovers: resolved.settings.datapath.enabled,
        proc_sys_net: args.agent.proc_sys_net.clone(),
    }
}

fn run(args: RunArgs, format: Option<LogFormat>) -> anyhow::Result<ExitCode> {
    let resolved = configure(&args, format)?;
    let flags = &args.kube_proxy;
    if let Some(path) = &flags.write_config_to {
        return write_config(&resolved, path);
    }
    if flags.cleanup == Some(true) {
        return cleanup_owned(&resolved.settings, true);
    }
    // A wrong --proc-sys-net (a hostPath that is not mounted) stops the
    // agent at once; a read-only tree shows as warnings when the sysctls
    // are set.
    check_net_sysctl_root(&args.agent.proc_sys_net)?;
    require_net_admin(Path::new("/proc/self/status"))?;
    match apply_oom_score_adj(Path::new(OOM_SCORE_ADJ), resolved.oom_score_adj) {
        Ok(true) => info!("set oom_score_adj = {}", resolved.oom_score_adj),
        Ok(false) => {}
        Err(error) => {
            warn!(%error, "setting oom_score_adj = {} (left as it is)", resolved.oom_score_adj)
        }
    }
    let node_name = node_name(&resolved)?;
    let options = run_options(&resolved, &args, node_name.clone());
    if flags.init_only == Some(true) {
        runtime()?.block_on(ipvs_agent::driver::initialize_node(&options))?;
        info!("system initialized and --init-only given: exiting");
        return Ok(ExitCode::SUCCESS);
    }
    if options.wait_for_pod_cidrs && !args.agent.manifests.is_empty() {
        bail!(
            "--detect-local-mode NodeCIDR reads the Node's spec.podCIDRs from the API server; \
             with --manifests use ClusterCIDR (--cluster-cidr), BridgeInterface or InterfaceNamePrefix"
        );
    }
    let settings = resolved.settings.clone();
    // kube-proxy's health timeout: twice the sync period.
    let health = Health::new(resolved.sync_period.saturating_mul(2));
    let server_metrics = ServerMetrics::new(
        args.agent.per_server_metrics,
        args.agent.per_server_metrics_limit,
    );
    runtime()?.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        let prometheus =
            ipvs_agent::ops::metrics::install().context("installing the metrics recorder")?;
        let on_bind_failure = BindFailure::from_hard_fail(resolved.bind_address_hard_fail);
        if let Some(address) = resolved.healthz_address {
            serve_health(address, health.clone(), on_bind_failure).await?;
        }
        if let Some(address) = resolved.metrics_address {
            let configz = serde_json::to_value(&resolved.config).context("encoding /configz")?;
            let (servers, health) = (server_metrics.clone(), health.clone());
            serve_metrics(
                address,
                prometheus,
                servers,
                health,
                configz,
                on_bind_failure,
            )
            .await?;
        }
        if args.agent.manifests.is_empty() {
            let client = ipvs_agent::sources::kubernetes::client(
                resolved.kubeconfig.as_deref(),
                flags.master.as_deref(),
            )
            .await?;
            let source = KubernetesSource::start(client.clone(), &node_name, &health);
            let events = NodeEvents::new(client, &node_name);
            let observers = Observers::new(health, server_metrics, Some(events));
            ipvs_agent::driver::run(source, settings, options, observers, shutdown).await?;
        } else {
            let source = ManifestSource::open(
                args.agent.manifests.clone(),
                node_name.clone(),
                args.agent.manifests_poll_interval,
            )?;
            let observers = Observers::new(health, server_metrics, None);
            ipvs_agent::driver::run(source, settings, options, observers, shutdown).await?;
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let format = cli.log_format;
    match cli.into_command() {
        Command::Plan(args) => plan(*args, format),
        Command::Run(args) => run(*args, format),
        Command::List(args) => list(args),
        Command::Cleanup(args) => {
            let resolved = configure(&args, format)?;
            cleanup_owned(&resolved.settings, false)
        }
    }
}
