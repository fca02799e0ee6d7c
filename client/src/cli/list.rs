//! `warren-cli list`: queues, exchanges, bindings or connections from the management API,
//! as an aligned table or as the API's JSON.

use super::http::{encode_segment, Management};
use super::write_failed;
use crate::error::Error;
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Listing {
    Queues,
    Exchanges,
    Bindings,
    Connections,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    pub what: Listing,
    /// Only this vhost (all vhosts the user can see by default).
    #[arg(long)]
    pub vhost: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Listing {
    fn path(self) -> &'static str {
        match self {
            Listing::Queues => "queues",
            Listing::Exchanges => "exchanges",
            Listing::Bindings => "bindings",
            Listing::Connections => "connections",
        }
    }

    /// Column headings and the JSON fields (a `/` path into nested objects) they show.
    fn columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Listing::Queues => &[
                ("vhost", "vhost"),
                ("name", "name"),
                ("messages", "messages"),
                ("ready", "messages_ready"),
                ("unacked", "messages_unacknowledged"),
                ("consumers", "consumers"),
                ("durable", "durable"),
            ],
            Listing::Exchanges => &[
                ("vhost", "vhost"),
                ("name", "name"),
                ("type", "type"),
                ("durable", "durable"),
                ("auto_delete", "auto_delete"),
            ],
            Listing::Bindings => &[
                ("vhost", "vhost"),
                ("source", "source"),
                ("destination", "destination"),
                ("type", "destination_type"),
                ("routing_key", "routing_key"),
            ],
            Listing::Connections => &[
                ("name", "name"),
                ("user", "user"),
                ("vhost", "vhost"),
                ("peer", "peer_host"),
                ("channels", "channels"),
                ("state", "state"),
                ("client", "client_properties/connection_name"),
            ],
        }
    }
}

pub async fn run(
    management: &Management,
    args: &ListArgs,
    output: &mut dyn Write,
) -> Result<(), Error> {
    let path = match &args.vhost {
        Some(vhost) => format!("/api/{}/{}", args.what.path(), encode_segment(vhost)),
        None => format!("/api/{}", args.what.path()),
    };
    let list = management.get(&path).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&list).map_err(|source| Error::Json {
            context: "printing the list".into(),
            source,
        })?;
        return writeln!(output, "{text}").map_err(write_failed);
    }
    let Value::Array(items) = list else {
        return Err(Error::Other(format!("GET {path}: expected a JSON list")));
    };
    let columns = args.what.columns();
    let mut rows: Vec<Vec<String>> = vec![columns.iter().map(|(h, _)| h.to_string()).collect()];
    for item in &items {
        rows.push(columns.iter().map(|(_, field)| cell(item, field)).collect());
    }
    write_table(&rows, output)
}

fn cell(item: &Value, field: &str) -> String {
    let mut value = item;
    for key in field.split('/') {
        value = match value.get(key) {
            Some(v) => v,
            None => return String::new(),
        };
    }
    match value {
        Value::String(s) if s.is_empty() => "(default)".into(),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Rows as columns padded to their widest cell.
fn write_table(rows: &[Vec<String>], output: &mut dyn Write) -> Result<(), Error> {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        writeln!(output, "{}", line.trim_end()).map_err(write_failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_are_aligned_and_nested_fields_read() {
        let item = json!({"name": "", "client_properties": {"connection_name": "app"}});
        assert_eq!(cell(&item, "name"), "(default)");
        assert_eq!(cell(&item, "client_properties/connection_name"), "app");
        assert_eq!(cell(&item, "missing/field"), "");
        let rows = vec![
            vec!["name".to_string(), "messages".to_string()],
            vec!["orders".to_string(), "12".to_string()],
        ];
        let mut out = Vec::new();
        write_table(&rows, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name    messages\norders  12\n"
        );
    }
}
