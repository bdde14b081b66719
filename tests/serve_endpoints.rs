//! `streamer serve` over real HTTP on 127.0.0.1, driven by independent
//! clients: OpenAI's and Ollama's own Python packages (pinned, in the venv
//! `scripts/install-py-clients.sh` makes), against the real Qwen2.5-Coder
//! 0.5B GGUF with a generated test projector for the image request.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use streamer_models::ModelCache;
use streamer_reason::SyntheticProjector;

/// The model's embedding width (the projector must match it).
const QWEN_05B_WIDTH: u32 = 896;

fn python() -> Option<PathBuf> {
    let dir = std::env::var_os("STREAMER_PY_CLIENTS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .map(|c| c.join("streamer/py-clients"))
        })?;
    let python = dir.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "no Python clients at {}: run scripts/install-py-clients.sh (make test does)",
            dir.display()
        );
    }
    eprintln!("skipped: no Python clients (run scripts/install-py-clients.sh)");
    None
}

/// The server's pid, for [`end_server`].
static SERVER_PID: AtomicU32 = AtomicU32::new(0);

/// Ends the server by pid when the test process exits: the shared
/// [`Server`] lives in a static, and statics are never dropped.
extern "C" fn end_server() {
    let pid = SERVER_PID.load(Ordering::SeqCst);
    if pid != 0 {
        // SAFETY: kill only sends a signal, to the child this process
        // started.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// The server, started once for every test here; ended by pid at exit.
struct Server {
    child: Child,
    base: String,
    _projector: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let cache = ModelCache::from_env();
    cache
        .require("qwen2.5-coder-0.5b")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"));
    let dir = tempfile::tempdir().unwrap();
    let projector = dir.path().join("mmproj-test.gguf");
    SyntheticProjector::for_text_width(QWEN_05B_WIDTH)
        .write(&projector)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["serve", "--listen", "127.0.0.1:0", "--threads", "2"])
        .args(["--context", "2048", "--model", "qwen2.5-coder-0.5b"])
        .arg("--projector")
        .arg(&projector)
        .env("STREAMER_LOG", "warn")
        .env_remove(streamer_serve::TOKEN_ENV)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("streamer starts");
    SERVER_PID.store(child.id(), Ordering::SeqCst);
    // SAFETY: registers a plain function with no captured state.
    unsafe {
        libc::atexit(end_server);
    }
    // Its first line names the address (port 0 picks a free one).
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("the server printed its address before exiting")
            .unwrap();
        eprintln!("{line}");
        if let Some(rest) = line.split(" on http://").nth(1) {
            let addr = rest.split('/').next().unwrap();
            break format!("http://{addr}");
        }
    };
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("server: {line}");
        }
    });
    Server {
        child,
        base,
        _projector: dir,
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

/// Runs one of `tests/clients/*.py` against the server.
fn client_check(script: &str) -> Option<Value> {
    let python = python()?;
    let base = &server().base;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let out = Command::new(python)
        .arg(dir.join(script))
        .arg(base)
        .current_dir(&dir)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("the check prints JSON");
    eprintln!(
        "{script}: {}",
        serde_json::to_string_pretty(&result).unwrap()
    );
    Some(result)
}

fn urgency_is_a_label(v: &Value) {
    let urgency = v["urgency"].as_str().expect("urgency is a string");
    assert!(
        ["normal", "monitor", "suspicious", "critical"].contains(&urgency),
        "{v}"
    );
    assert!(v["reason"].is_string(), "{v}");
}

#[test]
fn the_openai_client_gets_text_streams_tools_json_images_usage_and_errors() {
    let Some(r) = client_check("check_openai.py") else {
        return;
    };
    assert_eq!(r["models"], serde_json::json!(["qwen2.5-coder-0.5b"]));

    let text = &r["text"];
    assert!(
        !text["content"].as_str().unwrap().trim().is_empty(),
        "{text}"
    );
    assert!(["stop", "length"].contains(&text["finish"].as_str().unwrap()));
    let usage = &text["usage"];
    let (p, c) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 5 && c >= 1, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), p + c);

    let stream = &r["stream"];
    assert!(
        stream["pieces"].as_u64().unwrap() >= 2,
        "streamed in pieces: {stream}"
    );
    // At temperature 0 the pieces add up to the unstreamed answer.
    assert!(!stream["content"].as_str().unwrap().is_empty(), "{stream}");
    assert_eq!(stream["content"], stream["unstreamed"], "{stream}");
    assert!(
        stream["usage"]["completion_tokens"].as_u64().unwrap() >= 2,
        "{stream}"
    );

    for key in ["tool", "tool_stream"] {
        let tool = &r[key];
        assert_eq!(tool["finish"], "tool_calls", "{key}: {tool}");
        let call = &tool["calls"][0];
        assert_eq!(call["name"], "get_camera_snapshot", "{key}: {tool}");
        let camera = call["arguments"]["camera"].as_str().unwrap_or_default();
        assert!(camera.to_lowercase().contains("driveway"), "{key}: {tool}");
    }
    assert!(r["tool"]["calls"][0]["id"]
        .as_str()
        .unwrap()
        .starts_with("call"));

    urgency_is_a_label(&r["json_schema"]);

    let image = &r["image"];
    let image_tokens = SyntheticProjector::for_text_width(QWEN_05B_WIDTH).image_tokens() as u64;
    assert!(
        image["prompt_tokens"].as_u64().unwrap() > image_tokens,
        "the picture went through the projector: {image}"
    );

    assert_eq!(r["too_long"]["status"], 413, "{}", r["too_long"]);
    assert_eq!(r["too_long"]["body"]["code"], "context_length_exceeded");
    assert_eq!(r["unknown_model"]["status"], 404, "{}", r["unknown_model"]);
    assert_eq!(r["malformed"]["status"], 400, "{}", r["malformed"]);
    assert_eq!(
        r["malformed"]["body"]["error"]["type"],
        "invalid_request_error"
    );
}

#[test]
fn the_ollama_client_lists_shows_chats_streams_calls_tools_and_follows_a_schema() {
    let Some(r) = client_check("check_ollama.py") else {
        return;
    };
    assert!(r["version"]["version"].is_string());
    assert_eq!(r["tags"], serde_json::json!(["qwen2.5-coder-0.5b:latest"]));
    let caps = r["show"]["capabilities"].as_array().unwrap();
    for cap in ["completion", "tools", "vision"] {
        assert!(caps.iter().any(|c| c == cap), "{cap} in {caps:?}");
    }
    assert_eq!(r["show"]["family"], "qwen2");

    let chat = &r["chat"];
    assert!(chat["done"].as_bool().unwrap());
    assert!(
        !chat["content"].as_str().unwrap().trim().is_empty(),
        "{chat}"
    );
    assert!(chat["prompt_eval_count"].as_u64().unwrap() > 5);
    assert!(chat["eval_count"].as_u64().unwrap() >= 1);

    let stream = &r["stream"];
    assert!(stream["lines"].as_u64().unwrap() >= 3, "{stream}");
    assert!(stream["last_done"].as_bool().unwrap());
    assert!(!stream["content"].as_str().unwrap().is_empty(), "{stream}");
    assert_eq!(stream["content"], stream["unstreamed"], "{stream}");

    let call = &r["tool"]["calls"][0];
    assert_eq!(call["name"], "get_camera_snapshot", "{}", r["tool"]);
    let camera = call["arguments"]["camera"].as_str().unwrap_or_default();
    assert!(camera.to_lowercase().contains("driveway"), "{}", r["tool"]);

    urgency_is_a_label(&r["format"]);
    assert_eq!(r["unknown_model"]["status"], 404, "{}", r["unknown_model"]);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Status and body of a GET, with an optional bearer token.
fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(t) = token {
        request = request.header("Authorization", &format!("Bearer {t}"));
    }
    match request.call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

/// Kills its child (by pid) when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, child: &mut Child, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !done() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the server exited ({status}) before {what}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_token_guards_the_endpoints_and_is_required_off_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["serve", "--listen", "0.0.0.0:0", "--model", "smollm2-135m"])
        .env_remove(streamer_serve::TOKEN_ENV)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(streamer_serve::TOKEN_ENV), "{stderr}");

    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--model",
            "smollm2-135m",
            "--threads",
            "1",
            "--context",
            "512",
        ])
        .env(streamer_serve::TOKEN_ENV, "s3cret-token")
        .env("STREAMER_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_until("it answers /health", &mut child, || {
        get(&format!("{url}/health"), None).0 == 200
    });
    let child = Reaped(child);
    let (status, body) = get(&format!("{url}/v1/models"), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("authentication_error"), "{body}");
    assert_eq!(get(&format!("{url}/v1/models"), Some("wrong")).0, 401);
    assert_eq!(get(&format!("{url}/api/tags"), None).0, 401);
    let (status, body) = get(&format!("{url}/v1/models"), Some("s3cret-token"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("smollm2-135m"), "{body}");
    drop(child);
}

#[test]
fn streamer_run_serves_its_triage_model_beside_the_cameras() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("streamer.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\nserve_models = true\n\n\
             [models]\nllm = \"smollm2-135m\"\ndetector_threads = 1\n\n\
             [cameras.pattern]\n\
             gst_source = \"videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1\"\n\
             detect_fps = 2\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["run", "--config"])
        .arg(&config)
        .env("STREAMER_LOG", "warn")
        .env_remove(streamer_serve::TOKEN_ENV)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_until("the camera is online", &mut child, || {
        let (status, body) = get(&format!("{url}/health"), None);
        status == 200 && body.contains("\"online\"")
    });
    let _child = Reaped(child);
    let (status, body) = get(&format!("{url}/v1/models"), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("smollm2-135m"), "{body}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut reply = agent
        .post(&format!("{url}/api/chat"))
        .header("Content-Type", "application/json")
        .send(
            serde_json::json!({
                "model": "smollm2-135m",
                "stream": false,
                "messages": [{"role": "user", "content": "Say hi."}],
                "options": {"num_predict": 4, "temperature": 0},
            })
            .to_string(),
        )
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&reply.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["done"], true, "{body}");
    assert!(body["eval_count"].as_u64().unwrap() >= 1, "{body}");
    let (_, metrics) = get(&format!("{url}/metrics"), None);
    assert!(
        metrics.contains("streamer_camera_frames_total{camera=\"pattern\"}"),
        "{metrics}"
    );
}
