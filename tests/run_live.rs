//! `streamer run` on live RTSP cameras, end to end: a real RTSP server on
//! 127.0.0.1 (gstreamer-rtsp-server, H.264 of the vtest footage, in a child
//! process of this test binary so that stopping it really closes its port),
//! a real Mosquitto, the real binary with the real detector and embedder.
//!
//! One run covers: two cameras online and alerting; the server stopped and
//! restarted five times (each camera resumes, its reconnect counter reads
//! 5); a third camera on a closed port staying offline meanwhile; a server
//! that stops sending without closing (SIGSTOP) reported as a stall and
//! recovered; no password in any log line, /health, /metrics or MQTT
//! payload; SIGTERM: exit 0, `stopped` retained, outbox empty. Another
//! covers a taken HTTP port: a clear error, after the cameras stopped.

#[path = "../crates/alerts/tests/integration/support.rs"]
#[allow(dead_code)]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, Collector, Mosquitto};

const PASSWORD: &str = "Pa55-w0rd-never-logged";
const SERVER_ENV: &str = "STREAMER_TEST_RTSP_SERVE";

/// Not a test: the RTSP server's body when this binary is re-run as the
/// server (see [`RtspServer::start`]); without the variable it does nothing.
#[test]
fn rtsp_server_process() {
    let Ok(spec) = std::env::var(SERVER_ENV) else {
        return;
    };
    let (port, footage) = spec.split_once('|').expect("PORT|FOOTAGE");
    serve_rtsp(port, footage);
}

fn serve_rtsp(port: &str, footage: &str) -> ! {
    use gstreamer_rtsp_server::prelude::*;
    gstreamer::init().unwrap();
    let main_loop = gstreamer::glib::MainLoop::new(None, false);
    let server = gstreamer_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(port);
    let mounts = server.mount_points().unwrap();
    for path in ["/cam1", "/cam2"] {
        let factory = gstreamer_rtsp_server::RTSPMediaFactory::new();
        // Footage with people, looped by a fresh media per client; encoded
        // with short GOPs so a reconnecting client decodes at once.
        factory.set_launch(&format!(
            "( filesrc location=\"{footage}\" ! decodebin ! videoconvert ! videoscale \
             ! video/x-raw,width=384,height=288 ! x264enc tune=zerolatency speed-preset=ultrafast \
             key-int-max=10 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        ));
        factory.set_shared(false);
        mounts.add_factory(path, factory);
    }
    let _source = server.attach(None).unwrap();
    main_loop.run();
    std::process::exit(0);
}

/// The RTSP server as a child process: `stop` kills it (the port closes),
/// `pause`/`resume` freeze it (the connection stays open, nothing is sent).
struct RtspServer {
    port: u16,
    footage: String,
    child: Option<Child>,
}

impl RtspServer {
    fn start(port: u16, footage: &str) -> Self {
        let mut s = Self {
            port,
            footage: footage.into(),
            child: None,
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "rtsp_server_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SERVER_ENV, format!("{}|{}", self.port, self.footage))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready once it accepts connections.
        wait_for("the RTSP server to listen", Duration::from_secs(60), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal("-CONT");
        }
        self.stop();
    }
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(url: &str) -> Option<String> {
    let mut response = ureq::get(url).call().ok()?;
    response.body_mut().read_to_string().ok()
}

fn health(port: u16) -> Option<serde_json::Value> {
    serde_json::from_str(&get(&format!("http://127.0.0.1:{port}/health"))?).ok()
}

fn camera(h: &serde_json::Value, name: &str) -> serde_json::Value {
    h["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no camera {name} in {h}"))
}

#[test]
fn live_cameras_recover_from_restarts_and_stalls_and_stop_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Mosquitto::start(dir.path()) else {
        return;
    };
    let collector = Collector::start(broker.port, &["streamer/#", "homeassistant/#"], None);
    let vtest = streamer_models::ModelCache::from_env()
        .require("vtest")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models`)"));
    let (rtsp_port, http_port, closed_port) = (free_port(), free_port(), free_port());
    let mut server = RtspServer::start(rtsp_port, vtest.to_str().unwrap());

    let config = dir.path().join("streamer.toml");
    let camera_toml = |path: &str, port: u16| {
        format!(
            "url = \"rtsp://admin:${{CAM_PASSWORD}}@127.0.0.1:{port}{path}\"\n\
             detect_fps = 2\nstall_timeout_s = 4\nbackoff_s = [0.5, 1, 2]\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "outbox_dir = \"{outbox}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [models]\nllm = \"none\"\ndetector_threads = 1\ninference_workers = 2\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt}\nclient_id = \"streamer-run-test\"\n\n\
             [cameras.front]\n{front}\n[cameras.back]\n{back}\n[cameras.dead]\n{dead}",
            outbox = dir.path().join("outbox").display(),
            mqtt = broker.port,
            front = camera_toml("/cam1", rtsp_port),
            back = camera_toml("/cam2", rtsp_port),
            dead = camera_toml("/none", closed_port),
        ),
    )
    .unwrap();
    // A camera from an earlier config: its retained device must be cleared.
    let stale = "homeassistant/device/streamer_oldcam/config";
    let published = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port.to_string(),
            "-q",
            "1",
            "-r",
        ])
        .args(["-t", stale, "-m", r#"{"dev":{"ids":["streamer_oldcam"]}}"#])
        .status()
        .expect("mosquitto_pub (Debian package mosquitto-clients)");
    assert!(published.success());
    let log_path = dir.path().join("streamer.log");
    let mut streamer = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["run", "--config"])
        .arg(&config)
        .env("CAM_PASSWORD", PASSWORD)
        .env("STREAMER_LOG", "debug,hnsw_rs=warn,ort=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // Slow debug builds load models first: wait on the state, not a clock.
    let online = |h: &serde_json::Value, name: &str| camera(h, name)["state"] == "online";
    let wait_health = |what: &str, secs: u64, done: &dyn Fn(&serde_json::Value) -> bool| {
        let mut last = serde_json::Value::Null;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(h) = health(http_port) {
                if done(&h) {
                    return h;
                }
                last = h;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /health: {last}\nlog tail:\n{}",
                log().lines().rev().take(30).collect::<Vec<_>>().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_health("both cameras online", 180, &|h| {
        online(h, "front") && online(h, "back")
    });
    assert!(
        log().contains("inference: 2 worker(s), 1 ONNX Runtime thread(s) each"),
        "{}",
        log()
    );

    // Restart the server five times; each time both cameras come back.
    let mut resume = Vec::new();
    for round in 1..=5u64 {
        server.stop();
        wait_health("both cameras to notice the server is gone", 60, &|h| {
            !online(h, "front") && !online(h, "back")
        });
        let restarted = Instant::now();
        server.restart();
        let h = wait_health("both cameras to reconnect", 60, &|h| {
            camera(h, "front")["reconnects"] == round && camera(h, "back")["reconnects"] == round
        });
        resume.push(restarted.elapsed());
        assert!(online(&h, "front") && online(&h, "back"), "{h}");
        // The camera on a closed port never comes up and holds nobody up.
        let dead = camera(&h, "dead");
        assert_ne!(dead["state"], "online", "{dead}");
        assert_eq!(dead["frames_in"], 0, "{dead}");
    }
    let mut ms: Vec<u128> = resume.iter().map(|d| d.as_millis()).collect();
    ms.sort();
    eprintln!(
        "restarted RTSP server -> both cameras back: p50 {} ms, max {} ms ({ms:?})",
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );

    // A server that stops sending without closing: a stall, then recovery.
    server.signal("-STOP");
    let stalled_at = Instant::now();
    wait_health("a stall to be reported", 60, &|h| {
        camera(h, "front")["stalls"].as_u64() >= Some(1)
    });
    eprintln!(
        "stall reported {} ms after the server froze (stall_timeout_s 4)",
        stalled_at.elapsed().as_millis()
    );
    server.signal("-CONT");
    wait_health("recovery after the stall", 90, &|h| {
        online(h, "front") && online(h, "back")
    });

    // Alerts from both cameras (vtest shows people within seconds).
    collector.wait_until(
        "alerts from both cameras",
        Duration::from_secs(120),
        |all| {
            ["front", "back"].iter().all(|cam| {
                all.iter().any(|m| {
                    m.topic == format!("streamer/{cam}/event")
                        && m.text().contains("\"stage\":\"initial\"")
                })
            })
        },
    );
    collector.wait_until("connected sensors on", Duration::from_secs(30), |all| {
        all.iter()
            .any(|m| m.topic == "streamer/front/connected" && m.text() == "ON")
    });

    let health_body = get(&format!("http://127.0.0.1:{http_port}/health")).unwrap();
    let metrics_body = get(&format!("http://127.0.0.1:{http_port}/metrics")).unwrap();
    assert!(
        metrics_body.contains("streamer_camera_reconnects_total{camera=\"front\"}"),
        "{metrics_body}"
    );
    assert!(
        metrics_body.contains("streamer_camera_stalls_total"),
        "{metrics_body}"
    );

    // SIGTERM: clean exit, outbox flushed, `stopped` retained.
    let pid = streamer.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = streamer.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "streamer did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log_text = log();
    assert!(status.success(), "exit {status}\n{log_text}");
    assert!(
        log_text.contains("0 alert message(s) left in the outbox"),
        "{log_text}"
    );
    collector.wait_until(
        "`stopped` on the availability topic",
        Duration::from_secs(10),
        |all| {
            all.iter()
                .any(|m| m.topic == "streamer/availability" && m.text() == "stopped")
        },
    );
    let retained = Collector::start(broker.port, &["streamer/availability"], None);
    retained.wait_until("retained `stopped`", Duration::from_secs(10), |all| {
        all.last().is_some_and(|m| m.text() == "stopped")
    });

    // The password appears nowhere.
    assert!(
        log_text.contains("admin:***@127.0.0.1"),
        "URLs are logged redacted"
    );
    for (what, text) in [
        ("log", &log_text),
        ("/health", &health_body),
        ("/metrics", &metrics_body),
    ] {
        assert!(!text.contains(PASSWORD), "the password is in the {what}");
    }
    for m in collector.all() {
        assert!(
            !m.text().contains(PASSWORD),
            "the password is in MQTT {}",
            m.topic
        );
    }
}

/// A listen address already taken is a clear error, and the cameras and
/// inference workers that started before it are stopped before the process
/// ends (none left running into the process's teardown).
#[test]
fn a_taken_http_port_is_a_clear_error_after_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = taken.local_addr().unwrap().port();
    let config = dir.path().join("streamer.toml");
    std::fs::write(
        &config,
        format!(
            "outbox_dir = \"{outbox}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [models]\nllm = \"none\"\ndetector_threads = 1\n\n\
             [cameras.dead]\nurl = \"rtsp://127.0.0.1:{closed}/none\"\nbackoff_s = [0.5]\n",
            outbox = dir.path().join("outbox").display(),
            closed = free_port(),
        ),
    )
    .unwrap();
    let log_path = dir.path().join("streamer.log");
    let mut streamer = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["run", "--config"])
        .arg(&config)
        .env("STREAMER_LOG", "info,hnsw_rs=warn,ort=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // Debug builds load the models first: a bound, not a speed target.
    let mut status = None;
    wait_for("streamer run to exit", Duration::from_secs(600), || {
        status = streamer.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    eprintln!("{log}");
    assert_eq!(
        status.code(),
        Some(2),
        "an error exit, not a signal: {status}"
    );
    let error = log
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(
        error.contains(&format!("127.0.0.1:{http_port}")),
        "the error names the address: {error}"
    );
    let stopped = log
        .find("Live pipeline stopped")
        .expect("the live pipeline was stopped before the process ended");
    assert!(stopped < log.find("error:").unwrap());
    drop(taken);
}
