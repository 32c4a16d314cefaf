//! The `dossier` command line.

mod bootstrap;
mod builtins;
mod commands;
mod connectors;
mod demo;
mod logs;
mod metrics;
mod progress;
mod scheduling;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use builtins::builtin_registry;

/// Dossier: customer data from your databases and shops, in one contact + session model,
/// served over GraphQL.
#[derive(Debug, Parser)]
#[command(name = "dossier", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The plugin directory (installed connector plugins); default: `plugins` beside the
    /// config file.
    #[arg(long, global = true, env = "DOSSIER_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a sample shop, sync it into the embedded store and serve GraphQL.
    Demo {
        /// Where the shop file, the config and the store go.
        #[arg(long, default_value = "./dossier-demo")]
        dir: PathBuf,
        /// Address to serve GraphQL on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Prepare and sync, then exit without serving.
        #[arg(long)]
        no_serve: bool,
        /// Number of customers to generate (orders and conversations scale with it).
        #[arg(long, default_value_t = 10_000)]
        customers: u32,
    },
    /// Serve GraphQL and run scheduled syncs.
    Serve {
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Overrides `server.listen` from the config.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the scheduler alone (no GraphQL): with a PostgreSQL store, any number of workers
    /// on any number of machines share the schedule.
    Worker {
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Also serve Prometheus `/metrics` on this address, e.g. `127.0.0.1:9187`.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Show each source's schedule and health (paused, running, failing, last error).
    Sources {
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Pause a source: no scheduled or manual runs until it is resumed.
    Pause {
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Resume a paused source.
    Resume {
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Stop a source's running sync at its next batch (committed batches stay).
    Cancel {
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Sync one source now.
    Sync {
        /// The source's name in the config.
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Only these streams (repeatable).
        #[arg(long = "stream")]
        streams: Vec<String>,
        /// Print the run summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that a source can be reached and its mappings fit its streams.
    Check {
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// List a source's streams, fields, primary keys and cursor candidates.
    Discover {
        source: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Run one GraphQL document against the configured store and print the JSON result.
    Query {
        /// The GraphQL document.
        document: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Variables as a JSON object.
        #[arg(long)]
        variables: Option<String>,
    },
    /// List, install and remove connectors (built-ins and plugins).
    Connectors {
        #[command(subcommand)]
        action: ConnectorsCommand,
    },
    /// Create, list and revoke the gateway's API keys.
    Keys {
        #[command(subcommand)]
        action: KeysCommand,
        #[arg(
            long,
            short,
            env = "DOSSIER_CONFIG",
            default_value = "dossier.toml",
            global = true
        )]
        config: PathBuf,
    },
    /// List past sync runs.
    Runs {
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Only runs of this source.
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ConnectorsCommand {
    /// List the built-in connectors and the installed plugins, with their versions.
    List {
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a connector plugin: copy the library into the plugin directory, check it
    /// (ABI, manifest, sha256) and record it; or a Python package, `airbyte:source-faker==7.2.1`
    /// or `singer:tap-<name>==<version>`, into a virtual environment of its own with pip
    /// (pip's settings apply: PIP_INDEX_URL, PIP_FIND_LINKS, ...). `serve` and `sync` load
    /// it when they start.
    Install {
        /// The plugin library (`.so`, `.dylib`, `.dll`), or `airbyte:<package>==<version>`,
        /// `singer:<package>==<version>`.
        path: PathBuf,
        /// Refuse the file unless its sha256 (hex) is this (libraries only; pip checks the
        /// packages it downloads).
        #[arg(long)]
        sha256: Option<String>,
        /// The Python that creates a package's virtual environment.
        #[arg(long, default_value = "python3")]
        python: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
    /// Remove an installed plugin or package.
    Remove {
        /// The connector's name.
        name: String,
        #[arg(long, short, env = "DOSSIER_CONFIG", default_value = "dossier.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (shown only once; the store keeps a hash).
    Create {
        /// The workspace the key sees (default: the config's).
        #[arg(long)]
        workspace: Option<String>,
        /// `read` (contacts, sessions), `write` (also set data, trigger syncs) or `admin`
        /// (also sources, connectors, rules, keys).
        #[arg(long)]
        role: String,
        /// A label for lists, e.g. the tool that uses the key.
        #[arg(long, default_value = "")]
        name: String,
        /// Expire the key after this long, e.g. `30d` or `12h`.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        /// Only keys of this workspace.
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key's id (as `keys list` shows) or the key itself.
        id: String,
    },
}

/// Runs the CLI; errors print what is wrong and what to do, with a non-zero exit.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logs::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let plugins =
        |config: &std::path::Path| connectors::plugin_dir(cli.plugin_dir.as_deref(), config);
    match cli.command {
        Command::Demo {
            dir,
            listen,
            no_serve,
            customers,
        } => {
            let plugins = plugins(&dir.join("dossier.toml"));
            demo::run(&dir, &listen, no_serve, customers, &plugins).await
        }
        Command::Serve { config, listen } => {
            commands::serve(&config, &plugins(&config), listen).await
        }
        Command::Sync {
            source,
            config,
            streams,
            json,
        } => commands::sync(&config, &plugins(&config), &source, &streams, json).await,
        Command::Worker {
            config,
            metrics_listen,
        } => scheduling::worker(&config, &plugins(&config), metrics_listen.as_deref()).await,
        Command::Sources { config } => scheduling::sources(&config, &plugins(&config)).await,
        Command::Pause { source, config } => {
            scheduling::source_action(
                &config,
                &plugins(&config),
                &source,
                scheduling::SourceAction::Pause,
            )
            .await
        }
        Command::Resume { source, config } => {
            scheduling::source_action(
                &config,
                &plugins(&config),
                &source,
                scheduling::SourceAction::Resume,
            )
            .await
        }
        Command::Cancel { source, config } => {
            scheduling::source_action(
                &config,
                &plugins(&config),
                &source,
                scheduling::SourceAction::Cancel,
            )
            .await
        }
        Command::Check { source, config } => {
            commands::check(&config, &plugins(&config), &source).await
        }
        Command::Discover { source, config } => {
            commands::discover(&config, &plugins(&config), &source).await
        }
        Command::Schema => {
            print!("{}", dossier_gateway::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            document,
            config,
            variables,
        } => commands::query(&config, &plugins(&config), &document, variables.as_deref()).await,
        Command::Runs {
            config,
            source,
            limit,
        } => commands::runs(&config, &plugins(&config), source.as_deref(), limit).await,
        Command::Connectors { action } => match action {
            ConnectorsCommand::List { config, json } => connectors::list(&plugins(&config), json),
            ConnectorsCommand::Install {
                path,
                sha256,
                python,
                config,
            } => connectors::install(&plugins(&config), &path, sha256.as_deref(), &python),
            ConnectorsCommand::Remove { name, config } => {
                connectors::remove(&plugins(&config), &name)
            }
        },
        Command::Keys { action, config } => match action {
            KeysCommand::Create {
                workspace,
                role,
                name,
                expires_in,
            } => {
                commands::keys_create(
                    &config,
                    &plugins(&config),
                    workspace.as_deref(),
                    &role,
                    &name,
                    expires_in.as_deref(),
                )
                .await
            }
            KeysCommand::List { workspace } => {
                commands::keys_list(&config, &plugins(&config), workspace.as_deref()).await
            }
            KeysCommand::Revoke { id } => {
                commands::keys_revoke(&config, &plugins(&config), &id).await
            }
        },
    }
}
