//! The one config file (TOML) behind `streamer run`, `streamer replay
//! --config` and `streamer check-config`: cameras, models, HTTP, identity
//! and the alerts sections (`[mqtt]`, `[routing]`, `[triage]`).
//!
//! Loading reports every problem it can find, each with its key path and
//! what to do about it. `${VAR}` in any string is replaced by the
//! environment variable `VAR` (secrets stay out of the file); a missing
//! variable is an error naming it and the key.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use streamer_alerts::config::{camera_slug, CameraConfig, MqttConfig, RoutingConfig, TriageConfig};
use streamer_alerts::AlertsConfig;
use streamer_identity::IdentityConfig;
use streamer_ingest::{Fps, LiveInput, LiveSettings, Transport};
use streamer_models::ModelCache;
use streamer_motion::MotionConfig;
use streamer_runner::{Backoff, CameraSpec, Zone};

/// Default `[http] listen`: loopback, on a port none of Frigate (5000,
/// 8971), Home Assistant (8123) or llama-server (8080) uses.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamerConfig {
    /// Live cameras by name.
    #[serde(default)]
    pub cameras: BTreeMap<String, CameraSection>,
    #[serde(default)]
    pub models: ModelsSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// The broker; without this section alerts go to the terminal only.
    pub mqtt: Option<MqttConfig>,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub triage: TriageConfig,
    /// Where alerts wait for the broker (default: the alerts crate's).
    pub outbox_dir: Option<PathBuf>,
    /// IANA time zone for quiet hours and the night rule (default: the
    /// system's, which is UTC under systemd without `TZ`).
    pub timezone: Option<String>,
}

/// `[cameras.<name>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// `rtsp://user:${PASSWORD}@host/path`.
    pub url: Option<String>,
    /// A raw GStreamer source description instead of `url`.
    pub gst_source: Option<String>,
    /// The camera's low-resolution sub-stream: when set, detection (and
    /// snapshots) use it instead of `url`, which costs far less to decode.
    pub detect_url: Option<String>,
    #[serde(default = "default_detect_fps")]
    pub detect_fps: f64,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default)]
    pub latency_ms: u32,
    /// Wider pictures are scaled down to this width before colour
    /// conversion (aspect kept).
    #[serde(default = "default_max_width")]
    pub max_width: u32,
    #[serde(default = "default_stall_timeout_s")]
    pub stall_timeout_s: f64,
    /// Restart delays in seconds; the last repeats.
    #[serde(default = "default_backoff_s")]
    pub backoff_s: Vec<f64>,
    /// What the triage model should know about this camera.
    #[serde(default)]
    pub notes: String,
    pub display_name: Option<String>,
    /// The motion gate in front of detection.
    #[serde(default)]
    pub motion: MotionConfig,
}

/// `[models]`: names from `streamer models list` (or a `.gguf` path for
/// the LLM).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsSection {
    #[serde(default = "default_detector")]
    pub detector: String,
    /// Person embedder (default: the upright MobileNetV2 crops, better and
    /// cheaper at the live rate of 5 fps; README, Identity).
    #[serde(default = "default_embedder")]
    pub embedder: String,
    /// `"none"`: stage two uses the rules only.
    #[serde(default = "default_llm")]
    pub llm: String,
    #[serde(default = "default_llm_threads")]
    pub llm_threads: usize,
    /// ONNX Runtime threads of each worker's detector and embedder
    /// (default: the cores shared out over the workers).
    pub detector_threads: Option<usize>,
    /// Inference workers side by side, each with a detector and an
    /// embedder of its own (default 1).
    #[serde(default = "default_inference_workers")]
    pub inference_workers: usize,
    /// Score threshold override (0-1).
    pub score: Option<f32>,
}

impl Default for ModelsSection {
    fn default() -> Self {
        Self {
            detector: default_detector(),
            embedder: default_embedder(),
            llm: default_llm(),
            llm_threads: default_llm_threads(),
            detector_threads: None,
            inference_workers: default_inference_workers(),
            score: None,
        }
    }
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Also serve the LLM over OpenAI- and Ollama-compatible endpoints
    /// (`/v1/...`, `/api/...`) on the same address.
    #[serde(default)]
    pub serve_models: bool,
    /// How long a served request gives way to camera work before it gets
    /// 503 with Retry-After (camera work always goes first).
    #[serde(default = "default_served_wait_s")]
    pub served_wait_s: f64,
}

fn default_served_wait_s() -> f64 {
    30.0
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            serve_models: false,
            served_wait_s: default_served_wait_s(),
        }
    }
}

fn default_detect_fps() -> f64 {
    5.0
}
fn default_max_width() -> u32 {
    streamer_ingest::DEFAULT_MAX_WIDTH
}
fn default_stall_timeout_s() -> f64 {
    20.0
}
fn default_backoff_s() -> Vec<f64> {
    vec![1.0, 5.0, 10.0, 60.0]
}
fn default_detector() -> String {
    "centernet".into()
}
/// The person embedder live cameras use unless `[models] embedder` names
/// another: MobileNetV2 fed upright crops, its last layer's features
/// joined by block 16's, chosen for the live rate of 5 fps on the labelled
/// footage (README, Identity).
pub const DEFAULT_EMBEDDER: &str = "mobilenetv2-embedder-128x256-block16";

fn default_embedder() -> String {
    DEFAULT_EMBEDDER.into()
}
fn default_llm() -> String {
    "qwen2.5-coder-0.5b".into()
}
fn default_llm_threads() -> usize {
    1
}
fn default_inference_workers() -> usize {
    1
}
fn default_listen() -> String {
    DEFAULT_LISTEN.into()
}

/// Every problem found in a config file, one per line with its key path.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem(s):",
            self.file.display(),
            self.problems.len()
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A checked config: what `run` needs, already converted.
#[derive(Debug)]
pub struct Loaded {
    pub config: StreamerConfig,
    pub cameras: Vec<CameraSpec>,
    pub listen: SocketAddr,
    pub zone: Zone,
}

impl Loaded {
    /// The alerts stage's view of the file.
    pub fn alerts_config(&self) -> Option<AlertsConfig> {
        let c = &self.config;
        let mqtt = c.mqtt.clone()?;
        let mut alerts = AlertsConfig {
            mqtt,
            routing: c.routing.clone(),
            triage: c.triage.clone(),
            cameras: c
                .cameras
                .iter()
                .map(|(name, cam)| {
                    (
                        name.clone(),
                        CameraConfig {
                            notes: cam.notes.clone(),
                            display_name: cam.display_name.clone(),
                        },
                    )
                })
                .collect(),
            ..AlertsConfig::default()
        };
        if let Some(dir) = &c.outbox_dir {
            alerts.outbox_dir = dir.clone();
        }
        Some(alerts)
    }
}

/// Reads, substitutes, parses and checks `path`, reporting every problem.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigErrors> {
    let fail = |problems: Vec<String>| ConfigErrors {
        file: path.to_path_buf(),
        problems,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(vec![format!("cannot read the file: {e}")]))?;
    parse(&text, env).map_err(fail)
}

/// [`load`] on text.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, Vec<String>> {
    let mut value: toml::Value = text
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .map_err(|e| vec![format!("not valid TOML: {}", e.message().trim())])?;
    let mut problems = Vec::new();
    substitute(&mut value, &mut String::new(), env, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let config: StreamerConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().message().to_string();
        vec![if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }]
    })?;
    let cameras = check(&config, &mut problems);
    let listen = match config.http.listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(format!(
                "http.listen: `{}` is not HOST:PORT with an IP address (e.g. {DEFAULT_LISTEN}, or [::1]:9470)",
                config.http.listen
            ));
            None
        }
    };
    if !(config.http.served_wait_s.is_finite()
        && (1.0..=3600.0).contains(&config.http.served_wait_s))
    {
        problems.push(format!(
            "http.served_wait_s: {} is out of range; use 1 to 3600 seconds (30 is the default)",
            config.http.served_wait_s
        ));
    }
    let zone = match &config.timezone {
        None => Zone::System,
        Some(name) => Zone::named(name).unwrap_or_else(|| {
            problems.push(format!(
                "timezone: `{name}` is not an IANA time zone known to this system (e.g. Europe/Berlin, America/New_York; see /usr/share/zoneinfo)"
            ));
            Zone::System
        }),
    };
    match listen {
        Some(listen) if problems.is_empty() => {
            let loaded = Loaded {
                config,
                cameras,
                listen,
                zone,
            };
            if let Some(alerts) = loaded.alerts_config() {
                if let Err(streamer_alerts::AlertsError::Config(more)) = alerts.validate() {
                    return Err(more);
                }
            }
            Ok(loaded)
        }
        _ => Err(problems),
    }
}

/// Replaces `${VAR}` in every string, recording the key path of each
/// missing variable.
fn substitute(
    value: &mut toml::Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) {
    match value {
        toml::Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.push(format!("{path}: `${{` without a closing `}}`"));
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => problems.push(format!(
                        "{path}: environment variable {name} is not set (export it, or put it in the service's EnvironmentFile)"
                    )),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                substitute(item, path, env, problems);
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                substitute(item, path, env, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// What serde cannot check, as camera specs.
fn check(config: &StreamerConfig, problems: &mut Vec<String>) -> Vec<CameraSpec> {
    let mut specs = Vec::new();
    let mut slugs: BTreeMap<String, &str> = BTreeMap::new();
    for (name, cam) in &config.cameras {
        let key = format!("cameras.{name}");
        let slug = camera_slug(name);
        if slug.is_empty() {
            problems.push(format!("{key}: the name needs a letter or digit"));
        } else if let Some(other) = slugs.insert(slug.clone(), name) {
            problems.push(format!(
                "{key}: `{name}` and `{other}` are the same camera to Home Assistant (both `{slug}`); rename one"
            ));
        }
        let rtsp = |field: &str, url: &str, problems: &mut Vec<String>| {
            if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
                Some(LiveInput::Rtsp(url.to_string()))
            } else {
                problems.push(format!(
                    "{key}.{field}: `{}` must start with rtsp:// or rtsps:// (for other sources use gst_source)",
                    streamer_core::redact_urls(url)
                ));
                None
            }
        };
        let input = match (&cam.url, &cam.gst_source) {
            (Some(url), None) => {
                let main = rtsp("url", url, problems);
                match &cam.detect_url {
                    Some(sub) => rtsp("detect_url", sub, problems).filter(|_| main.is_some()),
                    None => main,
                }
            }
            (None, Some(_)) if cam.detect_url.is_some() => {
                problems.push(format!(
                    "{key}.detect_url: only goes with url (a gst_source pipeline picks its own stream)"
                ));
                None
            }
            (None, Some(src)) if !src.trim().is_empty() => Some(LiveInput::GstSource(src.clone())),
            (None, Some(_)) => {
                problems.push(format!("{key}.gst_source: is empty"));
                None
            }
            (Some(_), Some(_)) => {
                problems.push(format!("{key}: give url or gst_source, not both"));
                None
            }
            (None, None) => {
                problems.push(format!(
                    "{key}: needs url = \"rtsp://…\" (or gst_source = \"…\")"
                ));
                None
            }
        };
        let fps = if !(cam.detect_fps > 0.0 && cam.detect_fps <= 30.0) {
            problems.push(format!(
                "{key}.detect_fps: {} is out of range; use a value above 0 and at most 30 (5 is typical)",
                cam.detect_fps
            ));
            None
        } else {
            Fps::from_f64(cam.detect_fps)
                .map_err(|e| problems.push(format!("{key}.detect_fps: {e}")))
                .ok()
        };
        if !(160..=7680).contains(&cam.max_width) {
            problems.push(format!(
                "{key}.max_width: {} is out of range; use 160 to 7680 pixels (1280 is the default)",
                cam.max_width
            ));
        }
        problems.extend(cam.motion.problems(&format!("{key}.motion")));
        if !(cam.stall_timeout_s.is_finite() && cam.stall_timeout_s >= 1.0) {
            problems.push(format!(
                "{key}.stall_timeout_s: {} must be at least 1 second",
                cam.stall_timeout_s
            ));
        }
        let backoff = if cam.backoff_s.iter().all(|s| s.is_finite() && *s > 0.0) {
            Backoff::new(
                cam.backoff_s
                    .iter()
                    .map(|s| Duration::from_secs_f64(*s))
                    .collect(),
                0.2,
            )
        } else {
            None
        };
        if backoff.is_none() {
            problems.push(format!(
                "{key}.backoff_s: needs at least one delay, each above 0 seconds (e.g. [1, 5, 10, 60])"
            ));
        }
        if let (Some(input), Some(fps), Some(backoff)) = (input, fps, backoff) {
            specs.push(CameraSpec {
                name: name.clone(),
                input,
                settings: LiveSettings {
                    fps,
                    transport: cam.transport,
                    latency_ms: cam.latency_ms,
                    network_timeout: Duration::from_secs_f64(
                        cam.stall_timeout_s.clamp(1.0, 60.0) / 2.0,
                    ),
                    max_width: cam.max_width,
                },
                stall_timeout: Duration::from_secs_f64(cam.stall_timeout_s.max(1.0)),
                backoff,
                motion: Some(cam.motion.clone()),
            });
        }
    }
    // Names elsewhere must be configured cameras: a typo is an error.
    let known = |c: &str| config.cameras.contains_key(c);
    for camera in config.routing.camera_cooldown_secs.keys() {
        if !known(camera) {
            problems.push(format!(
                "routing.camera_cooldown_secs.{camera}: no camera `{camera}` under [cameras] ({})",
                config
                    .cameras
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    for (i, window) in config.routing.quiet_hours.iter().enumerate() {
        for camera in &window.cameras {
            if !known(camera) {
                problems.push(format!(
                    "routing.quiet_hours[{i}].cameras: no camera `{camera}` under [cameras]"
                ));
            }
        }
    }
    let m = &config.models;
    if m.llm_threads == 0 {
        problems.push("models.llm_threads: must be at least 1".into());
    }
    if m.inference_workers == 0 {
        problems.push("models.inference_workers: must be at least 1 (1 is the default)".into());
    }
    if m.detector_threads == Some(0) {
        problems.push(
            "models.detector_threads: must be at least 1 (or leave it out for all cores)".into(),
        );
    }
    if let Some(s) = m.score {
        if !(0.0..=1.0).contains(&s) {
            problems.push(format!("models.score: {s} must be between 0 and 1"));
        }
    }
    let cache = ModelCache::from_env();
    let names = [
        ("models.detector", &m.detector),
        ("models.embedder", &m.embedder),
    ];
    for (key, name) in names {
        if cache.entry(name).is_err() {
            problems.push(format!(
                "{key}: unknown model `{name}` (see `streamer models list`)"
            ));
        }
    }
    if m.llm != "none" && !m.llm.ends_with(".gguf") && cache.entry(&m.llm).is_err() {
        problems.push(format!(
            "models.llm: unknown model `{}` (see `streamer models list`, a .gguf path, or \"none\")",
            m.llm
        ));
    }
    specs
}
