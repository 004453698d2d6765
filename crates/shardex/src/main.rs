//! The shardex binary: the composition root. Parses the command line and wires the adapters
//! to the core; `anyhow` lives only here.

#[macro_use]
mod out;

mod agent;
mod broker;
mod check;
mod client;
mod config;
mod ctl;
mod frontier;
mod guest;
mod hook;
mod launch;
mod load;
mod machine;
mod migrate;
mod plot;
mod progress;
mod provision;
mod replay;
mod run;
mod simulate;
mod trace;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc: per-thread free lists suit the daemon's many small, short-lived allocations.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// shardex: turns a host's capacity into small shards and moves them between workloads before
/// they need them.
#[derive(Debug, Parser)]
#[command(name = "shardex", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this host (ledger, API) with the embedded store, until Ctrl-C.
    Run(RunArgs),
    /// Fleet mode: the API, market and periodic work over a PostgreSQL database shared with
    /// other brokers, until Ctrl-C.
    Broker(broker::BrokerArgs),
    /// Fleet mode, on each host: register with the brokers, sample this host's workloads,
    /// apply and read back their limits, and report, until Ctrl-C.
    Agent(agent::AgentArgs),
    /// Inspect and verify the ledger.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// Replay a recorded trace through every allocation policy and compare them.
    Replay(replay::ReplayArgs),
    /// Run the whole system (engine, marketplace, ledger) over a recorded trace and count the
    /// hosts it needs against static reservations.
    Simulate(simulate::SimulateArgs),
    /// Ask the configured provisioner for a host, once, and print its answer (to check a
    /// provisioner hook before the engine relies on it).
    Provisioner {
        #[command(subcommand)]
        command: ProvisionerCommand,
    },
    /// Run a synthetic workload: busy cpu and resident memory in steps (to try shardex on a
    /// host, and for its closed-loop tests).
    Load(load::LoadArgs),
    /// Run a command under shardex, like systemd-run: in a new managed cgroup, inside a
    /// reservation (an existing one or one made for it); its exit status is passed on.
    Launch(launch::LaunchArgs),
    /// Inside a VM: sample its processes and stream them to the host's shardex over a
    /// virtio-serial port, so the VM's forecast sees what its applications use.
    Guest(guest::GuestArgs),
    /// Put workloads under shardex, see them, take them out.
    Workload {
        #[command(subcommand)]
        command: workload::WorkloadCommand,
    },
    /// Talk to a running shardex as a tenant or the admin: reservations, modifications,
    /// quotes, tokens, invoices (kubectl-like).
    Ctl(ctl::CtlArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Rebuild the ledger from its log and verify every invariant; exit 1 if one is broken.
    Check(DataArgs),
    /// Print a tenant's invoice: metered charges and lending credits, with line items.
    Invoice {
        #[command(flatten)]
        data: DataArgs,
        /// The tenant's name.
        #[arg(long, value_name = "NAME")]
        tenant: String,
        /// Only the last DURATION up to the ledger's time (e.g. 30d) [default: all].
        #[arg(long, value_name = "DURATION")]
        period: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ProvisionerCommand {
    /// Request one host with room for the given shards.
    Try {
        #[command(flatten)]
        data: DataArgs,
        /// CPU shards the host must have room for.
        #[arg(long, default_value_t = 1)]
        cpu: u64,
        /// Memory shards the host must have room for.
        #[arg(long, default_value_t = 0)]
        memory: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the default configuration, every key documented.
    Defaults,
    /// Read and validate the configuration, and print it with defaults filled in.
    Check(DataArgs),
}

/// Where the data and the configuration are.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Data folder (created if missing).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "shardex-data",
        env = "SHARDEX_DATA"
    )]
    pub data: PathBuf,
    /// Configuration file [default: shardex.toml beside the data folder, if present].
    #[arg(long, value_name = "FILE", env = "SHARDEX_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DataArgs {
    /// `shardex.toml` beside the data folder.
    pub fn default_config_path(&self) -> PathBuf {
        self.data
            .parent()
            .map_or_else(|| PathBuf::from("shardex.toml"), |p| p.join("shardex.toml"))
    }

    /// The ledger database inside the data folder.
    pub fn ledger_path(&self) -> PathBuf {
        self.data.join("ledger.db")
    }

    /// Loads the configuration these arguments point at.
    pub fn load_config(&self) -> anyhow::Result<config::Config> {
        let (config, _) =
            config::Config::load(self.config.as_deref(), &self.default_config_path())?;
        Ok(config)
    }
}

/// Arguments of `shardex run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address for the API [default: api.listen of the configuration, 127.0.0.1:7070].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// Log lines for people (`human`) or one JSON object each (`json`), on standard error.
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SHARDEX_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
}

/// How `shardex run` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// A line of text per event, with the span (a request's id) in front.
    Human,
    /// A JSON object per line, with the span's fields (a request's `request_id`) in `span`.
    Json,
}

fn provisioner_try(data: &DataArgs, cpu: u64, memory: u64) -> anyhow::Result<ExitCode> {
    let config = data.load_config()?;
    let mut p = config.provisioner.build(&config.shards);
    let request = shardex_core::ports::ProvisionRequest {
        reason: "a trial from `shardex provisioner try`".into(),
        short_host: shardex_core::HostId(0),
        needs: shardex_core::ShardVector::new(cpu, memory, 0, 0),
    };
    let host = p.provision(&request)?;
    outln!("{}", serde_json::to_string_pretty(&host)?);
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Broker(args) => broker::broker(args),
        Command::Agent(args) => agent::agent(args),
        Command::Replay(args) => replay::replay(&args),
        Command::Simulate(args) => simulate::simulate(&args),
        Command::Load(args) => load::load(&args),
        Command::Launch(args) => launch::launch(&args),
        Command::Guest(args) => guest::guest(&args),
        Command::Workload { command } => workload::workload(command),
        Command::Ctl(args) => ctl::ctl(args).map(|()| ExitCode::SUCCESS),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "shardex", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ledger {
            command: LedgerCommand::Check(args),
        } => check::check(&args),
        Command::Ledger {
            command:
                LedgerCommand::Invoice {
                    data,
                    tenant,
                    period,
                },
        } => check::invoice(&data, &tenant, period.as_deref()),
        Command::Provisioner {
            command: ProvisionerCommand::Try { data, cpu, memory },
        } => provisioner_try(&data, cpu, memory),
        Command::Config {
            command: ConfigCommand::Defaults,
        } => {
            out!("{}", config::DEFAULT_TOML);
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check(args),
        } => check::config(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
