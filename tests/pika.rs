//! pika (Python) as a second client against the in-process broker: it is stricter than lapin
//! about some details. CI installs it (tests/pika/requirements.txt) and sets
//! WARREN_REQUIRE_PIKA=1; elsewhere the test says it was skipped when pika is missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

fn pika_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import pika"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pika_runs_the_core_flow() {
    if !pika_available() {
        assert!(
            std::env::var_os("WARREN_REQUIRE_PIKA").is_none(),
            "WARREN_REQUIRE_PIKA is set but python3 cannot import pika"
        );
        eprintln!("skipped: pika is not installed (pip install -r tests/pika/requirements.txt)");
        return;
    }
    let broker = TestBroker::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pika/check.py");
    let output = within(
        tokio::process::Command::new("python3")
            .arg(script)
            .arg(broker.url())
            .output(),
    )
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "pika check failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
