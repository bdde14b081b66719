//! `streamer serve` over real HTTP on 127.0.0.1, driven by independent
//! clients: OpenAI's and Ollama's own Python packages (pinned, in the venv
//! `scripts/install-py-clients.sh` makes), against the real Qwen2.5-Coder
//! 0.5B GGUF with a generated test projector for the image request.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
