//! `streamer`: local event processing for home-security cameras.

mod alerts;
mod bench_cmd;
mod bench_images;
mod calibrate;
mod cameras_bench;
mod config;
mod models_cmd;
mod perf;
mod replay;
mod run;
mod runtime;
mod serve;
mod split;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// jemalloc for the binary's own allocations: frames, crops and descriptors
/// come and go on many camera and worker threads, and glibc's per-thread
/// arenas kept much of what they freed (on the 16-camera soak RSS grew
/// 6.8 % with glibc, 4.5 % with jemalloc; see README, "How many cameras?").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "streamer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the live cameras of a config file through detect -> identity ->
    /// alerts until SIGTERM/SIGINT, with /health and /metrics over HTTP.
    Run(run::RunArgs),
    /// Check a config file: every problem with its key path (exit 2), or
    /// the effective cameras with passwords redacted.
    CheckConfig {
        /// The config file (TOML).
        file: std::path::PathBuf,
    },
    /// Run footage (video files or image folders) through the stages of the
    /// live cameras: decode -> detect -> identity (-> alerts).
    ///
    /// Prints one JSON line per sampled frame on stdout and a summary on stderr.
    Replay(Box<replay::ReplayArgs>),
    /// Score a model on the home-security assistant benchmark (96 LLM tests in
    /// 15 suites, 35 image tests, 12 security scenes), or measure its speed against llama.cpp's
    /// own tools (`--mode perf`), or find how many live cameras the detection
    /// stages keep up with (`--mode cameras`). Runs offline on the in-process
    /// model unless `--endpoint` names an OpenAI-compatible server.
    Bench(Box<bench_cmd::BenchArgs>),
    /// Make test footage of a camera that is idle most of the time: the
    /// empty scene of vtest (its per-pixel median) with sensor noise, real
    /// vtest segments spliced in and a simulated IR switch, as H.264 MP4,
    /// with labels of where people are in FILE.json.
    Footage {
        /// The MP4 to write.
        out: std::path::PathBuf,
        /// Frames per second.
        #[arg(long, default_value_t = 5)]
        fps: u32,
    },
    /// Serve the model over OpenAI- and Ollama-compatible HTTP endpoints
    /// (/v1/chat/completions, /v1/models, /api/chat, /api/tags, ...), for
    /// Home Assistant's Ollama integration, benchmark harnesses and scripts.
    Serve(Box<serve::ServeArgs>),
    /// List, fetch, verify, locate and calibrate models in the model cache.
    Models {
        #[command(subcommand)]
        command: models_cmd::ModelsCommand,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STREAMER_LOG")
                .unwrap_or_else(|_| EnvFilter::new("info,hnsw_rs=warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::CheckConfig { file } => check_config(&file),
        Command::Replay(args) => replay::run(*args),
        Command::Bench(args) => bench_cmd::run(*args),
        Command::Footage { out, fps } => footage(&out, fps),
        Command::Serve(args) => serve::run(*args),
        Command::Models { command } => models_cmd::run(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn footage(out: &std::path::Path, fps: u32) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    if !(1..=30).contains(&fps) {
        anyhow::bail!("--fps {fps} is out of range; use 1 to 30");
    }
    let vtest = streamer_models::ModelCache::from_env()
        .require("vtest")
        .context("the footage is made from vtest (run `streamer models fetch vtest`)")?;
    let footage = streamer_footage::make(&vtest, fps, &streamer_footage::standard_plan(), out)?;
    eprintln!(
        "{}: {} frames at {fps} fps, {:.0} % idle; labels in {}",
        out.display(),
        footage.frames,
        footage.idle_share() * 100.0,
        streamer_footage::labels_path(out).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match config::load(file, &|name| std::env::var(name).ok()) {
        Ok(loaded) => {
            println!("{}: ok", file.display());
            for cam in &loaded.cameras {
                println!(
                    "  camera {:<14} {} ({} fps, stall after {} s)",
                    cam.name,
                    cam.input.redacted(),
                    cam.settings.fps.as_f64(),
                    cam.stall_timeout.as_secs_f64()
                );
            }
            let m = &loaded.config.models;
            println!(
                "  models          detector {}, embedder {}, llm {}",
                m.detector, m.embedder, m.llm
            );
            match &loaded.config.mqtt {
                Some(mqtt) => println!(
                    "  mqtt            {}:{} (prefix {})",
                    mqtt.host, mqtt.port, mqtt.topic_prefix
                ),
                None => println!("  mqtt            none (alerts printed only)"),
            }
            println!("  http            {}", loaded.listen);
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::from(2))
        }
    }
}
