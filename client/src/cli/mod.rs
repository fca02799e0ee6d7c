//! `warren-cli`'s commands as library code: [`Cli`] is the argument parser, [`run`] runs a
//! parsed command, reading message bodies from `input` and writing results to `output`
//! (the binary passes stdin and stdout; tests pass buffers).
//!
//! AMQP commands (publish, consume, declare, delete, purge) connect to `--url`; the
//! management commands (list, definitions export/import) talk to the HTTP API at
//! `--http-url`, by default the AMQP URL's host and user on port 15672.

pub mod amqp;
pub mod definitions;
pub mod http;
pub mod list;

use crate::error::Error;
use crate::perf::PerfOptions;
use crate::DEFAULT_URL;
use clap::{Parser, Subcommand};
use std::io::{BufRead, Write};

/// Warren's command-line tool: talks AMQP 0-9-1 and the management HTTP API to Warren (or
/// any RabbitMQ-compatible broker).
#[derive(Debug, Parser)]
#[command(name = "warren-cli", version)]
pub struct Cli {
    /// The broker to connect to.
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL, global = true)]
    pub url: String,
    /// The management HTTP API [default: the --url host and user, port 15672].
    #[arg(long, env = "WARREN_HTTP_URL", global = true)]
    pub http_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish messages: the --body, or stdin (one message, or one per line with --lines).
    Publish(amqp::PublishArgs),
    /// Print (and take) messages from a queue: bodies one per line, or JSON lines.
    Consume(amqp::ConsumeArgs),
    /// Declare an exchange, a queue or a binding.
    Declare {
        #[command(subcommand)]
        what: amqp::DeclareCommand,
    },
    /// Delete an exchange, a queue or a binding.
    Delete {
        #[command(subcommand)]
        what: amqp::DeleteCommand,
    },
    /// Remove every ready message from a queue.
    Purge(amqp::PurgeArgs),
    /// Export, import or validate definitions (RabbitMQ's JSON format).
    Definitions {
        #[command(subcommand)]
        what: definitions::DefinitionsCommand,
    },
    /// List queues, exchanges, bindings or connections (through the management API).
    List(list::ListArgs),
    /// Load generator: producers and consumers against queues, printing throughput and
    /// latency percentiles (in the spirit of RabbitMQ's PerfTest).
    Perf(PerfOptions),
}

/// Runs `cli`'s command.
pub async fn run(cli: &Cli, input: &mut dyn BufRead, output: &mut dyn Write) -> Result<(), Error> {
    let url = cli.url.as_str();
    let management = || http::Management::locate(cli.http_url.as_deref(), url);
    match &cli.command {
        Command::Publish(args) => amqp::publish(url, args, input, output).await,
        Command::Consume(args) => amqp::consume(url, args, output).await,
        Command::Declare { what } => amqp::declare(url, what, output).await,
        Command::Delete { what } => amqp::delete(url, what, output).await,
        Command::Purge(args) => amqp::purge(url, args, output).await,
        Command::Definitions { what } => definitions::run(what, management, output).await,
        Command::List(args) => list::run(&management()?, args, output).await,
        Command::Perf(options) => perf(url, options, output).await,
    }
}

/// Parses `args` (the program name first) and runs the command: what tests call.
pub async fn run_args<I, T>(
    args: I,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> Result<(), Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| Error::Usage(e.to_string()))?;
    run(&cli, input, output).await
}

async fn perf(url: &str, options: &PerfOptions, output: &mut dyn Write) -> Result<(), Error> {
    let plan = options.plan()?;
    let summary = crate::perf::run(url, &plan).await?;
    if options.json {
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::Other(format!("cannot encode the summary: {e}")))?;
        writeln!(output, "{json}").map_err(write_failed)?;
    } else {
        write!(output, "{summary}").map_err(write_failed)?;
    }
    Ok(())
}

/// The output could not be written (a closed pipe, a full disk).
pub(crate) fn write_failed(error: std::io::Error) -> Error {
    Error::Output(error)
}
