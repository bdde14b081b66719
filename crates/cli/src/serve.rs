//! `streamer serve`: the in-process model behind OpenAI- and
//! Ollama-compatible endpoints, on the same HTTP server (and `/health`)
//! that `streamer run` uses. The endpoints themselves are
//! `streamer_serve`'s; this loads the model, checks the address and waits
//! for SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use streamer_models::ModelCache;
use streamer_reason::{LlmRuntime, RuntimeOptions};
use streamer_runner::{HttpServer, Telemetry};

use crate::{bench_cmd, config};

#[derive(Args)]
pub struct ServeArgs {
    /// A config file: its `[models] llm`, `llm_threads` and `[http] listen`
    /// are used. Without one, the embedded default model on 127.0.0.1:9470.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on. Any address other than loopback needs a bearer
    /// token in the environment variable STREAMER_API_TOKEN.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The model to serve (a name from `streamer models list`, or a .gguf
    /// path), instead of the config's.
    #[arg(long)]
    pub model: Option<String>,
    /// Vision projector (mmproj GGUF): requests may then carry images.
    #[arg(long, value_name = "FILE")]
    pub projector: Option<PathBuf>,
    /// Threads for the model (default: the config's llm_threads, else all
    /// cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Context window of each request, in tokens (prompt plus reply).
    #[arg(long, default_value_t = 4096)]
    pub context: u32,
    /// Conversations whose KV cache is kept warm at once.
    #[arg(long, default_value_t = 2)]
    pub slots: usize,
    /// Requests waiting or running at most; more get 503 with Retry-After.
    #[arg(long, default_value_t = 4)]
    pub max_queued: usize,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let loaded = match &args.config {
        Some(path) => Some(config::load(path, &|name| std::env::var(name).ok())?),
        None => None,
    };
    let models = loaded.as_ref().map(|l| &l.config.models);
    let name = args
        .model
        .clone()
        .or_else(|| models.map(|m| m.llm.clone()))
        .unwrap_or_else(|| config::ModelsSection::default().llm);
    if name == "none" {
        anyhow::bail!("models.llm is \"none\": name a model to serve (or pass --model NAME)");
    }
    let listen = args
        .listen
        .or(loaded.as_ref().map(|l| l.listen))
        .unwrap_or_else(|| {
            config::DEFAULT_LISTEN
                .parse()
                .expect("the default address parses")
        });
    let token = streamer_serve::token_for(listen)?;
    let cache = ModelCache::from_env();
    let path = bench_cmd::model_path(&cache, &name)?;
    let threads = args.threads.or(models.map(|m| m.llm_threads));
    let runtime = Arc::new(
        LlmRuntime::load(
            &path,
            RuntimeOptions {
                context: args.context,
                threads,
                projector: args.projector.clone(),
                served_slots: args.slots.max(1),
                max_served: args.max_queued.max(1),
                ..RuntimeOptions::default()
            },
        )
        .with_context(|| format!("loading {}", path.display()))?,
    );
    let served_name = if name.ends_with(".gguf") {
        streamer_serve::name_from_path(&path)
    } else {
        name.clone()
    };
    let api = Arc::new(streamer_serve::ModelApi::new(
        Arc::clone(&runtime),
        &served_name,
        token.clone(),
    ));
    let health_runtime = Arc::clone(&runtime);
    let health_name = served_name.clone();
    let http = HttpServer::start_with(
        listen,
        Arc::new(Telemetry::new(std::iter::empty())),
        Arc::new(move || {
            let (queued, max) = health_runtime.served_load();
            json!({
                "status": "serving",
                "model": {"loaded": true, "name": health_name, "vision": health_runtime.info().vision},
                "requests": {"queued_or_running": queued, "max": max},
            })
        }),
        streamer_serve::routes(api),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    eprintln!(
        "serving {served_name} on http://{0}/v1 (OpenAI) and http://{0}/api (Ollama){1}",
        http.addr(),
        if token.is_some() {
            ", bearer token required"
        } else {
            ""
        }
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("stopping");
    runtime.close_and_wait(Duration::from_secs(10));
    drop(http);
    Ok(ExitCode::SUCCESS)
}
