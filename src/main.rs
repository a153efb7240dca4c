//! The `switchboard` command line: parse, dispatch.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use switchboard::api::crds::{self, Kind};
use switchboard::api::validation::UrlPolicy;
use switchboard::check::{self, load};
use switchboard::controller::{self, ControllerArgs};
use switchboard::gateway::{self, GatewayArgs};
use switchboard::local::{self, RunGatewayArgs};
use switchboard::shutdown;
use switchboard::simulator::cli::{self as simulate, SimulateArgs};

/// Switchboard: customer-service messaging channels (LINE, WhatsApp through Twilio) as
/// Kubernetes resources.
#[derive(Parser)]
#[command(name = "switchboard", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the four CustomResourceDefinitions as YAML, or write one file per kind.
    Crd {
        /// Write <kind>.yaml files into this folder instead of printing.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Validate manifests offline: schema, CEL rules, semantic checks and references.
    Check {
        /// Manifest files or folders (a folder's .yaml, .yml and .json files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also read the subfolders of folders.
        #[arg(long, short = 'r')]
        recursive: bool,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Accept http:// webhook URLs on loopback hosts (local development).
        #[arg(long)]
        allow_http_loopback: bool,
        /// Do not report references to objects outside the checked files.
        #[arg(long)]
        allow_external_refs: bool,
    },
    /// Run the operator: reconcile MessagingAccounts and MessageTemplates until SIGTERM.
    Controller {
        #[command(flatten)]
        args: Box<ControllerArgs>,
        /// Log format.
        #[arg(long, value_enum, env = "SWITCHBOARD_LOG_FORMAT", default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run an account's gateway: verified webhooks in, conversations routed, work to the desk.
    Gateway {
        #[command(flatten)]
        args: Box<GatewayArgs>,
        /// Log format.
        #[arg(long, value_enum, env = "SWITCHBOARD_LOG_FORMAT", default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Run a local, stateful LINE and Twilio API simulator for development, tests and demos.
    Simulate(Box<SimulateArgs>),
    /// Run an account's gateway on this machine exactly as the controller rendered it (for a
    /// cluster without nodes: the quick start and the local demo).
    RunGateway(Box<RunGatewayArgs>),
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr; RUST_LOG overrides the default level.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    // The PostgreSQL client logs each statement with its parameters (customers' messages) at
    // debug: it stays at info unless RUST_LOG names it.
    let names_sql = std::env::var("RUST_LOG").is_ok_and(|v| v.contains("tokio_postgres"));
    let filter = if names_sql { filter } else { filter.add_directive("tokio_postgres=info".parse().expect("a valid directive")) };
    // Colours only for a person at a terminal; `kubectl logs` and log files get plain text.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { dir: None } => {
            print!("{}", crds::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Crd { dir: Some(dir) } => {
            for kind in Kind::ALL {
                let path = dir.join(kind.file_name());
                if let Err(e) = std::fs::write(&path, crds::to_yaml(kind)) {
                    eprintln!("error: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Check { paths, recursive, output, allow_http_loopback, allow_external_refs } => {
            let options = check::Options {
                policy: UrlPolicy { allow_http_loopback },
                external_refs_allowed: allow_external_refs,
            };
            let documents = load::manifest_files(&paths, recursive).and_then(|files| {
                files.iter().map(|f| load::read_documents(f)).collect::<Result<Vec<_>, _>>().map(|d| d.into_iter().flatten().collect())
            });
            let documents = match documents {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = check::check(documents, options);
            match output {
                Output::Text => {
                    for p in &report.problems {
                        println!("{p}");
                    }
                    for size in &report.configurations {
                        eprintln!("check: {size}");
                    }
                }
                Output::Json => println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes")),
            }
            if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Command::Controller { args, log_format } => serve("controller", log_format, controller::run(*args, shutdown::signal())),
        Command::Gateway { args, log_format } => serve("gateway", log_format, gateway::run(*args, shutdown::signal())),
        Command::RunGateway(args) => serve("run-gateway", LogFormat::Text, local::run(*args, shutdown::signal())),
        Command::Simulate(args) => match simulate::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Runs a long-lived process (controller or gateway) on a multi-threaded runtime until it ends.
fn serve<E: std::fmt::Display>(name: &str, log_format: LogFormat, process: impl std::future::Future<Output = Result<(), E>>) -> ExitCode {
    init_logging(log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(process) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            ExitCode::from(2)
        }
    }
}
