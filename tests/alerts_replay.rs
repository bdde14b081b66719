//! `streamer replay --mqtt` end to end: real footage, detector, embedder,
//! identity, the in-process LLM (SmolLM2, for speed) and a real Mosquitto on
//! 127.0.0.1. Alerts for the people in the footage must arrive, each with
//! its stage-two update under the same id.

#[path = "../crates/alerts/tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::time::Duration;

use streamer_models::ModelCache;
use support::{Collector, Mosquitto};

#[test]
fn replay_sends_two_stage_alerts_for_the_people_in_the_footage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let collector = Collector::start(broker.port, &["streamer/#"], None);
    let config = dir.path().join("alerts.toml");
    std::fs::write(
        &config,
        format!(
            "outbox_dir = \"{}\"\n\n[mqtt]\nclient_id = \"streamer-replay-test\"\n\n[triage]\ndeadline_ms = 120000\n",
            dir.path().join("outbox").display()
        ),
    )
    .unwrap();
    let vtest = ModelCache::from_env()
        .require("vtest")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models`)"));
    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["replay", "--fps", "0.5", "--llm", "smollm2-135m"])
        .arg("--mqtt")
        .arg(format!("127.0.0.1:{}", broker.port))
        .arg("--alerts-config")
        .arg(&config)
        .arg(&vtest)
        .env("STREAMER_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("stage one"), "{stderr}");

    collector.wait_until("an alert and its update", Duration::from_secs(10), |all| {
        all.iter().any(|m| {
            m.topic == "streamer/vtest/event" && m.text().contains("\"stage\":\"initial\"")
        })
    });
    let events: Vec<serde_json::Value> = collector
        .on("streamer/vtest/event")
        .iter()
        .map(|m| m.json())
        .collect();
    let first = events
        .iter()
        .find(|e| e["stage"] == "initial")
        .expect("a stage-one alert");
    let id = first["id"].as_str().unwrap();
    let update = events
        .iter()
        .find(|e| e["id"] == id && e["stage"] != "initial")
        .unwrap_or_else(|| panic!("no update for {id}: {events:#?}"));
    assert!(["triaged", "fallback"].contains(&update["stage"].as_str().unwrap()));
    assert!(first["labels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "person"));
    assert_eq!(first["visit_id"], update["visit_id"]);
    // Availability ends as `stopped` after a clean exit.
    let availability = collector.on("streamer/availability");
    assert_eq!(availability.last().unwrap().text(), "stopped");
    println!("{stderr}");
}
