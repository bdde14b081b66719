//! A real Mosquitto on 127.0.0.1 and an MQTT subscriber that records what
//! arrives.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, TimeZone};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use streamer_alerts::config::{AlertsConfig, ChannelConfig};
use streamer_alerts::VisitOpened;
use streamer_core::{BBox, Detection, Urgency};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// How long the broker gets to accept connections after starting.
const BROKER_START: Duration = Duration::from_secs(10);

/// Skips (or, under CI, fails) a test whose prerequisite is missing.
#[track_caller]
pub fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what}");
    }
    eprintln!("SKIPPED: {what}");
}

/// A Mosquitto process on a free port, killed by pid when dropped.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    /// Starts a broker with persistence in `dir`, or says why not.
    pub fn start(dir: &Path) -> Option<Self> {
        if !Path::new(MOSQUITTO).is_file() {
            missing(
                "mosquitto is not installed: run scripts/install-system-deps.sh \
                 (apt-get install mosquitto mosquitto-clients)",
            );
            return None;
        }
        let port = free_port();
        let mut broker = Self {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        broker.spawn();
        Some(broker)
    }

    fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        let persistence = self.dir.join("persistence");
        std::fs::create_dir_all(&persistence).unwrap();
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {dir}/\nlog_dest file {log}\nuser root\n",
                port = self.port,
                dir = persistence.display(),
                log = self.dir.join("mosquitto.log").display(),
            ),
        )
        .unwrap();
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + BROKER_START;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not accept connections on port {}; see {}",
                self.port,
                self.dir.join("mosquitto.log").display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker with SIGTERM (so it saves its persistence file).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success());
            child.wait().unwrap();
        }
    }

    /// Starts it again on the same port with the same persistence.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One received message.
#[derive(Clone, Debug)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", self.topic))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A subscriber recording everything on its filters. With a persistent
/// session it survives broker restarts without losing QoS 1 messages.
pub struct Collector {
    received: Arc<Mutex<Vec<Received>>>,
    client: Client,
}

impl Collector {
    pub fn start(port: u16, filters: &[&str], persistent_id: Option<&str>) -> Self {
        let id = persistent_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("collector-{}", free_port()));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(persistent_id.is_none())
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(8 << 20, 8 << 20);
        let (client, mut connection) = Client::new(options, 64);
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let subscriber = client.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut subscribed = false;
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) if !subscribed => {
                        for f in &filters {
                            subscriber
                                .try_subscribe(f.clone(), QoS::AtLeastOnce)
                                .unwrap();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) if !subscribed => {
                        subscribed = true;
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        sink.lock().unwrap().push(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => return,
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the collector subscribes within 10 s");
        Self { received, client }
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn on(&self, topic: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `done` holds for what was received.
    #[track_caller]
    pub fn wait_until(&self, what: &str, timeout: Duration, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.received.lock().unwrap()) {
                return;
            }
            if Instant::now() >= deadline {
                let topics: Vec<String> = self.all().iter().map(|m| m.topic.clone()).collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received topics: {topics:?}"
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Publishes as a test client (Home Assistant's side).
    pub fn publish(&self, topic: &str, payload: &str) {
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .unwrap();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// A config pointing at `port`, outbox in `dir`, one channel `all` that
/// takes every urgency, and no cooldowns.
pub fn config(port: u16, dir: &Path, client_id: &str) -> AlertsConfig {
    let mut config = AlertsConfig {
        outbox_dir: dir.join("outbox"),
        ..AlertsConfig::default()
    };
    config.mqtt.port = port;
    config.mqtt.client_id = client_id.into();
    config.mqtt.reconnect_min_ms = 50;
    config.mqtt.reconnect_max_ms = 500;
    config.routing.channels = vec![ChannelConfig {
        name: "all".into(),
        min_urgency: Urgency::Normal,
        topic: None,
    }];
    config.routing.cooldown_secs = 0;
    config
}

/// Local time on Tuesday 2026-11-17 at `hour:minute:second`, UTC+1.
pub fn local(hour: u32, minute: u32, second: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 17, hour, minute, second)
        .unwrap()
}

pub fn detection(label: &str, x1: f32) -> Detection {
    Detection {
        label: label.into(),
        class_id: 0,
        score: 0.8,
        bbox: BBox::new(x1, 100.0, x1 + 80.0, 400.0),
    }
}

/// A visit with a small real JPEG snapshot.
pub fn visit(
    camera: &str,
    visit_id: &str,
    time: DateTime<FixedOffset>,
    labels: &[&str],
) -> VisitOpened {
    let (width, height) = (64, 48);
    let rgb: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
    VisitOpened {
        camera: camera.into(),
        visit_id: visit_id.into(),
        time,
        width,
        height,
        detections: labels
            .iter()
            .enumerate()
            .map(|(i, l)| detection(l, 10.0 + 100.0 * i as f32))
            .collect(),
        snapshot_jpeg: Some(streamer_alerts::encode_jpeg(width, height, &rgb, 80).unwrap()),
        image: None,
    }
}
