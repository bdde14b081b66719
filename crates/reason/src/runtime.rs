use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::stop::{StopScan, Utf8Buffer};
use crate::{backend, sampling, LoadedModel, ModelInfo, ReasonError, Sampling};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A generation request: messages, sampling, and optionally a GBNF grammar
/// the output must follow.
#[derive(Clone, Debug, Default)]
pub struct GenerateRequest {
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    pub grammar: Option<String>,
}

/// Where the time of one call went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timing {
    /// Tokens in the rendered prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV cache was kept from the previous call.
    pub reused_tokens: usize,
    /// Prompt tokens evaluated by this call (`prompt - reused`).
    pub prefill_tokens: usize,
    pub completion_tokens: usize,
    /// From the request reaching the worker to the first generated token.
    pub ttft: Duration,
    pub prefill: Duration,
    /// From the first generated token to the last.
    pub decode: Duration,
}

impl Timing {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill)
    }
    /// Tokens after the first, over the time after the first.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.completion_tokens.saturating_sub(1), self.decode)
    }
}

fn rate(tokens: usize, time: Duration) -> f64 {
    if time.is_zero() {
        0.0
    } else {
        tokens as f64 / time.as_secs_f64()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    EndOfGeneration,
    /// A stop string was reached.
    Stop,
    /// `max_tokens` were generated.
    Length,
}

#[derive(Clone, Debug)]
pub struct Completion {
    pub text: String,
    pub finish: FinishReason,
    pub timing: Timing,
}

/// Runtime settings.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Context window in tokens (prompt plus completion).
    pub context: u32,
    /// Threads for prefill and decode (default: all cores).
    pub threads: Option<usize>,
    /// Prompt tokens evaluated per llama.cpp batch.
    pub batch: u32,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            threads: None,
            batch: 512,
        }
    }
}

enum Job {
    Generate {
        request: GenerateRequest,
        events: Sender<Event>,
    },
    Render {
        messages: Vec<ChatMessage>,
        reply: Sender<Result<String, ReasonError>>,
    },
}

enum Event {
    Text(String),
    Done(Result<Completion, ReasonError>),
}

/// A loaded model serving requests one at a time from a queue. Cheap to
/// share by reference; requests from several threads are queued in order.
pub struct LlmRuntime {
    jobs: Option<Sender<Job>>,
    worker: Option<JoinHandle<()>>,
    info: ModelInfo,
    path: PathBuf,
}

impl LlmRuntime {
    /// Loads the GGUF at `path` on a new worker thread.
    pub fn load(path: &Path, options: RuntimeOptions) -> Result<Self, ReasonError> {
        let (jobs_tx, jobs_rx) = unbounded();
        let (ready_tx, ready_rx) = bounded(1);
        let owned = path.to_path_buf();
        let worker = thread::Builder::new()
            .name("llm-worker".into())
            .spawn(move || worker(owned, options, ready_tx, jobs_rx))
            .map_err(|e| ReasonError::Backend(e.to_string()))?;
        let info = ready_rx.recv().map_err(|_| ReasonError::WorkerGone)??;
        Ok(Self {
            jobs: Some(jobs_tx),
            worker: Some(worker),
            info,
            path: path.to_path_buf(),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renders messages with the model's chat template, ready for generation.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, ReasonError> {
        let (reply, rx) = bounded(1);
        self.send(Job::Render {
            messages: messages.to_vec(),
            reply,
        })?;
        rx.recv().map_err(|_| ReasonError::WorkerGone)?
    }

    /// Generates a reply, calling `on_text` with each piece as it arrives.
    pub fn generate(
        &self,
        request: GenerateRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, ReasonError> {
        let (events, rx) = unbounded();
        self.send(Job::Generate { request, events })?;
        for event in rx {
            match event {
                Event::Text(t) => on_text(&t),
                Event::Done(result) => return result,
            }
        }
        Err(ReasonError::WorkerGone)
    }

    /// Generates a reply without streaming.
    pub fn chat(
        &self,
        messages: Vec<ChatMessage>,
        sampling: Sampling,
    ) -> Result<Completion, ReasonError> {
        self.generate(
            GenerateRequest {
                messages,
                sampling,
                grammar: None,
            },
            |_| {},
        )
    }

    /// Generates JSON constrained by `schema` (a JSON Schema, converted to a
    /// llama.cpp grammar) and deserialises it. Output that still does not
    /// parse into `T` is a [`ReasonError::InvalidOutput`], never a panic.
    pub fn generate_json<T: DeserializeOwned>(
        &self,
        messages: Vec<ChatMessage>,
        schema: &serde_json::Value,
        sampling: Sampling,
    ) -> Result<(T, Completion), ReasonError> {
        let grammar = llama_cpp_2::json_schema_to_grammar(&schema.to_string())
            .map_err(|e| ReasonError::Grammar(e.to_string()))?;
        let completion = self.generate(
            GenerateRequest {
                messages,
                sampling,
                grammar: Some(grammar),
            },
            |_| {},
        )?;
        let value = serde_json::from_str::<T>(completion.text.trim()).map_err(|e| {
            ReasonError::InvalidOutput {
                expected: "JSON matching the schema".into(),
                message: e.to_string(),
                raw: completion.text.clone(),
            }
        })?;
        Ok((value, completion))
    }

    fn send(&self, job: Job) -> Result<(), ReasonError> {
        self.jobs
            .as_ref()
            .ok_or(ReasonError::WorkerGone)?
            .send(job)
            .map_err(|_| ReasonError::WorkerGone)
    }
}

impl Drop for LlmRuntime {
    fn drop(&mut self) {
        // Closing the queue ends the worker loop.
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn worker(
    path: PathBuf,
    options: RuntimeOptions,
    ready: Sender<Result<ModelInfo, ReasonError>>,
    jobs: Receiver<Job>,
) {
    let setup = || -> Result<(LoadedModel, LlamaContextParams), ReasonError> {
        let loaded = LoadedModel::load(&path)?;
        let threads = options
            .threads
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
            as i32;
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.context))
            .with_n_batch(options.batch)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        Ok((loaded, params))
    };
    let (loaded, params) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let model = &loaded.model;
    let mut ctx = match backend().and_then(|b| {
        model.new_context(b, params).map_err(|e| ReasonError::Load {
            path: path.clone(),
            reason: format!("cannot create a context: {e}"),
        })
    }) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let template = model.chat_template(None).ok();
    if ready.send(Ok(loaded.info())).is_err() {
        return;
    }
    let mut session = Session {
        model,
        template,
        batch: LlamaBatch::new(options.batch as usize, 1),
        batch_size: options.batch as usize,
        cached: Vec::new(),
    };
    for job in jobs {
        match job {
            Job::Render { messages, reply } => {
                let _ = reply.send(session.render(&messages));
            }
            Job::Generate { request, events } => {
                let result = session.generate(&mut ctx, &request, &events);
                if result.is_err() {
                    // Unknown KV state after a failure: start clean next time.
                    ctx.clear_kv_cache();
                    session.cached.clear();
                }
                let _ = events.send(Event::Done(result));
            }
        }
    }
}

/// The worker's state between calls: which tokens the KV cache holds.
struct Session<'m> {
    model: &'m LlamaModel,
    template: Option<LlamaChatTemplate>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    /// Tokens currently in the KV cache of sequence 0, in order.
    cached: Vec<LlamaToken>,
}

impl Session<'_> {
    fn render(&self, messages: &[ChatMessage]) -> Result<String, ReasonError> {
        let template = self.template.as_ref().ok_or_else(|| {
            ReasonError::ChatTemplate("the GGUF has no tokenizer.chat_template".into())
        })?;
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReasonError::ChatTemplate(e.to_string()))?;
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| ReasonError::ChatTemplate(e.to_string()))
    }

    fn generate(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        request: &GenerateRequest,
        events: &Sender<Event>,
    ) -> Result<Completion, ReasonError> {
        let start = Instant::now();
        let prompt = self.render(&request.messages)?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let n_ctx = ctx.n_ctx();
        if tokens.is_empty() || tokens.len() >= n_ctx as usize {
            return Err(ReasonError::PromptTooLong {
                tokens: tokens.len(),
                context: n_ctx,
            });
        }
        let max_tokens = (request.sampling.max_tokens as usize).min(n_ctx as usize - tokens.len());

        // Keep the KV cache of the longest shared prefix; re-evaluate at
        // least the last prompt token so there are logits to sample from.
        let shared = self
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        ctx.clear_kv_cache_seq(Some(0), Some(shared as u32), None)
            .map_err(|e| ReasonError::Generation(e.to_string()))?;
        self.cached.truncate(shared);

        let prefill_start = Instant::now();
        let last = tokens.len() - 1;
        for (chunk_index, chunk) in tokens[shared..].chunks(self.batch_size).enumerate() {
            self.batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = shared + chunk_index * self.batch_size + i;
                self.batch
                    .add(token, pos as i32, &[0], pos == last)
                    .map_err(|e| ReasonError::Generation(e.to_string()))?;
            }
            ctx.decode(&mut self.batch)
                .map_err(|e| ReasonError::Generation(format!("prefill: {e}")))?;
            self.cached.extend_from_slice(chunk);
        }
        let prefill = prefill_start.elapsed();

        let mut sampler =
            sampling::build(self.model, &request.sampling, request.grammar.as_deref())?;
        let mut utf8 = Utf8Buffer::default();
        let mut stops = StopScan::new(&request.sampling.stop);
        let mut text = String::new();
        let emit = |piece: String, text: &mut String| {
            if !piece.is_empty() {
                text.push_str(&piece);
                let _ = events.send(Event::Text(piece));
            }
        };

        let mut logits_at = self.batch.n_tokens() - 1;
        let mut ttft = None;
        let mut first_token_at = Instant::now();
        let mut completion_tokens = 0;
        let finish = loop {
            let token = sampler.sample(ctx, logits_at);
            if ttft.is_none() {
                first_token_at = Instant::now();
                ttft = Some(start.elapsed());
            }
            if vocab.is_eog(token) {
                break FinishReason::EndOfGeneration;
            }
            completion_tokens += 1;
            // Render special tokens too: tool-call tags such as <tool_call> are
            // special tokens in Qwen vocabularies. End-of-turn tokens stop
            // generation above and never reach the text.
            let piece = utf8.push(&vocab.token_to_piece(token, true, None));
            let (safe, stopped) = stops.push(&piece);
            emit(safe, &mut text);
            if stopped {
                break FinishReason::Stop;
            }
            if completion_tokens >= max_tokens {
                break FinishReason::Length;
            }
            self.batch.clear();
            let pos = self.cached.len() as i32;
            self.batch
                .add(token, pos, &[0], true)
                .map_err(|e| ReasonError::Generation(e.to_string()))?;
            ctx.decode(&mut self.batch)
                .map_err(|e| ReasonError::Generation(format!("decode: {e}")))?;
            self.cached.push(token);
            logits_at = 0;
        };
        if finish != FinishReason::Stop {
            emit(stops.finish(), &mut text);
        }
        Ok(Completion {
            text,
            finish,
            timing: Timing {
                prompt_tokens: tokens.len(),
                reused_tokens: shared,
                prefill_tokens: tokens.len() - shared,
                completion_tokens,
                ttft: ttft.unwrap_or_default(),
                prefill,
                decode: first_token_at.elapsed(),
            },
        })
    }
}
