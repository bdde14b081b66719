//! `streamer bench` (also `streamer replay --bench`): the home-security
//! assistant benchmark (96 LLM tests in 15 suites, 35 VLM tests) against the
//! in-process model or any OpenAI-compatible endpoint, and the LLM perf
//! comparison with llama.cpp's own tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;
use streamer_bench::{LlmTest, Reply, RequestShape, Suite, ToolCall};
use streamer_models::ModelCache;
use streamer_reason::{
    ChatBackend, ChatMessage, ChatReply, ChatRequest, EndpointConfig, ImageInput, LlmRuntime,
    OpenAiClient, RuntimeOptions, Sampling, SyntheticProjector, Tool,
};

use crate::{bench_images, perf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The 96 LLM tests.
    Llm,
    /// The 35 image tests (needs a vision model).
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
    /// Write the full results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
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
    /// Cameras mode: the person embedder, by name.
    #[arg(long, default_value = "mobilenetv2-embedder")]
    pub embedder: String,
    /// Cameras mode: measured seconds for each number of cameras (5-80;
    /// from 4 s into the footage, so 30 s of the idle footage hold 16 s of
    /// empty scene, a visit of 8 s and its end).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Cameras mode: the most cameras to try.
    #[arg(long, default_value_t = 64)]
    pub max_cameras: usize,
    /// Cameras mode: only these cases (busy-off, busy-on, idle-off,
    /// idle-on: footage and motion gate), comma-separated; default all.
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Cameras mode: detection only, no embedding, visits or alerts (the
    /// figure the bare-inference bound speaks of).
    #[arg(long)]
    pub no_identity: bool,
    /// Cameras mode: afterwards, run the sustained number of gated cameras
    /// on idle footage this many minutes (RSS growth, stalls); 0: no soak.
    #[arg(long, default_value_t = 0)]
    pub soak_minutes: u64,
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

#[derive(Serialize)]
struct TestResult {
    id: String,
    suite: String,
    passed: bool,
    failures: Vec<String>,
    ttft_ms: f64,
    decode_tok_s: f64,
    completion_tokens: usize,
    error: Option<String>,
}

#[derive(Serialize)]
struct SuiteSummary {
    suite: String,
    passed: usize,
    total: usize,
}

#[derive(Serialize)]
struct BenchReport {
    backend: String,
    passed: usize,
    total: usize,
    pass_rate: f64,
    ttft_avg_ms: f64,
    decode_tok_s_avg: f64,
    rss_peak_mib: f64,
    wall_s: f64,
    suites: Vec<SuiteSummary>,
    tests: Vec<TestResult>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let cache = ModelCache::from_env();
    if args.mode == Mode::Perf {
        return run_perf(&args, &cache);
    }
    if args.mode == Mode::Cameras {
        return crate::cameras_bench::run(&args);
    }
    let backend = backend(&args, &cache)?;
    eprintln!("benchmark against {}", backend.describe());
    let started = Instant::now();
    let mut results = Vec::new();
    if matches!(args.mode, Mode::Llm | Mode::Full) {
        results.extend(run_llm(&args, backend.as_ref())?);
    }
    if matches!(args.mode, Mode::Vlm | Mode::Full) {
        if !backend.sees_images() {
            bail!(
                "the VLM tests need a model that sees images: pass --projector FILE \
                 (or --synthetic-projector to exercise the path), or --endpoint-vision"
            );
        }
        results.extend(run_vlm(&cache, backend.as_ref())?);
    }
    let report = summarise(backend.describe(), results, started.elapsed());
    print_report(&report);
    if args.synthetic_projector && matches!(args.mode, Mode::Vlm | Mode::Full) {
        println!(
            "note: the image tests ran through a generated projector with random weights; \
             their score measures nothing but the path"
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
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

fn run_llm(args: &BenchArgs, backend: &dyn ChatBackend) -> Result<Vec<TestResult>> {
    let suites = streamer_bench::load_llm(&streamer_bench::fixtures_dir().join("llm"))?;
    let wanted = |s: &Suite| {
        args.suite
            .as_ref()
            .is_none_or(|w| s.name.to_lowercase().contains(&w.to_lowercase()))
    };
    let mut results = Vec::new();
    for suite in suites.iter().filter(|s| wanted(s)) {
        let tools = to_tools(&streamer_bench::tools_for(&suite.name));
        for test in &suite.tests {
            let shape = suite.shape(test);
            let request = ChatRequest {
                messages: messages(test),
                sampling: sampling(&shape),
                tools: if shape.tools {
                    tools.clone()
                } else {
                    Vec::new()
                },
                ..ChatRequest::default()
            };
            let result = run_one(backend, &request, &suite.name, &test.id, |r| test.score(r));
            report_line(&result);
            results.push(result);
        }
    }
    Ok(results)
}

fn run_vlm(cache: &ModelCache, backend: &dyn ChatBackend) -> Result<Vec<TestResult>> {
    let dir = streamer_bench::fixtures_dir().join("vlm");
    let tests = streamer_bench::load_vlm(&dir.join("tests.json"))?;
    let catalogue = streamer_bench::load_vlm_catalogue(&dir.join("images.json"))?;
    let images = bench_images::BenchImages::new(cache);
    let mut results = Vec::new();
    for test in &tests {
        let path = images.prepare(&catalogue, &test.image)?;
        let shape = test.request_shape();
        let request = ChatRequest {
            messages: vec![ChatMessage::user(test.question.clone())],
            sampling: sampling(&shape),
            images: vec![ImageInput::File(path)],
            ..ChatRequest::default()
        };
        let result = run_one(backend, &request, "VLM", &test.id, |r| test.score(r));
        report_line(&result);
        results.push(result);
    }
    Ok(results)
}

fn run_one(
    backend: &dyn ChatBackend,
    request: &ChatRequest,
    suite: &str,
    id: &str,
    score: impl Fn(&Reply) -> streamer_bench::Score,
) -> TestResult {
    let mut result = TestResult {
        id: id.to_string(),
        suite: suite.to_string(),
        passed: false,
        failures: Vec::new(),
        ttft_ms: 0.0,
        decode_tok_s: 0.0,
        completion_tokens: 0,
        error: None,
    };
    match backend.chat(request, &mut |_| {}) {
        Ok(reply) => {
            let scored = score(&to_bench_reply(&reply));
            result.passed = scored.passed;
            result.failures = scored
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.reason.clone())
                .collect();
            result.ttft_ms = reply.timing.ttft.as_secs_f64() * 1000.0;
            result.decode_tok_s = reply.timing.decode_tokens_per_s();
            result.completion_tokens = reply.timing.completion_tokens;
        }
        // A failed call is a failed test, reported, never a crash.
        Err(e) => result.error = Some(e.to_string()),
    }
    result
}

fn report_line(r: &TestResult) {
    let status = if r.passed { "pass" } else { "FAIL" };
    let why = r
        .error
        .clone()
        .or_else(|| r.failures.first().cloned())
        .map(|w| format!("  ({w})"))
        .unwrap_or_default();
    eprintln!(
        "{status} {:<22} {:>7.0} ms TTFT {:>5.1} tok/s{why}",
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

fn sampling(shape: &RequestShape) -> Sampling {
    Sampling {
        temperature: shape.temperature,
        top_p: shape.top_p,
        max_tokens: shape.max_tokens,
        ..Sampling::default()
    }
}

fn to_tools(definitions: &[serde_json::Value]) -> Vec<Tool> {
    definitions
        .iter()
        .filter_map(|d| serde_json::from_value(d["function"].clone()).ok())
        .collect()
}

fn to_bench_reply(reply: &ChatReply) -> Reply {
    Reply {
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
    }
}

fn summarise(backend: String, tests: Vec<TestResult>, wall: Duration) -> BenchReport {
    let mut suites: Vec<SuiteSummary> = Vec::new();
    for t in &tests {
        match suites.iter_mut().find(|s| s.suite == t.suite) {
            Some(s) => {
                s.total += 1;
                s.passed += t.passed as usize;
            }
            None => suites.push(SuiteSummary {
                suite: t.suite.clone(),
                passed: t.passed as usize,
                total: 1,
            }),
        }
    }
    let answered: Vec<&TestResult> = tests.iter().filter(|t| t.error.is_none()).collect();
    let avg = |f: &dyn Fn(&TestResult) -> f64| {
        answered.iter().map(|t| f(t)).sum::<f64>() / answered.len().max(1) as f64
    };
    let passed = tests.iter().filter(|t| t.passed).count();
    BenchReport {
        backend,
        passed,
        total: tests.len(),
        pass_rate: passed as f64 / tests.len().max(1) as f64,
        ttft_avg_ms: avg(&|t| t.ttft_ms),
        decode_tok_s_avg: avg(&|t| t.decode_tok_s),
        rss_peak_mib: peak_rss_mib(),
        wall_s: wall.as_secs_f64(),
        suites,
        tests,
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

fn print_report(r: &BenchReport) {
    println!("benchmark: {}", r.backend);
    println!("| suite | passed |");
    println!("|---|---|");
    for s in &r.suites {
        println!("| {} | {}/{} |", s.suite, s.passed, s.total);
    }
    println!(
        "| **total** | **{}/{} ({:.1}%)** |",
        r.passed,
        r.total,
        r.pass_rate * 100.0
    );
    println!(
        "TTFT avg {:.0} ms; decode {:.1} tok/s; peak RSS {:.0} MiB; {:.0} s",
        r.ttft_avg_ms, r.decode_tok_s_avg, r.rss_peak_mib, r.wall_s
    );
}
