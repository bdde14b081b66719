//! `streamer run --config FILE`: live cameras through the whole pipeline
//! until SIGTERM or SIGINT, with `/health` and `/metrics` over HTTP.
//! The stage graph is `streamer_runner`'s; this only loads what the config
//! names, starts it, reports and shuts it down.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use streamer_alerts::AlertPipeline;
use streamer_core::Frame;
use streamer_identity::VisitEvent;
use streamer_models::ModelCache;
use streamer_reason::ChatBackend;
use streamer_runner::{
    Clock, FrameOutcome, HttpServer, IdentityStage, LiveRunner, Observer, StageGraph, Stages,
};
use streamer_vision::Detector;

use crate::{config, runtime};

#[derive(Args)]
pub struct RunArgs {
    /// The config file (TOML): cameras, models, mqtt, routing, triage,
    /// identity, http, outbox_dir, timezone. See examples/streamer.toml.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Also print every detection frame and visit event as a JSON line on
    /// stdout.
    #[arg(long)]
    pub json: bool,
}

/// KV-cache slots kept for HTTP clients when `[http] serve_models` is on.
const SERVED_SLOTS: usize = 2;

/// How long shutdown may take for in-flight work and the outbox.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(10);

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let loaded = config::load(&args.config, &|name| std::env::var(name).ok())?;
    let cache = ModelCache::from_env();
    let m = &loaded.config.models;
    let threads_each = m
        .detector_threads
        .unwrap_or_else(|| runtime::worker_threads(m.inference_workers));
    let threads = Some(threads_each);
    let load_detector = || -> Result<Detector> {
        let mut detector = runtime::detector(&cache, &m.detector, threads)?;
        if let Some(s) = m.score {
            detector.set_score_threshold(s);
        }
        Ok(detector)
    };
    let detector = load_detector()?;
    let (embedder, tracker) =
        runtime::identity_stage(&cache, &m.embedder, threads, loaded.config.identity.clone())?;
    let serve_models = loaded.config.http.serve_models;
    // One model for the cameras and the endpoints: loaded once, with KV
    // slots of its own for HTTP clients when the endpoints are on.
    let served_slots = if serve_models { SERVED_SLOTS } else { 0 };
    let shared_llm = if loaded.alerts_config().is_some() || serve_models {
        runtime::llm(
            &cache,
            &m.llm,
            m.llm_threads,
            served_slots,
            Duration::from_secs_f64(loaded.config.http.served_wait_s),
        )?
    } else {
        None
    };
    let model_routes = match (&shared_llm, serve_models) {
        (Some(llm), true) => {
            let token = streamer_serve::token_for(loaded.listen)?;
            let name = m.llm.trim_end_matches(".gguf").to_string();
            let api = streamer_serve::ModelApi::new(Arc::clone(llm), &name, token);
            Some(streamer_serve::routes(Arc::new(api)))
        }
        (None, true) => anyhow::bail!(
            "http.serve_models: there is no model to serve ([models] llm = \"none\"); name a model or turn serve_models off"
        ),
        _ => None,
    };
    let alerts = match loaded.alerts_config() {
        Some(alerts_config) => {
            let llm = shared_llm.clone();
            let backend = llm.clone().map(|r| r as Arc<dyn ChatBackend>);
            let pipeline = AlertPipeline::start(&alerts_config, backend)
                .context("starting the alerts stage")?;
            eprintln!(
                "alerts: MQTT {}:{}, stage two by {}",
                alerts_config.mqtt.host,
                alerts_config.mqtt.port,
                llm.as_ref().map_or("rules only".into(), |l| l.describe())
            );
            Some((Arc::new(pipeline), llm))
        }
        None => {
            eprintln!("alerts: no [mqtt] section, so alerts are printed here only");
            None
        }
    };
    for cam in &loaded.cameras {
        eprintln!("camera {}: {}", cam.name, cam.input.redacted());
    }
    let graph = StageGraph::new(
        detector,
        Some(IdentityStage { embedder, tracker }),
        alerts.as_ref().map(|(a, _)| Arc::clone(a)),
        Clock::Wall(loaded.zone.clone()),
    );
    let mut more_workers = Vec::new();
    for _ in 1..m.inference_workers {
        let embedder = runtime::embedder(&cache, &m.embedder, threads)?;
        more_workers.push(graph.worker(load_detector()?, Some(embedder))?);
    }
    eprintln!(
        "inference: {} worker(s), {} ONNX Runtime thread(s) each",
        m.inference_workers, threads_each
    );
    let stages = Stages {
        graph,
        more_workers,
        observer: Box::new(Terminal { json: args.json }),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let runner = LiveRunner::start(loaded.cameras.clone(), stages)?;
    let http = {
        let weak = alerts.as_ref().map(|(a, _)| Arc::downgrade(a));
        let model = alerts
            .as_ref()
            .and_then(|(_, l)| l.as_ref().map(|l| l.describe()));
        HttpServer::start_with(
            loaded.listen,
            Arc::clone(runner.telemetry()),
            Arc::new(move || {
                let alerts = weak.as_ref().and_then(|w| w.upgrade());
                json!({
                    "status": "running",
                    "model": { "loaded": model.is_some(), "name": model },
                    "mqtt": {
                        "configured": alerts.is_some(),
                        "connected": alerts.as_ref().is_some_and(|a| a.is_connected()),
                        "outbox_depth": alerts.as_ref().map(|a| a.pending()),
                    },
                    "model_queue": alerts.as_ref().and_then(|a| a.model_queue()),
                })
            }),
            model_routes.unwrap_or_default(),
        )?
    };
    if serve_models {
        eprintln!(
            "model endpoints: http://{0}/v1 (OpenAI) and http://{0}/api (Ollama)",
            http.addr()
        );
    }
    eprintln!(
        "streamer running: {} camera(s), health on http://{}/health",
        loaded.cameras.len(),
        http.addr()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "stopping: sources first, then in-flight work (at most {} s)",
        SHUTDOWN_BOUND.as_secs()
    );
    let started = Instant::now();
    let pipeline = runner.stop();
    drop(http);
    drop(pipeline);
    if let Some((alerts, llm)) = alerts {
        let left = match Arc::try_unwrap(alerts) {
            Ok(pipeline) => pipeline.shutdown(SHUTDOWN_BOUND.saturating_sub(started.elapsed())),
            Err(_) => {
                tracing::warn!("alerts stage still in use at exit; outbox kept for next start");
                0
            }
        };
        if let Some(llm) = llm {
            llm.close_and_wait(SHUTDOWN_BOUND);
        }
        eprintln!("stopped: {left} alert message(s) left in the outbox for the next start");
    } else {
        eprintln!("stopped");
    }
    // Served requests and late stage twos may hold the model on other
    // threads: the worker must be out of llama.cpp before the process
    // exits, or its teardown crashes under it.
    if let Some(llm) = shared_llm {
        if !llm.close_and_wait(SHUTDOWN_BOUND) {
            tracing::warn!("the model worker did not stop within the shutdown bound");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints alerts as readable lines on stderr, and with `--json` frames and
/// visit events as JSON lines on stdout.
struct Terminal {
    json: bool,
}

impl Terminal {
    fn json_line(&self, line: &impl serde::Serialize) {
        if let Ok(text) = serde_json::to_string(line) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }
}

impl Observer for Terminal {
    fn frame(&mut self, frame: &Frame, outcome: &FrameOutcome) {
        if self.json {
            self.json_line(&json!({
                "camera": &*frame.camera, "seq": frame.seq, "time_ms": frame.pts_ms(),
                "width": frame.width, "height": frame.height, "detections": outcome.detections,
            }));
            self.visits(&outcome.events);
        }
        for receipt in &outcome.alerts {
            let a = &receipt.initial;
            eprintln!(
                "{}  {:<12} {}  {:<10} {}",
                chrono::Local::now().format("%H:%M:%S"),
                a.camera,
                a.visit_id,
                a.urgency,
                a.message
            );
        }
    }

    fn visits(&mut self, events: &[VisitEvent]) {
        if self.json {
            for event in events {
                self.json_line(event);
            }
        }
    }
}
