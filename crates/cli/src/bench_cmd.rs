//! `streamer bench` (also `streamer replay --bench`): the home-security
//! assistant benchmark (96 LLM tests in 15 suites, 35 image tests and 12
//! security scenes) against the
//! in-process model or any OpenAI-compatible endpoint, and the LLM perf
//! comparison with llama.cpp's own tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use streamer_bench::{
    classify, BoardRow, Check, Finish, LlmTest, Outcome, ReplyRecord, RequestShape, Role, RunInfo,
    RunReport, SeriesReport, TestRecord, ToolCall,
};
use streamer_models::ModelCache;
use streamer_reason::{
    ChatBackend, ChatMessage, ChatReply, ChatRequest, EndpointConfig, FinishReason, ImageInput,
    LlmRuntime, OpenAiClient, RuntimeOptions, Sampling, SyntheticProjector, Tool,
};

use crate::{bench_images, perf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The 96 LLM tests.
    Llm,
    /// The 35 image tests and the 12 security-judgement scenes (needs a
    /// vision model).
    Vlm,
    /// Both.
    Full,
    /// Time to first token and decode speed against llama-bench/llama-server.
    Perf,
    /// How many live cameras this machine sustains: N RTSP streams from a
    /// local server through the real live pipeline, gate off and on, busy
    /// and idle-stretch footage.
    Cameras,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, default_value = "llm")]
    pub mode: Mode,
    /// In-process model, by name from `streamer models list`, or a GGUF path.
    #[arg(long, default_value = "qwen2.5-coder-0.5b")]
    pub model: String,
    /// Vision projector (mmproj GGUF) for the in-process model.
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// Use a generated projector with random weights: exercises the image
    /// path of the in-process model; its answers are meaningless.
    #[arg(long, conflicts_with = "projector")]
    pub synthetic_projector: bool,
    /// OpenAI-compatible endpoint (e.g. http://127.0.0.1:8080/v1) instead of
    /// the in-process model. Nothing leaves the machine unless this is set.
    #[arg(long, requires = "endpoint_model")]
    pub endpoint: Option<String>,
    /// Model name to send to the endpoint.
    #[arg(long = "endpoint-model")]
    pub endpoint_model: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long, default_value = "STREAMER_API_KEY")]
    pub api_key_env: String,
    /// The endpoint's model accepts images.
    #[arg(long)]
    pub endpoint_vision: bool,
    /// Only suites whose name contains this (case-insensitive).
    #[arg(long)]
    pub suite: Option<String>,
    /// Threads for the in-process model (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Per-call idle timeout for text tests, seconds (images get 4x).
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Write the full results as JSON here: per test the request shape, the
    /// whole reply, each check's result and the failure's class.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report here: score and spread, a bar per
    /// suite, speed and memory, the failures with their replies, and a
    /// leaderboard of the runs kept in the results folder.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Repeat the run with this many seeds (--seed, --seed + 1, ...) and
    /// report the mean and standard deviation per suite and overall.
    #[arg(long, default_value_t = 1)]
    pub seeds: u32,
    /// The first sampling seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u32,
    /// Folder where every run is saved for the HTML leaderboard (default:
    /// $STREAMER_BENCH_RESULTS, else ~/.local/share/streamer/bench-results).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Write every picture the image tests show (photos, their
    /// challenging-condition variants, the security scenes) into this
    /// folder as PNG, and exit without loading a model.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Perf mode: rounds over the 12 triage prompts.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Perf mode: directory with llama.cpp's llama-bench and llama-server
    /// (default: the one scripts/build-llama-tools.sh builds, if present).
    #[arg(long)]
    pub llama_tools: Option<PathBuf>,
    /// Cameras mode: the detector, by name.
    #[arg(long, default_value = "centernet")]
    pub detector: String,
    /// Cameras mode: the person embedder, by name (default: live cameras').
    #[arg(long, default_value = crate::config::DEFAULT_EMBEDDER)]
    pub embedder: String,
    /// Cameras mode: measured seconds for each number of cameras (5-80).
    /// Steps on idle footage last at least its whole 96 s cycle, so that
    /// every camera shows the footage's own share of idle time.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Cameras mode: the most cameras to try.
    #[arg(long, default_value_t = 64)]
    pub max_cameras: usize,
    /// Cameras mode: the first number of cameras to try; the search doubles
    /// from there while they are sustained, then bisects (a start near the
    /// expected figure saves the small steps).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub start_cameras: u64,
    /// Cameras mode: only these cases (busy-off, busy-on, idle-off,
    /// idle-on: footage and motion gate), comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Cameras mode: inference workers side by side, each with its own
    /// detector and embedder on the cores shared out (as
    /// `models.inference_workers`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    pub workers: u64,
    /// Cameras mode: detection only, no embedding, visits or alerts (the
    /// figure the bare-inference bound speaks of).
    #[arg(long)]
    pub no_identity: bool,
    /// Cameras mode: keep the generated footage in this folder and reuse it
    /// on the next run (default: a temporary folder, made anew each run).
    #[arg(long, value_name = "DIR")]
    pub footage_dir: Option<PathBuf>,
    /// Cameras mode: afterwards, run the sustained number of gated cameras
    /// on idle footage this many minutes (RSS growth, stalls); 0: no soak.
    #[arg(long, default_value_t = 0)]
    pub soak_minutes: u64,
    /// Cameras mode: soak this many cameras straight away, in a fresh
    /// process, instead of searching first (with `--soak-minutes`).
    #[arg(long)]
    pub soak_cameras: Option<usize>,
}

impl BenchArgs {
    /// The defaults of `streamer bench`, in `mode`.
    pub fn defaults(mode: Mode) -> Self {
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: BenchArgs,
        }
        let mut args = <Wrapper as clap::Parser>::parse_from(["streamer-bench"]).args;
        args.mode = mode;
        args
    }
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let cache = ModelCache::from_env();
    if args.mode == Mode::Perf {
        return run_perf(&args, &cache);
    }
    if args.mode == Mode::Cameras {
        return crate::cameras_bench::run(&args);
    }
    if let Some(dir) = &args.images {
        return write_images(&args, &cache, dir);
    }
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let backend = backend(&args, &cache)?;
    eprintln!("benchmark against {}", backend.describe());
    if matches!(args.mode, Mode::Vlm | Mode::Full) && !backend.sees_images() {
        bail!(
            "the VLM tests need a model that sees images: pass --projector FILE \
             (or --synthetic-projector to exercise the path), or --endpoint-vision"
        );
    }
    let mut runs = Vec::new();
    for seed in (0..args.seeds).map(|i| args.seed.wrapping_add(i)) {
        if args.seeds > 1 {
            eprintln!("run with seed {seed}");
        }
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let started = Instant::now();
        let mut tests = Vec::new();
        if matches!(args.mode, Mode::Llm | Mode::Full) {
            tests.extend(run_llm(&args, backend.as_ref(), seed)?);
        }
        if matches!(args.mode, Mode::Vlm | Mode::Full) {
            tests.extend(run_vlm(&args, &cache, backend.as_ref(), seed)?);
        }
        let info = RunInfo {
            model: model_name(&args),
            backend: backend.describe(),
            machine: machine(),
            date,
            seed,
            rss_peak_mib: if args.endpoint.is_some() {
                0.0
            } else {
                peak_rss_mib()
            },
            wall_s: started.elapsed().as_secs_f64(),
        };
        runs.push(RunReport::new(info, tests));
    }
    let series = SeriesReport::new(runs);
    print_report(&series);
    if args.synthetic_projector && matches!(args.mode, Mode::Vlm | Mode::Full) {
        println!(
            "note: the image tests ran through a generated projector with random weights; \
             their score measures nothing but the path"
        );
    }
    let json = serde_json::to_vec_pretty(&series)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    let results = args.results.clone().unwrap_or_else(default_results_dir);
    let saved = save_result(&results, &series, &json);
    if let Some(path) = &args.html {
        let board = leaderboard(&results, saved.as_deref(), &series);
        std::fs::write(path, streamer_bench::render_html(&series, &board))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "HTML report written to {} (leaderboard: {} run(s) from {})",
            path.display(),
            board.len(),
            results.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The model's name for reports: the manifest name or the file's stem, or
/// the endpoint's model.
fn model_name(args: &BenchArgs) -> String {
    if args.endpoint.is_some() {
        return args.endpoint_model.clone().unwrap_or_default();
    }
    let path = std::path::Path::new(&args.model);
    if path.extension().is_some_and(|e| e == "gguf") {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.model.clone())
    } else {
        args.model.clone()
    }
}

/// The machine in a few words: CPU model, architecture, cores.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores")
}

/// Where runs are kept for the leaderboard: `$STREAMER_BENCH_RESULTS`, else
/// `$XDG_DATA_HOME/streamer/bench-results` (`~/.local/share/...`).
fn default_results_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMER_BENCH_RESULTS") {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/share")
        });
    data.join("streamer/bench-results")
}

/// Saves the series into the results folder; a failure to save is reported
/// and does not fail the run.
fn save_result(dir: &std::path::Path, series: &SeriesReport, json: &[u8]) -> Option<PathBuf> {
    let name: String = format!("{}-{}-{}", series.date, series.model, series.backend)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}.json"));
    let saved = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, json));
    match saved {
        Ok(()) => {
            eprintln!("run saved to {}", path.display());
            Some(path)
        }
        Err(e) => {
            eprintln!("warning: could not save the run to {}: {e}", path.display());
            None
        }
    }
}

/// The leaderboard: every series saved in `dir`, and this one if it could
/// not be saved.
fn leaderboard(
    dir: &std::path::Path,
    saved: Option<&std::path::Path>,
    series: &SeriesReport,
) -> Vec<BoardRow> {
    let (mut rows, skipped) = streamer_bench::board_from_dir(dir);
    for s in skipped {
        eprintln!("leaderboard: skipping {s}");
    }
    if saved.is_none() {
        rows.push(BoardRow::from(series));
        streamer_bench::sort_board(&mut rows);
    }
    rows
}

fn backend(args: &BenchArgs, cache: &ModelCache) -> Result<Box<dyn ChatBackend>> {
    if let Some(url) = &args.endpoint {
        let mut config = EndpointConfig::new(url, args.endpoint_model.clone().unwrap_or_default());
        config.api_key = std::env::var(&args.api_key_env)
            .ok()
            .filter(|k| !k.is_empty());
        config.idle_timeout = Duration::from_secs(args.timeout);
        config.vision = args.endpoint_vision;
        return Ok(Box::new(OpenAiClient::new(config)));
    }
    let model = model_path(cache, &args.model)?;
    let projector = if args.synthetic_projector {
        let info = streamer_reason::LoadedModel::load(&model)?.info();
        let path = cache
            .root()
            .join("synthetic")
            .join(format!("mmproj-random-{}.gguf", info.embedding_width));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        SyntheticProjector::for_text_width(info.embedding_width as u32).write(&path)?;
        eprintln!("using a generated projector with RANDOM weights: image answers are meaningless");
        Some(path)
    } else {
        args.projector.clone()
    };
    Ok(Box::new(LlmRuntime::load(
        &model,
        RuntimeOptions {
            context: 4096,
            threads: args.threads,
            projector,
            ..RuntimeOptions::default()
        },
    )?))
}

/// A manifest name or a path to a GGUF file.
pub fn model_path(cache: &ModelCache, model: &str) -> Result<PathBuf> {
    let path = PathBuf::from(model);
    if path.extension().is_some_and(|e| e == "gguf") {
        if !path.is_file() {
            bail!("{} does not exist", path.display());
        }
        return Ok(path);
    }
    Ok(cache.require(model)?)
}

fn run_perf(args: &BenchArgs, cache: &ModelCache) -> Result<ExitCode> {
    let model = model_path(cache, &args.model)?;
    let llama_tools = args.llama_tools.clone().or_else(|| {
        let default = default_llama_tools();
        default.join("llama-server").is_file().then_some(default)
    });
    if llama_tools.is_none() {
        eprintln!(
            "llama.cpp's own tools are not built: comparison skipped \
             (run scripts/build-llama-tools.sh or pass --llama-tools DIR)"
        );
    }
    let report = perf::run(&perf::PerfOptions {
        model,
        model_name: args.model.clone(),
        threads: args.threads.unwrap_or(2),
        rounds: args.rounds,
        decode_tokens: 128,
        llama_tools,
    })?;
    perf::print(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where scripts/build-llama-tools.sh puts llama.cpp's tools.
fn default_llama_tools() -> PathBuf {
    std::env::var_os("STREAMER_LLAMA_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/streamer/llama-tools")
        })
        .join("b11434/build/bin")
}

/// Whether `--suite` (a case-insensitive part of the name) lets `suite` run.
fn suite_wanted(args: &BenchArgs, suite: &str) -> bool {
    args.suite
        .as_ref()
        .is_none_or(|w| suite.to_lowercase().contains(&w.to_lowercase()))
}

fn run_llm(args: &BenchArgs, backend: &dyn ChatBackend, seed: u32) -> Result<Vec<TestRecord>> {
    let suites = streamer_bench::load_llm(&streamer_bench::fixtures_dir().join("llm"))?;
    let mut results = Vec::new();
    for suite in suites.iter().filter(|s| suite_wanted(args, &s.name)) {
        let tools = to_tools(&streamer_bench::tools_for(&suite.name));
        for test in &suite.tests {
            let shape = suite.shape(test);
            let request = ChatRequest {
                messages: messages(test),
                sampling: sampling(&shape, seed),
                tools: if shape.tools {
                    tools.clone()
                } else {
                    Vec::new()
                },
                ..ChatRequest::default()
            };
            let question = test
                .messages
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let asked = Asked {
                id: &test.id,
                suite: &suite.name,
                title: &test.title,
                shape,
                question,
                image: None,
            };
            let result = run_one(backend, &request, asked, &test.checks);
            report_line(&result);
            results.push(result);
        }
    }
    Ok(results)
}

/// The image tests by suite: perception on photos and their degraded
/// variants ("VLM"), and the security-judgement scenes.
fn vlm_suites() -> Result<Vec<(&'static str, Vec<streamer_bench::VlmTest>)>> {
    let dir = streamer_bench::fixtures_dir().join("vlm");
    Ok(vec![
        ("VLM", streamer_bench::load_vlm(&dir.join("tests.json"))?),
        (
            "Security scenes",
            streamer_bench::load_vlm(&dir.join("scenes.json"))?,
        ),
    ])
}

fn vlm_catalogue() -> Result<std::collections::BTreeMap<String, streamer_bench::ImageSource>> {
    let dir = streamer_bench::fixtures_dir().join("vlm");
    Ok(streamer_bench::load_vlm_catalogue(
        &dir.join("images.json"),
    )?)
}

/// `--images DIR`: every picture the image tests show, for people to look at.
fn write_images(args: &BenchArgs, cache: &ModelCache, dir: &std::path::Path) -> Result<ExitCode> {
    let catalogue = vlm_catalogue()?;
    let images = bench_images::BenchImages::new(cache);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = 0;
    for (suite, tests) in vlm_suites()? {
        if !suite_wanted(args, suite) {
            continue;
        }
        for test in &tests {
            let path = images.prepare(&catalogue, &test.image)?;
            let out = dir.join(format!("{}.png", test.id));
            std::fs::copy(&path, &out)
                .with_context(|| format!("copying {} to {}", path.display(), out.display()))?;
            println!("{}\t{suite}\t{}\t{}", out.display(), test.id, test.title);
            written += 1;
        }
    }
    eprintln!("{written} pictures written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn run_vlm(
    args: &BenchArgs,
    cache: &ModelCache,
    backend: &dyn ChatBackend,
    seed: u32,
) -> Result<Vec<TestRecord>> {
    let catalogue = vlm_catalogue()?;
    let images = bench_images::BenchImages::new(cache);
    let mut results = Vec::new();
    for (suite, tests) in vlm_suites()? {
        if suite_wanted(args, suite) {
            results.extend(run_vlm_suite(
                suite, &tests, &catalogue, &images, backend, seed,
            )?);
        }
    }
    Ok(results)
}

fn run_vlm_suite(
    suite: &str,
    tests: &[streamer_bench::VlmTest],
    catalogue: &std::collections::BTreeMap<String, streamer_bench::ImageSource>,
    images: &bench_images::BenchImages<'_>,
    backend: &dyn ChatBackend,
    seed: u32,
) -> Result<Vec<TestRecord>> {
    let mut results = Vec::new();
    for test in tests {
        let path = images.prepare(catalogue, &test.image)?;
        let shape = test.request_shape();
        let request = ChatRequest {
            messages: vec![ChatMessage::user(test.question.clone())],
            sampling: sampling(&shape, seed),
            images: vec![ImageInput::File(path)],
            ..ChatRequest::default()
        };
        let image = match test.image.variant {
            Some(v) => format!("{} ({})", test.image.source, v.name()),
            None => test.image.source.clone(),
        };
        let asked = Asked {
            id: &test.id,
            suite,
            title: &test.title,
            shape,
            question: test.question.clone(),
            image: Some(image),
        };
        let result = run_one(backend, &request, asked, &test.checks);
        report_line(&result);
        results.push(result);
    }
    Ok(results)
}

/// What a test asked, for its record.
struct Asked<'a> {
    id: &'a str,
    suite: &'a str,
    title: &'a str,
    shape: RequestShape,
    question: String,
    image: Option<String>,
}

fn run_one(
    backend: &dyn ChatBackend,
    request: &ChatRequest,
    asked: Asked<'_>,
    checks: &[Check],
) -> TestRecord {
    let mut record = TestRecord {
        id: asked.id.to_string(),
        suite: asked.suite.to_string(),
        title: asked.title.to_string(),
        request: asked.shape,
        question: asked.question,
        image: asked.image,
        reply: None,
        checks: Vec::new(),
        outcome: Outcome::Error,
        error: None,
        ttft_ms: 0.0,
        decode_tok_s: 0.0,
    };
    match backend.chat(request, &mut |_| {}) {
        Ok(reply) => {
            let kept = reply_record(&reply);
            let scored = streamer_bench::score(checks, &kept.reply());
            record.outcome = classify(checks, &kept, &scored);
            record.checks = scored.checks;
            record.ttft_ms = reply.timing.ttft.as_secs_f64() * 1000.0;
            record.decode_tok_s = reply.timing.decode_tokens_per_s();
            record.reply = Some(kept);
        }
        // A failed call is a failed test, reported, never a crash.
        Err(e) => record.error = Some(e.to_string()),
    }
    record
}

fn report_line(r: &TestRecord) {
    let status = match r.outcome {
        Outcome::Passed => "pass".to_string(),
        other => format!("FAIL {}", other.name()),
    };
    let why = r
        .error
        .clone()
        .or_else(|| {
            r.checks
                .iter()
                .find(|c| !c.passed)
                .map(|c| c.reason.clone())
        })
        .map(|w| format!("  ({w})"))
        .unwrap_or_default();
    eprintln!(
        "{status:<15} {:<22} {:>7.0} ms TTFT {:>5.1} tok/s{why}",
        r.id, r.ttft_ms, r.decode_tok_s
    );
}

fn messages(test: &LlmTest) -> Vec<ChatMessage> {
    test.messages
        .iter()
        .map(|m| {
            let role = serde_json::to_value(m.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "user".into());
            ChatMessage::new(&role, m.content.clone())
        })
        .collect()
}

fn sampling(shape: &RequestShape, seed: u32) -> Sampling {
    Sampling {
        temperature: shape.temperature,
        top_p: shape.top_p,
        max_tokens: shape.max_tokens,
        seed,
        ..Sampling::default()
    }
}

fn to_tools(definitions: &[serde_json::Value]) -> Vec<Tool> {
    definitions
        .iter()
        .filter_map(|d| serde_json::from_value(d["function"].clone()).ok())
        .collect()
}

fn reply_record(reply: &ChatReply) -> ReplyRecord {
    ReplyRecord {
        content: reply.content.clone(),
        reasoning: reply.reasoning.clone(),
        tool_calls: reply
            .tool_calls
            .iter()
            .map(|c| ToolCall {
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })
            .collect(),
        malformed_calls: reply
            .malformed_calls
            .iter()
            .map(|m| format!("{} ({})", m.raw, m.problem))
            .collect(),
        finish: match reply.finish {
            FinishReason::Length => Finish::Length,
            _ if !reply.tool_calls.is_empty() => Finish::ToolCalls,
            _ => Finish::Stop,
        },
        prompt_tokens: reply.timing.prompt_tokens,
        completion_tokens: reply.timing.completion_tokens,
    }
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

/// A memory figure of this process from /proc/self/status (`VmRSS`,
/// `VmHWM`, …) in MiB; 0 where it cannot be read.
pub(crate) fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// glibc's heap in this process (GStreamer, ONNX Runtime and llama.cpp
/// allocate from it; the binary's own Rust allocations go to jemalloc), in
/// MiB: what is allocated now, and what the allocator holds free (freed,
/// not yet given back to the system). RSS that grows while the first stays
/// level is the allocator's, not a leak. `None` off glibc.
pub(crate) fn heap_mib() -> Option<HeapMib> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 takes no arguments and only reads the
        // allocator's statistics (it locks each arena while it does).
        let m = unsafe { libc::mallinfo2() };
        let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
        Some(HeapMib {
            in_use: mib(m.uordblks + m.hblkhd),
            free_held: mib(m.fordblks),
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// See [`heap_mib`].
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub(crate) struct HeapMib {
    /// Allocated and not freed.
    pub in_use: f64,
    /// Freed but still held by the allocator.
    pub free_held: f64,
}

fn print_report(r: &SeriesReport) {
    let several = r.runs.len() > 1;
    println!(
        "benchmark: {} (seed{} {})",
        r.backend,
        if several { "s" } else { "" },
        r.seeds
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("| suite | passed |");
    println!("|---|---|");
    for s in &r.suites {
        if several {
            println!("| {} | {} / {} |", s.suite, s.passed, s.total);
        } else {
            println!("| {} | {:.0}/{} |", s.suite, s.passed.mean, s.total);
        }
    }
    let rate = 100.0 * r.passed.mean / r.total.max(1) as f64;
    if several {
        println!(
            "| **total** | **{} / {} ({rate:.1}%)** |",
            r.passed, r.total
        );
    } else {
        println!(
            "| **total** | **{:.0}/{} ({rate:.1}%)** |",
            r.passed.mean, r.total
        );
    }
    let failures: Vec<String> = r
        .failures
        .iter()
        .map(|(k, v)| {
            if several {
                format!("{k} {v}")
            } else {
                format!("{k} {:.0}", v.mean)
            }
        })
        .collect();
    println!("failures: {}", failures.join(", "));
    // Against an endpoint the model's memory is the server's, not ours.
    let rss = if r.rss_peak_mib > 0.0 {
        format!("peak RSS {:.0} MiB", r.rss_peak_mib)
    } else {
        "memory: the server's (not measured here)".to_string()
    };
    println!(
        "TTFT avg {:.0} ms; decode {:.1} tok/s; {rss}; {:.0} s",
        r.ttft_avg_ms.mean, r.decode_tok_s_avg.mean, r.wall_s
    );
}
