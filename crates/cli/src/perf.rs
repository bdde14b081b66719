//! `streamer bench --mode perf`: how fast the in-process LLM answers the
//! triage call, cold and with the rules prefix kept in the KV cache, and how
//! that compares with llama.cpp's own tools on the same model, threads and
//! prompts: `llama-bench` for raw decode speed and `llama-server` (over HTTP,
//! through the same client code the benchmark uses for any endpoint) for
//! time to first token. The same model is also measured through
//! `streamer serve`'s endpoint (served from this process, so over the very
//! runtime measured in-process), and in the sharing case: triage calls
//! interleaved one to one with chat requests of another prefix, in-process
//! (camera lane, chats over HTTP) and on llama-server.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use streamer_reason::{
    triage, ChatBackend, ChatMessage, EndpointConfig, LlmRuntime, OpenAiClient, RuntimeOptions,
    Sampling, Timing, TriageInput,
};

/// Frame descriptions the triage prompts are built from: varied, so each
/// call has a new event after the shared rules.
const EVENTS: &[(&str, &str)] = &[
    (
        "front door",
        "A courier in a brown uniform leaves a parcel on the step and walks back to a van.",
    ),
    (
        "driveway",
        "A person in a dark hoodie pulls on the handles of two parked cars, one after the other.",
    ),
    (
        "back garden",
        "A fox crosses the lawn and disappears under the hedge.",
    ),
    (
        "side gate",
        "A man in a balaclava climbs over the side gate carrying a crowbar.",
    ),
    (
        "garage",
        "Smoke is coming out from under the garage door; nobody is visible.",
    ),
    (
        "front door",
        "A woman rings the doorbell twice, waits, then leaves a note in the letterbox.",
    ),
    (
        "street",
        "Two children ride bicycles past the house on the pavement.",
    ),
    (
        "back door",
        "Someone shines a torch through the kitchen window and tries the back door handle.",
    ),
    (
        "porch",
        "A man picks up the parcel left on the porch, looks around and walks away quickly with it.",
    ),
    (
        "nursery",
        "The baby is asleep in the cot; the room is dark and still.",
    ),
    (
        "driveway",
        "A car has been parked across the driveway with its engine running for twenty minutes.",
    ),
    (
        "garden",
        "A person is lying motionless on the patio next to a fallen ladder.",
    ),
];

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Summary {
    pub avg_ms: f64,
    pub p95_ms: f64,
    pub n: usize,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let n = samples.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let avg = samples.iter().map(|d| ms(*d)).sum::<f64>() / n.max(1) as f64;
        // Nearest-rank p95.
        let rank = ((0.95 * n as f64).ceil() as usize).clamp(1, n.max(1)) - 1;
        Self {
            avg_ms: avg,
            p95_ms: samples.get(rank).map_or(0.0, |d| ms(*d)),
            n,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PerfReport {
    pub model: String,
    pub threads: usize,
    pub prompts: usize,
    pub rounds: usize,
    pub triage_prompt_tokens_avg: f64,
    pub cold_ttft: Summary,
    pub reuse_ttft: Summary,
    pub reuse_prefill_tokens_avg: f64,
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
    pub rss_before_load_mib: f64,
    pub rss_loaded_mib: f64,
    pub rss_peak_mib: f64,
    pub llama_bench: Option<LlamaBench>,
    pub llama_server: Option<ServerReport>,
    pub serve: ServeReport,
}

/// The same runtime behind `streamer serve`'s endpoint.
#[derive(Debug, Serialize)]
pub struct ServeReport {
    /// Triage calls over HTTP (OpenAI client), consecutive, so the rules
    /// prefix stays cached; measured by the client.
    pub reuse_ttft: Summary,
    /// Decode speed over HTTP (the server's count over its time).
    pub decode_tok_s: f64,
    /// Triage in-process (camera lane) with one chat request of another
    /// prefix over HTTP between each two.
    pub interleaved_triage_ttft: Summary,
    /// The chats' own TTFT in that sequence (client-side).
    pub interleaved_chat_ttft: Summary,
}

#[derive(Debug, Serialize)]
pub struct LlamaBench {
    pub decode_tok_s: f64,
    pub prefill_tok_s: f64,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub cold_ttft: Summary,
    pub reuse_ttft: Summary,
    /// Triage with one chat of another prefix between each two.
    pub interleaved_triage_ttft: Summary,
    pub rss_mib: f64,
}

pub struct PerfOptions {
    pub model: PathBuf,
    pub model_name: String,
    pub threads: usize,
    pub rounds: usize,
    pub decode_tokens: u32,
    /// Directory with llama.cpp's `llama-bench` and `llama-server`.
    pub llama_tools: Option<PathBuf>,
}

pub fn run(options: &PerfOptions) -> Result<PerfReport> {
    let rss_before = rss_mib("VmRSS");
    let runtime = Arc::new(
        LlmRuntime::load(
            &options.model,
            RuntimeOptions {
                context: 2048,
                threads: Some(options.threads),
                batch: 512,
                // Room for chat clients beside the triage prompt (the
                // sharing case), as `[http] serve_models` has.
                served_slots: 1,
                ..RuntimeOptions::default()
            },
        )
        .with_context(|| format!("loading {}", options.model.display()))?,
    );
    let rss_loaded = rss_mib("VmRSS");
    eprintln!(
        "in-process: {} ({} threads)",
        runtime.describe(),
        options.threads
    );

    // Warm-up: page the weights in and build the compute graphs once.
    triage_once(runtime.as_ref(), 0)?;

    let mut cold = Vec::new();
    let mut reuse = Vec::new();
    let mut prompt_tokens = Vec::new();
    let mut reuse_prefill = Vec::new();
    let mut prefill_rates = Vec::new();
    for _round in 0..options.rounds {
        for i in 0..EVENTS.len() {
            runtime.forget()?;
            let t = triage_once(runtime.as_ref(), i)?;
            eprintln!(
                "streamer cold   #{i:<2} TTFT {:>7.1} ms ({} tokens)",
                ms(t.ttft),
                t.prompt_tokens
            );
            cold.push(t.ttft);
            prompt_tokens.push(t.prompt_tokens);
            prefill_rates.push(t.prefill_tokens_per_s());
        }
        // With reuse: consecutive calls share the rules prefix.
        runtime.forget()?;
        triage_once(runtime.as_ref(), EVENTS.len() - 1)?;
        for i in 0..EVENTS.len() {
            let t = triage_once(runtime.as_ref(), i)?;
            eprintln!(
                "streamer reuse  #{i:<2} TTFT {:>7.1} ms ({} prefilled)",
                ms(t.ttft),
                t.prefill_tokens
            );
            reuse.push(t.ttft);
            reuse_prefill.push(t.prefill_tokens);
        }
    }
    let decode = decode_rate(&runtime, options.decode_tokens)?;
    let serve = serve_leg(&runtime, options)?;
    let rss_peak = rss_mib("VmHWM");
    let model = runtime.describe();
    drop(runtime);

    let (llama_bench, llama_server) = match &options.llama_tools {
        Some(dir) => (
            Some(llama_bench(dir, options)?),
            Some(llama_server(dir, options)?),
        ),
        None => (None, None),
    };

    Ok(PerfReport {
        model,
        threads: options.threads,
        prompts: EVENTS.len(),
        rounds: options.rounds,
        triage_prompt_tokens_avg: mean(&prompt_tokens),
        cold_ttft: Summary::of(cold),
        reuse_ttft: Summary::of(reuse),
        reuse_prefill_tokens_avg: mean(&reuse_prefill),
        decode_tok_s: decode,
        prefill_tok_s: prefill_rates.iter().sum::<f64>() / prefill_rates.len().max(1) as f64,
        rss_before_load_mib: rss_before,
        rss_loaded_mib: rss_loaded,
        rss_peak_mib: rss_peak,
        llama_bench,
        llama_server,
        serve,
    })
}

/// Chat requests of another prefix for the sharing case: what an owner
/// asks a conversation agent between two camera events.
const CHATS: &[&str] = &[
    "Which lights should stay on at night?",
    "Remind me how to reset the doorbell camera.",
    "Is it worth adding a camera to the side passage?",
    "What does a 'monitor' alert mean?",
];

fn chat_request(i: usize) -> streamer_reason::ChatRequest {
    streamer_reason::ChatRequest {
        messages: vec![
            ChatMessage::system("You are a friendly home assistant. Answer in one short sentence."),
            ChatMessage::user(CHATS[i % CHATS.len()]),
        ],
        sampling: Sampling::greedy(16),
        ..Default::default()
    }
}

/// The runtime behind `streamer serve`'s routes on a free loopback port,
/// measured with the OpenAI client; then the sharing case.
fn serve_leg(runtime: &Arc<LlmRuntime>, options: &PerfOptions) -> Result<ServeReport> {
    let api = streamer_serve::ModelApi::new(Arc::clone(runtime), &options.model_name, None);
    let http = streamer_runner::HttpServer::start_with(
        "127.0.0.1:0".parse()?,
        Arc::new(streamer_runner::Telemetry::new(std::iter::empty())),
        Arc::new(|| serde_json::json!({})),
        streamer_serve::routes(Arc::new(api)),
    )?;
    let client = OpenAiClient::new(EndpointConfig::new(
        format!("http://{}/v1", http.addr()),
        options.model_name.clone(),
    ));
    eprintln!("streamer serve: {}", client.describe());
    triage_once(&client, EVENTS.len() - 1)?;
    let mut reuse = Vec::new();
    for _round in 0..options.rounds {
        for i in 0..EVENTS.len() {
            let t = triage_once(&client, i)?;
            eprintln!("serve    reuse  #{i:<2} TTFT {:>7.1} ms", ms(t.ttft));
            reuse.push(t.ttft);
        }
    }
    let decoded = client.chat(
        &streamer_reason::ChatRequest {
            messages: vec![ChatMessage::user(DECODE_PROMPT)],
            sampling: Sampling::greedy(options.decode_tokens),
            ..Default::default()
        },
        &mut |_| {},
    )?;

    // Sharing: camera-lane triage in-process, a served chat between each.
    let mut triage_ttft = Vec::new();
    let mut chat_ttft = Vec::new();
    triage_once(runtime.as_ref(), EVENTS.len() - 1)?;
    for _round in 0..options.rounds {
        for i in 0..EVENTS.len() {
            let chat = client.chat(&chat_request(i), &mut |_| {})?;
            chat_ttft.push(chat.timing.ttft);
            let t = triage_once(runtime.as_ref(), i)?;
            eprintln!(
                "shared   triage #{i:<2} TTFT {:>7.1} ms ({} prefilled) after a chat of {:.1} ms",
                ms(t.ttft),
                t.prefill_tokens,
                ms(chat.timing.ttft)
            );
            triage_ttft.push(t.ttft);
        }
    }
    Ok(ServeReport {
        reuse_ttft: Summary::of(reuse),
        decode_tok_s: decoded.timing.decode_tokens_per_s(),
        interleaved_triage_ttft: Summary::of(triage_ttft),
        interleaved_chat_ttft: Summary::of(chat_ttft),
    })
}

fn event(i: usize) -> TriageInput {
    let (camera, description) = EVENTS[i % EVENTS.len()];
    TriageInput {
        camera: camera.into(),
        time: "Sat 2026-11-21 02:14".into(),
        camera_notes: "Owner is away this week.".into(),
        description: description.into(),
    }
}

fn triage_once(backend: &dyn ChatBackend, i: usize) -> Result<Timing> {
    let outcome = triage(backend, &event(i)).context("triage call")?;
    Ok(outcome.reply.timing)
}

/// A prompt that keeps a model writing.
const DECODE_PROMPT: &str = "Write a long, detailed guide to securing a family home: doors, \
     windows, lighting, cameras, alarms, habits. Use many paragraphs.";

/// Decode speed on a plain prompt, with greedy sampling and no grammar,
/// as llama-bench measures it (tokens after the first over their time).
fn decode_rate(runtime: &LlmRuntime, tokens: u32) -> Result<f64> {
    let mut rates = Vec::new();
    for _ in 0..3 {
        runtime.forget()?;
        let done = runtime.chat(
            vec![ChatMessage::user(DECODE_PROMPT)],
            Sampling::greedy(tokens),
        )?;
        if done.timing.completion_tokens < tokens as usize / 2 {
            bail!(
                "the decode prompt stopped after {} tokens",
                done.timing.completion_tokens
            );
        }
        rates.push(done.timing.decode_tokens_per_s());
    }
    Ok(mean_f(&rates))
}

fn llama_bench(dir: &Path, options: &PerfOptions) -> Result<LlamaBench> {
    let binary = dir.join("llama-bench");
    let output = Command::new(&binary)
        .arg("-m")
        .arg(&options.model)
        .args(["-t", &options.threads.to_string()])
        .args([
            "-p",
            "256",
            "-n",
            &options.decode_tokens.to_string(),
            "-r",
            "3",
            "-o",
            "json",
        ])
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", binary.display(), output.status);
    }
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).context("reading llama-bench's JSON")?;
    let rate = |prompt: bool| {
        rows.iter()
            .find(|r| (r["n_prompt"].as_u64().unwrap_or(0) > 0) == prompt)
            .and_then(|r| r["avg_ts"].as_f64())
            .unwrap_or(0.0)
    };
    Ok(LlamaBench {
        decode_tok_s: rate(false),
        prefill_tok_s: rate(true),
    })
}

/// llama-server on a free 127.0.0.1 port, killed by pid when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn llama_server(dir: &Path, options: &PerfOptions) -> Result<ServerReport> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let threads = options.threads.to_string();
    let mut child = Command::new(dir.join("llama-server"))
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--threads", &threads, "--threads-batch", &threads])
        .args([
            "--ctx-size",
            "2048",
            "--parallel",
            "1",
            "--jinja",
            "--no-webui",
            "-m",
        ])
        .arg(&options.model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting llama-server")?;
    let log = BufReader::new(child.stderr.take().context("server stderr")?);
    std::thread::spawn(move || log.lines().map_while(Result::ok).for_each(drop));
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = format!("http://127.0.0.1:{port}/health");
    while ureq::get(&health).call().is_err() {
        if Instant::now() > deadline {
            bail!("llama-server did not become healthy within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let client = OpenAiClient::new(EndpointConfig::new(
        format!("http://127.0.0.1:{port}/v1"),
        options.model_name.clone(),
    ));
    eprintln!("llama-server: {}", client.describe());
    triage_once(&client, 0)?;

    let mut cold = Vec::new();
    let mut reuse = Vec::new();
    for _round in 0..options.rounds {
        for i in 0..EVENTS.len() {
            // llama-server keeps the previous prompt's cache for the slot;
            // a prompt with a different first token makes the next one cold.
            clobber_cache(&client)?;
            let t = triage_once(&client, i)?;
            eprintln!("server   cold   #{i:<2} TTFT {:>7.1} ms", ms(t.ttft));
            cold.push(t.ttft);
        }
        clobber_cache(&client)?;
        triage_once(&client, EVENTS.len() - 1)?;
        for i in 0..EVENTS.len() {
            let t = triage_once(&client, i)?;
            eprintln!("server   reuse  #{i:<2} TTFT {:>7.1} ms", ms(t.ttft));
            reuse.push(t.ttft);
        }
    }
    let mut interleaved = Vec::new();
    for _round in 0..options.rounds {
        for i in 0..EVENTS.len() {
            client.chat(&chat_request(i), &mut |_| {})?;
            let t = triage_once(&client, i)?;
            eprintln!("server   shared #{i:<2} TTFT {:>7.1} ms", ms(t.ttft));
            interleaved.push(t.ttft);
        }
    }
    let rss = proc_status_mib(server.0.id(), "VmRSS");
    Ok(ServerReport {
        cold_ttft: Summary::of(cold),
        reuse_ttft: Summary::of(reuse),
        interleaved_triage_ttft: Summary::of(interleaved),
        rss_mib: rss,
    })
}

fn clobber_cache(client: &OpenAiClient) -> Result<()> {
    client.chat(
        &streamer_reason::ChatRequest {
            messages: vec![ChatMessage::user("x")],
            sampling: Sampling::greedy(1),
            ..Default::default()
        },
        &mut |_| {},
    )?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mean(values: &[usize]) -> f64 {
    values.iter().sum::<usize>() as f64 / values.len().max(1) as f64
}

fn mean_f(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn rss_mib(field: &str) -> f64 {
    proc_status_mib(std::process::id(), field)
}

/// A memory field of /proc/<pid>/status in MiB (0 where unavailable).
fn proc_status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn print(report: &PerfReport) {
    let r = report;
    println!("LLM perf: {} on {} threads", r.model, r.threads);
    println!(
        "triage prompt: {:.0} tokens avg; {} prompts x {} rounds",
        r.triage_prompt_tokens_avg, r.prompts, r.rounds
    );
    println!();
    println!("| | TTFT avg | TTFT p95 |");
    println!("|---|---|---|");
    let row =
        |name: &str, s: &Summary| println!("| {name} | {:.1} ms | {:.1} ms |", s.avg_ms, s.p95_ms);
    row("streamer, cold", &r.cold_ttft);
    row(
        &format!(
            "streamer, prefix reuse ({:.0} tokens prefilled)",
            r.reuse_prefill_tokens_avg
        ),
        &r.reuse_ttft,
    );
    row(
        "through streamer serve (HTTP), prefix reuse",
        &r.serve.reuse_ttft,
    );
    if let Some(s) = &r.llama_server {
        row("llama-server, cold", &s.cold_ttft);
        row("llama-server, its prompt cache", &s.reuse_ttft);
    }
    row(
        "streamer, triage with a chat between each two",
        &r.serve.interleaved_triage_ttft,
    );
    if let Some(s) = &r.llama_server {
        row(
            "llama-server, triage with a chat between each two",
            &s.interleaved_triage_ttft,
        );
    }
    row(
        "  (the chats, through streamer serve)",
        &r.serve.interleaved_chat_ttft,
    );
    println!();
    println!("| | decode tok/s | prefill tok/s |");
    println!("|---|---|---|");
    println!(
        "| streamer | {:.1} | {:.1} |",
        r.decode_tok_s, r.prefill_tok_s
    );
    println!("| through streamer serve | {:.1} | |", r.serve.decode_tok_s);
    if let Some(b) = &r.llama_bench {
        println!(
            "| llama-bench | {:.1} | {:.1} |",
            b.decode_tok_s, b.prefill_tok_s
        );
    }
    println!();
    println!(
        "memory: RSS {:.0} MiB before load, {:.0} MiB with the model loaded, peak {:.0} MiB",
        r.rss_before_load_mib, r.rss_loaded_mib, r.rss_peak_mib
    );
    if let Some(s) = &r.llama_server {
        println!("llama-server RSS after the run: {:.0} MiB", s.rss_mib);
    }
    println!();
    let half = r.reuse_ttft.avg_ms <= r.cold_ttft.avg_ms / 2.0;
    println!(
        "target: reuse TTFT <= half of cold: {} ({:.2}x)",
        verdict(half),
        r.reuse_ttft.avg_ms / r.cold_ttft.avg_ms
    );
    if let Some(s) = &r.llama_server {
        println!(
            "target: reuse TTFT below llama-server's: {} ({:.1} vs {:.1} ms)",
            verdict(r.reuse_ttft.avg_ms < s.reuse_ttft.avg_ms),
            r.reuse_ttft.avg_ms,
            s.reuse_ttft.avg_ms
        );
    }
    let shared = r.serve.interleaved_triage_ttft.avg_ms / r.reuse_ttft.avg_ms;
    println!(
        "target: triage TTFT with chats interleaved <= 1.2x without: {} ({shared:.2}x)",
        verdict(shared <= 1.2)
    );
    if let Some(s) = &r.llama_server {
        println!(
            "target: interleaved triage TTFT <= llama-server's on the same sequence: {} ({:.1} vs {:.1} ms)",
            verdict(r.serve.interleaved_triage_ttft.avg_ms <= s.interleaved_triage_ttft.avg_ms),
            r.serve.interleaved_triage_ttft.avg_ms,
            s.interleaved_triage_ttft.avg_ms
        );
    }
    if let Some(b) = &r.llama_bench {
        let ratio = r.decode_tok_s / b.decode_tok_s;
        println!(
            "target: decode >= 95% of llama-bench: {} ({:.1}%)",
            verdict(ratio >= 0.95),
            ratio * 100.0
        );
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}
