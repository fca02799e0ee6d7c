//! `warren-cli definitions`: export (GET /api/definitions), import (POST /api/definitions;
//! the broker validates against what it has) and validate (offline, with
//! `warren-definitions`, the file on its own).

use super::http::{encode_segment, Management};
use super::write_failed;
use crate::error::Error;
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use warren_definitions::Definitions;

#[derive(Debug, Subcommand)]
pub enum DefinitionsCommand {
    /// Write the broker's definitions (RabbitMQ JSON) to a file or stdout.
    Export {
        /// Only this vhost's definitions.
        #[arg(long)]
        vhost: Option<String>,
        /// The file to write (stdout without it).
        #[arg(long, short)]
        file: Option<PathBuf>,
    },
    /// Load a definitions file into the broker (which validates it first and reports every
    /// problem).
    Import {
        file: PathBuf,
        /// Import into this vhost only (objects without a vhost go there).
        #[arg(long)]
        vhost: Option<String>,
    },
    /// Check a definitions file offline: every problem with its JSON path.
    Validate { file: PathBuf },
}

pub async fn run(
    what: &DefinitionsCommand,
    management: impl FnOnce() -> Result<Management, Error>,
    output: &mut dyn Write,
) -> Result<(), Error> {
    match what {
        DefinitionsCommand::Export { vhost, file } => {
            let path = match vhost {
                Some(vhost) => format!("/api/definitions/{}", encode_segment(vhost)),
                None => "/api/definitions".to_string(),
            };
            let json = management()?.get(&path).await?;
            let text = serde_json::to_string_pretty(&json).map_err(|source| Error::Json {
                context: "printing the definitions".into(),
                source,
            })?;
            match file {
                Some(file) => {
                    std::fs::write(file, format!("{text}\n")).map_err(|e| {
                        Error::Other(format!("cannot write {}: {e}", file.display()))
                    })?;
                    writeln!(output, "exported definitions to {}", file.display())
                        .map_err(write_failed)
                }
                None => writeln!(output, "{text}").map_err(write_failed),
            }
        }
        DefinitionsCommand::Import { file, vhost } => {
            // Parsed here; validated by the broker, which knows what already exists (a file
            // may refer to the broker's vhosts and users) and answers every problem.
            let (text, definitions) = parse(file)?;
            let path = match vhost {
                Some(vhost) => format!("/api/definitions/{}", encode_segment(vhost)),
                None => "/api/definitions".to_string(),
            };
            management()?.post(&path, text).await?;
            writeln!(
                output,
                "imported {} ({})",
                file.display(),
                summary(&definitions)
            )
            .map_err(write_failed)
        }
        DefinitionsCommand::Validate { file } => {
            let (_, definitions) = load(file)?;
            writeln!(
                output,
                "{}: valid ({})",
                file.display(),
                summary(&definitions)
            )
            .map_err(write_failed)
        }
    }
}

/// Reads and parses `file`.
fn parse(file: &Path) -> Result<(String, Definitions), Error> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", file.display())))?;
    let definitions = Definitions::from_json(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", file.display())))?;
    Ok((text, definitions))
}

/// Reads, parses and validates `file` on its own; every problem is listed in the error.
pub fn load(file: &Path) -> Result<(String, Definitions), Error> {
    let (text, definitions) = parse(file)?;
    if let Err(problems) = definitions.validate() {
        let mut report = format!(
            "{}: {} problem{}:",
            file.display(),
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for problem in &problems {
            report.push_str(&format!("\n  {problem}"));
        }
        return Err(Error::Other(report));
    }
    Ok((text, definitions))
}

fn summary(d: &Definitions) -> String {
    format!(
        "{} users, {} vhosts, {} permissions, {} exchanges, {} queues, {} bindings, {} policies",
        d.users.len(),
        d.vhosts.len(),
        d.permissions.len(),
        d.exchanges.len(),
        d.queues.len(),
        d.bindings.len(),
        d.policies.len()
    )
}
