//! The pipeline against a real Mosquitto: discovery, two-stage alerts,
//! quiet hours, a broker outage and a killed streamer.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use streamer_alerts::config::{CameraConfig, ClockTime, QuietHoursConfig};
use streamer_alerts::AlertPipeline;

use crate::support::{config, local, visit, Collector, Mosquitto, Received};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn discovery_payloads_and_states_appear_with_the_right_topics_and_fields() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let mut config = config(broker.port, dir.path(), "streamer-discovery");
    config.cameras.insert(
        "Front Door".into(),
        CameraConfig {
            notes: String::new(),
            display_name: Some("Front door".into()),
        },
    );
    let pipeline = AlertPipeline::start(&config, None).unwrap();
    pipeline.set_connected("Front Door", true);
    pipeline.set_diagnostics(
        "Front Door",
        streamer_alerts::LiveFigures {
            fps: 4.5,
            dropped_frames: 3,
            reconnects: 1,
            frames_gated_out: 7,
        },
    );

    // A subscriber that arrives later sees everything retained.
    let deadline = Instant::now() + WAIT;
    while !pipeline.is_connected() {
        assert!(Instant::now() < deadline, "streamer did not connect");
        thread::sleep(Duration::from_millis(10));
    }
    let first = Collector::start(broker.port, &["streamer/#"], None);
    first.wait_until("the diagnostics state", WAIT, |m| {
        m.iter().any(|m| {
            m.topic == "streamer/front_door/diagnostics" && m.payload.starts_with(b"{\"fps\":4.5")
        })
    });
    drop(first);
    let ha = Collector::start(broker.port, &["homeassistant/#", "streamer/#"], None);
    let camera_config = "homeassistant/device/streamer_front_door/config";
    let hub_config = "homeassistant/device/streamer_hub/config";
    ha.wait_until("both discovery messages", WAIT, |m| {
        m.iter().any(|m| m.topic == camera_config) && m.iter().any(|m| m.topic == hub_config)
    });
    let camera = ha.on(camera_config)[0].clone();
    assert!(camera.retain, "discovery is retained");
    let camera = camera.json();
    assert_eq!(camera["dev"]["ids"][0], "streamer_front_door");
    assert_eq!(camera["dev"]["name"], "Front door");
    assert_eq!(camera["o"]["name"], "streamer");
    let cmps = &camera["cmps"];
    assert_eq!(cmps["front_door_alert"]["p"], "event");
    assert_eq!(
        cmps["front_door_alert"]["event_types"],
        serde_json::json!(["normal", "monitor", "suspicious", "critical"])
    );
    assert_eq!(
        cmps["front_door_alert"]["default_entity_id"],
        "event.front_door_alert"
    );
    assert_eq!(
        cmps["front_door_snapshot"]["image_topic"],
        "streamer/front_door/snapshot"
    );
    assert_eq!(cmps["front_door_person"]["device_class"], "occupancy");
    assert_eq!(cmps["front_door_connected"]["device_class"], "connectivity");
    assert_eq!(cmps["front_door_fps"]["entity_category"], "diagnostic");
    let hub = ha.on(hub_config)[0].json();
    assert_eq!(hub["cmps"]["streamer_mode"]["p"], "select");
    assert_eq!(hub["cmps"]["streamer_notifications"]["p"], "switch");

    // Retained messages for the second filter may still be on their way.
    let states = [
        "streamer/availability",
        "streamer/front_door/connected",
        "streamer/hub/mode",
        "streamer/hub/notifications",
        "streamer/front_door/diagnostics",
    ];
    ha.wait_until("the retained states", WAIT, |m| {
        states
            .iter()
            .all(|t| m.iter().any(|m| m.topic == *t && m.retain))
    });
    let retained = |topic: &str| -> Received {
        ha.on(topic)
            .into_iter()
            .find(|m| m.retain)
            .unwrap_or_else(|| panic!("nothing retained on {topic}"))
    };
    assert_eq!(retained("streamer/availability").text(), "online");
    assert_eq!(retained("streamer/front_door/connected").text(), "ON");
    assert_eq!(retained("streamer/hub/mode").text(), "away");
    assert_eq!(retained("streamer/hub/notifications").text(), "ON");
    let diagnostics = retained("streamer/front_door/diagnostics").json();
    assert_eq!(diagnostics["dropped_frames"], 3);
    assert_eq!(diagnostics["frames_gated_out"], 7);

    // Home Assistant restarts: discovery comes again.
    let before = ha.on(camera_config).len();
    ha.publish("homeassistant/status", "online");
    ha.wait_until("discovery again after HA's online", WAIT, |m| {
        m.iter().filter(|m| m.topic == camera_config).count() > before
    });

    // The hub's select and switch change routing at run time.
    ha.publish("streamer/hub/mode/set", "home");
    ha.publish("streamer/hub/notifications/set", "OFF");
    ha.wait_until("the new mode and switch states", WAIT, |m| {
        m.iter()
            .any(|m| m.topic == "streamer/hub/mode" && m.payload == b"home")
            && m.iter()
                .any(|m| m.topic == "streamer/hub/notifications" && m.payload == b"OFF")
    });
    let state = pipeline.routing_state();
    assert_eq!(state.mode, "home");
    assert!(!state.notifications);

    // A clean exit says `stopped`, not the last will's `offline`.
    assert_eq!(pipeline.shutdown(Duration::from_secs(5)), 0);
    ha.wait_until("availability `stopped`", WAIT, |m| {
        m.iter()
            .any(|m| m.topic == "streamer/availability" && m.payload == b"stopped")
    });
    thread::sleep(Duration::from_millis(200));
    let last = ha.on("streamer/availability").last().unwrap().text();
    assert_eq!(last, "stopped");
}

#[test]
fn quiet_hours_hold_a_monitor_alert_but_pass_a_critical_one() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let mut config = config(broker.port, dir.path(), "streamer-quiet");
    config.routing.quiet_hours = vec![QuietHoursConfig {
        cameras: vec![],
        days: vec![],
        start: ClockTime::hm(22, 0),
        end: ClockTime::hm(7, 0),
    }];
    let collector = Collector::start(
        broker.port,
        &["streamer/alerts/#", "streamer/porch/event"],
        None,
    );
    let pipeline = AlertPipeline::start(&config, None).unwrap();

    // A person at 23:30 is `monitor` by the rules: quiet hours hold it.
    let monitor = pipeline
        .visit_opened(visit("porch", "v1", local(23, 30, 0), &["person"]))
        .unwrap();
    assert_eq!(monitor.initial.urgency.as_str(), "monitor");
    assert!(monitor.initial.delivered_to.is_empty());
    assert_eq!(monitor.initial.suppressed.as_deref(), Some("quiet hours"));
    // A person with a knife is `critical`: it passes.
    let critical = pipeline
        .visit_opened(visit("porch", "v2", local(23, 31, 0), &["person", "knife"]))
        .unwrap();
    assert_eq!(critical.initial.urgency.as_str(), "critical");
    assert_eq!(critical.initial.delivered_to, ["all"]);
    for receipt in [&monitor, &critical] {
        receipt.wait_stage_two(WAIT).expect("stage two finishes");
    }
    assert!(pipeline.wait_delivered(WAIT));
    collector.wait_until("both events on the HA topic", WAIT, |m| {
        m.iter()
            .filter(|m| m.topic == "streamer/porch/event")
            .count()
            >= 4
    });
    let channel: Vec<serde_json::Value> = collector
        .on("streamer/alerts/all")
        .iter()
        .map(Received::json)
        .collect();
    assert!(
        channel.iter().all(|a| a["id"] == critical.id()),
        "only the critical alert reaches the channel: {channel:?}"
    );
    assert_eq!(channel.len(), 2, "its stage one and stage two");
    // The HA event still records the held alert, saying why.
    let events: Vec<serde_json::Value> = collector
        .on("streamer/porch/event")
        .iter()
        .map(Received::json)
        .collect();
    let held = events.iter().find(|e| e["id"] == monitor.id()).unwrap();
    assert_eq!(held["event_type"], "monitor");
    assert_eq!(held["suppressed"], "quiet hours");
    pipeline.shutdown(Duration::from_secs(5));
}

/// Test double at the model boundary: a "model" that answers with text
/// that is not JSON. The real-model path is tested in crates/reason and in
/// `triage::a_real_model_past_its_deadline_falls_back_to_rules`.
pub struct GarbageModel;

impl streamer_reason::ChatBackend for GarbageModel {
    fn describe(&self) -> String {
        "garbage test double".into()
    }

    fn sees_images(&self) -> bool {
        false
    }

    fn chat(
        &self,
        _: &streamer_reason::ChatRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<streamer_reason::ChatReply, streamer_reason::ReasonError> {
        let content = "I think it is probably fine?? urgency: maybe".to_string();
        on_text(&content);
        Ok(streamer_reason::ChatReply {
            content,
            reasoning: None,
            tool_calls: vec![],
            malformed_calls: vec![],
            finish: streamer_reason::FinishReason::Stop,
            timing: Default::default(),
        })
    }
}

#[test]
fn an_alert_and_its_update_arrive_with_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let config = config(broker.port, dir.path(), "streamer-two-stage");
    let collector = Collector::start(broker.port, &["streamer/#"], None);
    let pipeline = AlertPipeline::start(&config, Some(std::sync::Arc::new(GarbageModel))).unwrap();
    let deadline = Instant::now() + WAIT;
    while !pipeline.is_connected() {
        assert!(Instant::now() < deadline, "streamer did not connect");
        thread::sleep(Duration::from_millis(10));
    }

    let called = Instant::now();
    let receipt = pipeline
        .visit_opened(visit(
            "driveway",
            "visit-7",
            local(14, 5, 0),
            &["person", "car"],
        ))
        .unwrap();
    let id = receipt.id().to_string();
    collector.wait_until("both stages on the channel", WAIT, |m| {
        m.iter()
            .filter(|m| m.topic == "streamer/alerts/all")
            .count()
            >= 2
    });
    let channel = collector.on("streamer/alerts/all");
    let (first, second) = (channel[0].json(), channel[1].json());
    let stage_one_ms = channel[0].at.duration_since(called).as_secs_f64() * 1e3;
    let stage_two_ms = channel[1].at.duration_since(called).as_secs_f64() * 1e3;
    eprintln!(
        "stage one stored in {:.2} ms, received after {stage_one_ms:.1} ms; stage two received after {stage_two_ms:.1} ms",
        receipt.stage_one_latency.as_secs_f64() * 1e3
    );
    assert!(stage_one_ms < 1000.0, "stage one took {stage_one_ms} ms");

    assert_eq!(first["id"], id.as_str());
    assert_eq!(second["id"], id.as_str());
    assert_eq!(first["stage"], "initial");
    assert_eq!(first["visit_id"], "visit-7");
    assert_eq!(first["camera"], "driveway");
    assert_eq!(first["labels"], serde_json::json!(["car", "person"]));
    assert_eq!(first["snapshot_topic"], "streamer/driveway/snapshot");
    assert_eq!(first["time"], "2026-11-17T14:05:00+01:00");
    // The model answered nonsense: the rule-based verdict, marked so.
    assert_eq!(second["stage"], "fallback");
    assert!(
        second["fallback_reason"]
            .as_str()
            .unwrap()
            .starts_with("model failed"),
        "{second}"
    );
    assert_eq!(second["urgency"], "normal");
    assert_eq!(second["message"], "Person at driveway at 14:05.");

    // The snapshot JPEG came before the alert, retained, as raw bytes.
    let all = collector.all();
    let snapshot_at = all
        .iter()
        .position(|m| m.topic == "streamer/driveway/snapshot")
        .expect("a snapshot");
    let alert_at = all
        .iter()
        .position(|m| m.topic == "streamer/alerts/all")
        .unwrap();
    assert!(snapshot_at < alert_at);
    assert!(
        all[snapshot_at].payload.starts_with(&[0xff, 0xd8]),
        "JPEG magic"
    );
    // The event topic carries both stages for Home Assistant.
    let events = collector.on("streamer/driveway/event");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].json()["event_type"], "normal");
    assert_eq!(
        collector
            .on("streamer/driveway/person")
            .last()
            .unwrap()
            .text(),
        "ON"
    );
    assert_eq!(pipeline.shutdown(Duration::from_secs(5)), 0);
}

/// Initial alerts on the channel, per camera, in arrival order of their
/// first copy (delivery is at least once).
fn initial_visits_by_camera(messages: &[Received]) -> BTreeMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut by_camera: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in messages.iter().filter(|m| m.topic == "streamer/alerts/all") {
        let alert = m.json();
        if alert["stage"] != "initial" {
            continue;
        }
        let visit = alert["visit_id"].as_str().unwrap().to_string();
        if seen.insert(visit.clone()) {
            by_camera
                .entry(alert["camera"].as_str().unwrap().to_string())
                .or_default()
                .push(visit);
        }
    }
    by_camera
}

fn expected(cameras: &[&str], visits: std::ops::Range<usize>) -> BTreeMap<String, Vec<String>> {
    cameras
        .iter()
        .map(|c| {
            (
                c.to_string(),
                visits.clone().map(|n| format!("{c}-{n:03}")).collect(),
            )
        })
        .collect()
}

#[test]
fn a_broker_outage_loses_no_alert_and_keeps_camera_order() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let config = config(broker.port, dir.path(), "streamer-outage");
    let collector = Collector::start(
        broker.port,
        &["streamer/alerts/#"],
        Some("outage-collector"),
    );
    let pipeline = AlertPipeline::start(&config, None).unwrap();
    let cameras = ["porch", "garden"];
    let send = |range: std::ops::Range<usize>| {
        for n in range {
            for camera in cameras {
                let time = local(14, 0, 0) + chrono::Duration::seconds(n as i64);
                pipeline
                    .visit_opened(visit(
                        camera,
                        &format!("{camera}-{n:03}"),
                        time,
                        &["person"],
                    ))
                    .unwrap();
            }
        }
    };
    send(0..5);
    assert!(pipeline.wait_delivered(WAIT));

    broker.stop();
    send(5..15);
    thread::sleep(Duration::from_millis(300));
    assert!(pipeline.pending() >= 20, "alerts wait in the outbox");
    broker.restart();
    send(15..20);

    assert!(
        pipeline.wait_delivered(WAIT),
        "{} still pending",
        pipeline.pending()
    );
    let want = expected(&cameras, 0..20);
    collector.wait_until("every initial alert", WAIT, |m| {
        initial_visits_by_camera(m) == want
    });
    let counts = pipeline.delivery();
    assert!(counts.connects >= 2, "{counts:?}");
    assert!(counts.connection_failures >= 1, "{counts:?}");
    pipeline.shutdown(Duration::from_secs(5));
}

/// Environment of the child process that plays streamer.
const CHILD_CONFIG: &str = "STREAMER_ALERTS_TEST_CONFIG";

/// Not a test: the streamer process that
/// `killing_and_restarting_streamer_loses_no_alert` starts and kills. For
/// each line `a..b` on stdin it opens visits a..b on two cameras, printing
/// `STORED <visit>` once each is in the outbox, then `DONE`.
#[test]
#[ignore = "run by killing_and_restarting_streamer_loses_no_alert as a child process"]
fn child_streamer() {
    let Ok(config) = std::env::var(CHILD_CONFIG) else {
        return;
    };
    let config =
        streamer_alerts::AlertsConfig::from_toml(&std::fs::read_to_string(config).unwrap())
            .unwrap();
    let pipeline = AlertPipeline::start(&config, None).unwrap();
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let (start, end) = line.trim().split_once("..").unwrap();
        let (start, end): (usize, usize) = (start.parse().unwrap(), end.parse().unwrap());
        for n in start..end {
            for camera in ["porch", "garden"] {
                let time = local(14, 0, 0) + chrono::Duration::seconds(n as i64);
                let id = format!("{camera}-{n:03}");
                pipeline
                    .visit_opened(visit(camera, &id, time, &["person"]))
                    .unwrap();
                println!("STORED {id}");
            }
        }
        println!("DONE");
    }
}

struct ChildStreamer {
    child: Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl ChildStreamer {
    fn start(config: &std::path::Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "delivery::child_streamer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_CONFIG, config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// Opens visits `range` and waits until they are stored, returning them.
    #[track_caller]
    fn send(&mut self, range: &str) -> Vec<String> {
        writeln!(self.stdin, "{range}").unwrap();
        let mut stored = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .expect("the child streamer stores its visits");
            // libtest prints `test … ... ` before the test's own output,
            // without a newline.
            if line.ends_with("DONE") {
                return stored;
            }
            if let Some((_, id)) = line.split_once("STORED ") {
                stored.push(id.to_string());
            }
        }
    }

    /// SIGKILL: no chance to flush, say goodbye or mark anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

#[test]
fn killing_and_restarting_streamer_loses_no_alert() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let config = config(broker.port, dir.path(), "streamer-killed");
    let config_path = dir.path().join("alerts.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let collector = Collector::start(
        broker.port,
        &["streamer/alerts/#", "streamer/availability"],
        Some("killed-collector"),
    );
    let cameras = ["porch", "garden"];

    // First run: delivered while the broker is up.
    let mut first = ChildStreamer::start(&config_path);
    let mut stored = first.send("0..5");
    collector.wait_until("the first alerts", WAIT, |m| {
        initial_visits_by_camera(m) == expected(&cameras, 0..5)
    });
    // The broker goes away: the next alerts only reach the outbox, and
    // then streamer is killed.
    broker.stop();
    stored.extend(first.send("5..15"));
    first.kill();
    broker.restart();

    // Second run: resumes the journal, then sends its own.
    let mut second = ChildStreamer::start(&config_path);
    stored.extend(second.send("15..20"));
    assert_eq!(stored.len(), 40);
    let want = expected(&cameras, 0..20);
    collector.wait_until("every stored alert, in order per camera", WAIT, |m| {
        initial_visits_by_camera(m) == want
    });

    // A killed streamer leaves its last will.
    let killed = Instant::now();
    second.kill();
    collector.wait_until("the last will", WAIT, |m| {
        m.iter().any(|m| {
            m.at >= killed && m.topic == "streamer/availability" && m.payload == b"offline"
        })
    });
}
