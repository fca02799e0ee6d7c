//! The `warren-cli` binary: arguments → a multi-threaded tokio runtime → the command's
//! library code (`warren_client::cli`) → its output on stdout, errors on stderr.

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use warren_client::cli::{self, Cli};
use warren_client::Error;

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
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut output = stdout.lock();
    let result = runtime.block_on(cli::run(&cli, &mut input, &mut output));
    let _ = output.flush();
    // lapin's I/O threads have finished with the connections closed; don't wait on
    // anything a library may have left behind.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `warren-cli consume q | head`: the reader has what it wanted.
        Err(Error::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
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
