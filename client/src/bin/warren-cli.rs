//! The `warren-cli` binary: arguments → a multi-threaded tokio runtime → the command's
//! library code → its output on stdout, errors on stderr.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use warren_client::perf::PerfOptions;
use warren_client::{Error, DEFAULT_URL};

/// Warren's command-line tool: talks AMQP 0-9-1 to Warren (or any RabbitMQ-compatible broker).
#[derive(Debug, Parser)]
#[command(name = "warren-cli", version)]
struct Cli {
    /// The broker to connect to.
    #[arg(long, env = "WARREN_URL", default_value = DEFAULT_URL, global = true)]
    url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load generator: producers and consumers against queues, printing throughput and
    /// latency percentiles (in the spirit of RabbitMQ's PerfTest).
    Perf(PerfOptions),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warren-cli: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Perf(options) => perf(&cli.url, options).await,
        }
    });
    // lapin's I/O threads have finished with the connections closed; don't wait on
    // anything a library may have left behind.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ Error::Usage(_)) => {
            eprintln!("warren-cli: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("warren-cli: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn perf(url: &str, options: &PerfOptions) -> Result<(), Error> {
    let plan = options.plan()?;
    let summary = warren_client::perf::run(url, &plan).await?;
    if options.json {
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| Error::Other(format!("cannot encode the summary: {e}")))?;
        println!("{json}");
    } else {
        print!("{summary}");
    }
    Ok(())
}
