//! warren-cli against an in-process broker (AMQP and management HTTP): the commands as
//! library calls with captured output, and the built binary for exit codes, stderr,
//! `--help` and `WARREN_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{within, TestBroker};
use serde_json::Value;
use std::process::Output;
use warren_client::cli::run_args;

/// Runs `warren-cli ARGS` in-process against `broker` with `stdin`; its output or error.
async fn cli(broker: &TestBroker, args: &[&str], stdin: &str) -> Result<String, String> {
    let url = broker.url();
    let http_url = broker.http_url();
    let mut argv = vec!["warren-cli", "--url", &url, "--http-url", &http_url];
    argv.extend_from_slice(args);
    let mut input = stdin.as_bytes();
    let mut output = Vec::new();
    let result = within(run_args(argv, &mut input, &mut output)).await;
    let text = String::from_utf8(output).unwrap();
    result.map(|()| text).map_err(|e| e.to_string())
}

async fn ok(broker: &TestBroker, args: &[&str]) -> String {
    cli(broker, args, "").await.unwrap()
}

async fn fails(broker: &TestBroker, args: &[&str]) -> String {
    cli(broker, args, "").await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_publish_consume_purge_and_delete() {
    let broker = TestBroker::start().await;
    let out = ok(&broker, &["declare", "exchange", "logs", "--type", "topic"]).await;
    assert_eq!(out, "declared topic exchange 'logs'\n");
    let out = ok(&broker, &["declare", "queue", "logs.errors"]).await;
    assert_eq!(
        out,
        "declared queue 'logs.errors' (0 messages, 0 consumers)\n"
    );
    let out = ok(
        &broker,
        &["declare", "binding", "logs", "logs.errors", "-k", "*.error"],
    )
    .await;
    assert!(
        out.starts_with("bound queue 'logs.errors' to exchange 'logs'"),
        "{out}"
    );

    let out = ok(
        &broker,
        &[
            "publish",
            "-e",
            "logs",
            "-k",
            "app.error",
            "--body",
            "disk full",
            "--repeat",
            "3",
        ],
    )
    .await;
    assert_eq!(
        out,
        "published 3 messages to exchange 'logs' with routing key 'app.error'\n"
    );
    // Not matching the binding: dropped by the broker, still confirmed.
    ok(
        &broker,
        &["publish", "-e", "logs", "-k", "app.info", "--body", "fine"],
    )
    .await;
    assert_eq!(broker.ready("logs.errors").await, 3);

    let out = ok(&broker, &["consume", "logs.errors", "--count", "2"]).await;
    assert_eq!(out, "disk full\ndisk full\n");
    let out = ok(&broker, &["purge", "logs.errors"]).await;
    assert_eq!(out, "purged 1 message from queue 'logs.errors'\n");

    ok(
        &broker,
        &["delete", "binding", "logs", "logs.errors", "-k", "*.error"],
    )
    .await;
    ok(
        &broker,
        &["publish", "-e", "logs", "-k", "app.error", "--body", "x"],
    )
    .await;
    assert_eq!(broker.ready("logs.errors").await, 0, "unbound");
    let out = ok(&broker, &["delete", "queue", "logs.errors"]).await;
    assert_eq!(out, "deleted queue 'logs.errors' (0 messages)\n");
    let out = ok(&broker, &["delete", "exchange", "logs"]).await;
    assert_eq!(out, "deleted exchange 'logs'\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_from_stdin_become_messages_and_consume_prints_json_lines() {
    let broker = TestBroker::start().await;
    ok(&broker, &["declare", "queue", "inbox"]).await;
    let out = cli(
        &broker,
        &[
            "publish",
            "-k",
            "inbox",
            "--lines",
            "-H",
            "source=cli",
            "-H",
            "n=7",
            "--transient",
        ],
        "first\nsecond\n",
    )
    .await
    .unwrap();
    assert_eq!(out, "published 2 messages to queue 'inbox'\n");
    let out = ok(
        &broker,
        &[
            "consume",
            "inbox",
            "--format",
            "json",
            "--idle-timeout",
            "0.5",
        ],
    )
    .await;
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["body"], "first");
    assert_eq!(lines[1]["body"], "second");
    assert_eq!(lines[0]["routing_key"], "inbox");
    assert_eq!(lines[0]["properties"]["headers"]["source"], "cli");
    assert_eq!(lines[0]["properties"]["headers"]["n"], 7);
    assert_eq!(lines[0]["properties"]["delivery_mode"], 1);
    assert_eq!(
        broker.ready("inbox").await,
        0,
        "consumed messages are acked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_with_requeue_leaves_the_messages_in_the_queue() {
    let broker = TestBroker::start().await;
    ok(&broker, &["declare", "queue", "peek"]).await;
    ok(
        &broker,
        &["publish", "-k", "peek", "--body", "look", "--repeat", "2"],
    )
    .await;
    let out = ok(&broker, &["consume", "peek", "-n", "2", "--requeue"]).await;
    assert_eq!(out, "look\nlook\n");
    assert_eq!(broker.ready("peek").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_errors_are_shown_in_the_brokers_words() {
    let broker = TestBroker::start().await;
    ok(&broker, &["declare", "queue", "busy"]).await;
    ok(&broker, &["publish", "-k", "busy", "--body", "x"]).await;
    let error = fails(&broker, &["delete", "queue", "busy", "--if-empty"]).await;
    assert!(
        error.starts_with("deleting queue 'busy': PRECONDITION_FAILED"),
        "{error}"
    );
    assert!(error.contains("(406)"), "{error}");
    let error = fails(&broker, &["declare", "binding", "nowhere", "busy"]).await;
    assert!(
        error.contains("NOT_FOUND - no exchange 'nowhere'"),
        "{error}"
    );
    assert!(error.contains("(404)"), "{error}");
    let error = fails(&broker, &["consume", "missing", "-n", "1"]).await;
    assert!(error.contains("NOT_FOUND - no queue 'missing'"), "{error}");
    let error = fails(
        &broker,
        &[
            "publish",
            "-e",
            "amq.direct",
            "-k",
            "nobody",
            "--mandatory",
            "--body",
            "x",
        ],
    )
    .await;
    assert!(error.contains("returned unroutable: NO_ROUTE"), "{error}");
    let error = fails(&broker, &["declare", "queue", "q", "-a", "broken"]).await;
    assert!(error.contains("--argument expects KEY=VALUE"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_queues_exchanges_and_bindings_from_the_management_api() {
    let broker = TestBroker::start().await;
    ok(
        &broker,
        &["declare", "exchange", "orders", "--type", "fanout"],
    )
    .await;
    ok(&broker, &["declare", "queue", "orders.audit"]).await;
    ok(&broker, &["declare", "binding", "orders", "orders.audit"]).await;
    ok(
        &broker,
        &["publish", "-e", "orders", "--body", "o-1", "--repeat", "4"],
    )
    .await;

    let out = ok(&broker, &["list", "queues"]).await;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "vhost",
            "name",
            "messages",
            "ready",
            "unacked",
            "consumers",
            "durable"
        ]
    );
    let row: Vec<&str> = lines
        .find(|l| l.contains("orders.audit"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["/", "orders.audit", "4", "4", "0", "0", "true"]);

    let out = ok(&broker, &["list", "exchanges", "--vhost", "/"]).await;
    assert!(
        out.lines().any(|l| l
            .split_whitespace()
            .eq(["/", "orders", "fanout", "true", "false"])),
        "{out}"
    );
    assert!(
        out.contains("(default)"),
        "the default exchange is shown: {out}"
    );
    let out = ok(&broker, &["list", "bindings", "--json"]).await;
    let bindings: Value = serde_json::from_str(&out).unwrap();
    assert!(bindings
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["source"] == "orders" && b["destination"] == "orders.audit"));

    let error = fails(&broker, &["list", "queues", "--vhost", "nope"]).await;
    assert_eq!(error, "GET /api/queues/nope: HTTP 404: Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_connections_shows_the_open_connections() {
    let broker = TestBroker::start().await;
    let _connection = broker.connect().await;
    let out = ok(&broker, &["list", "connections"]).await;
    assert!(out.lines().count() >= 2, "{out}");
    assert!(out.contains("guest"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_to_a_file_that_validates_offline() {
    let broker = TestBroker::start().await;
    ok(
        &broker,
        &["declare", "exchange", "billing", "--type", "direct"],
    )
    .await;
    ok(&broker, &["declare", "queue", "invoices"]).await;
    ok(
        &broker,
        &["declare", "binding", "billing", "invoices", "-k", "invoice"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    let out = ok(&broker, &["definitions", "export", "--file", file]).await;
    assert_eq!(out, format!("exported definitions to {file}\n"));
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(exported["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "invoices"));
    // Validation needs no broker.
    let out = warren_client::cli::run_args(
        [
            "warren-cli",
            "--http-url",
            "http://127.0.0.1:1",
            "definitions",
            "validate",
            file,
        ],
        &mut &b""[..],
        &mut Vec::new(),
    )
    .await;
    out.unwrap();
    let out = ok(&broker, &["definitions", "validate", file]).await;
    assert!(
        out.contains(
            ": valid (1 users, 1 vhosts, 1 permissions, 1 exchanges, 1 queues, 1 bindings"
        ),
        "{out}"
    );
    // Export to stdout is the same document.
    let printed: Value =
        serde_json::from_str(&ok(&broker, &["definitions", "export"]).await).unwrap();
    assert_eq!(printed["queues"], exported["queues"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_definitions_file_is_refused_with_every_problem_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"queues": [{"name": "q", "vhost": "nowhere", "durable": true, "auto_delete": false, "arguments": {}}],
            "bindings": [{"source": "missing", "vhost": "/", "destination": "q", "destination_type": "queue", "routing_key": "", "arguments": {}}]}"#,
    )
    .unwrap();
    let file = file.to_str().unwrap();
    for command in ["validate"] {
        // Nothing listens on port 1: validation is offline.
        let error = run_args(
            [
                "warren-cli",
                "--http-url",
                "http://127.0.0.1:1",
                "definitions",
                command,
                file,
            ],
            &mut &b""[..],
            &mut Vec::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.contains("problems:"), "{error}");
        assert!(error.contains("/queues/0/vhost"), "{error}");
        assert!(error.contains("/bindings/0/source"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_import_loads_a_file_into_the_broker() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    std::fs::write(
        &file,
        r#"{"exchanges": [{"name": "imported", "vhost": "/", "type": "fanout", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
            "queues": [{"name": "imported.q", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
            "bindings": [{"source": "imported", "vhost": "/", "destination": "imported.q", "destination_type": "queue", "routing_key": "", "arguments": {}}]}"#,
    )
    .unwrap();
    let out = ok(&broker, &["definitions", "import", file.to_str().unwrap()]).await;
    assert!(out.starts_with("imported "), "{out}");
    ok(&broker, &["publish", "-e", "imported", "--body", "x"]).await;
    assert_eq!(broker.ready("imported.q").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_import_reports_every_problem_the_broker_finds() {
    let broker = TestBroker::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"queues": [{"name": "q", "vhost": "nowhere", "durable": true, "auto_delete": false, "arguments": {}}],
            "bindings": [{"source": "missing", "vhost": "/", "destination": "q", "destination_type": "queue", "routing_key": "", "arguments": {}}]}"#,
    )
    .unwrap();
    let error = cli(
        &broker,
        &["definitions", "import", file.to_str().unwrap()],
        "",
    )
    .await
    .unwrap_err();
    assert!(error.contains("HTTP 400"), "{error}");
    assert!(error.contains("/queues/0/vhost"), "{error}");
    assert!(error.contains("/bindings/0/source"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_management_credentials_are_reported_with_the_remedy() {
    let broker = TestBroker::start().await;
    let http_url = format!("http://guest:wrong@{}", broker.http_addr);
    let mut output = Vec::new();
    let error = run_args(
        ["warren-cli", "--http-url", &http_url, "list", "queues"],
        &mut &b""[..],
        &mut output,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("WARREN_HTTP_URL"), "{error}");
}

// The built binary.

async fn binary(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren-cli"));
    command
        .args(args)
        .env_remove("WARREN_URL")
        .env_remove("WARREN_HTTP_URL");
    for (key, value) in envs {
        command.env(key, value);
    }
    within(command.output()).await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["publish"],
        &["consume"],
        &["declare"],
        &["declare", "exchange"],
        &["declare", "queue"],
        &["declare", "binding"],
        &["delete"],
        &["delete", "exchange"],
        &["delete", "queue"],
        &["delete", "binding"],
        &["purge"],
        &["definitions"],
        &["definitions", "export"],
        &["definitions", "import"],
        &["definitions", "validate"],
        &["list"],
        &["perf"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = binary(&args, &[]).await;
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let text = stdout(&output);
        assert!(text.contains("Usage: warren-cli"), "{args:?}: {text}");
        assert!(text.contains("--url"), "{args:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_its_url_from_warren_url_and_pipes_bodies() {
    let broker = TestBroker::start().await;
    let url = broker.url();
    let env = [("WARREN_URL", url.as_str())];
    let output = binary(&["declare", "queue", "piped"], &env).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = binary(
        &["publish", "-k", "piped", "--body", "through the pipe"],
        &env,
    )
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = binary(&["consume", "piped", "-n", "1"], &env).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "through the pipe\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_explains_refused_connections_and_logins_and_exits_non_zero() {
    let broker = TestBroker::start().await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("amqp://guest:secret@{closed}/%2f");
    let output = binary(&["--url", &url, "purge", "q"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("WARREN_URL"), "{text}");
    assert!(!text.contains("secret"), "{text}");

    let url = format!("amqp://guest:wrong@{}/%2f", broker.addr);
    let output = binary(&["--url", &url, "purge", "q"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("refused the login"),
        "{}",
        stderr(&output)
    );

    let http_url = format!("http://{closed}");
    let output = binary(&["--http-url", &http_url, "list", "queues"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("management API") && text.contains("connection refused"),
        "{text}"
    );

    let output = binary(&["definitions", "validate", "/no/such/file.json"], &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read /no/such/file.json"));

    let output = binary(&["list", "everything"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "usage errors exit with 2");
}
