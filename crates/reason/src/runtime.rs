use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, select_biased, unbounded, Receiver, RecvTimeoutError, Sender, TryRecvError,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputText,
};
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

/// A picture for a vision-language model.
#[derive(Clone, Debug)]
pub enum ImageInput {
    /// Packed 8-bit RGB pixels, `width * height * 3` bytes (a camera frame).
    Rgb {
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    },
    /// An encoded image file (JPEG, PNG, BMP, ...).
    File(PathBuf),
    /// An encoded image in memory (e.g. a JPEG snapshot).
    Encoded(Vec<u8>),
}

/// Where each image goes in a message: the marker `mtmd` replaces with the
/// image's embeddings.
pub fn image_marker() -> &'static str {
    mtmd_default_marker()
}

/// A generation request: messages, sampling, optionally a GBNF grammar the
/// output must follow, and images for a vision-language model.
///
/// Images are placed, in order, at [`image_marker`]s in the messages; when
/// no message holds a marker they go in front of the last user message.
#[derive(Clone, Debug, Default)]
pub struct GenerateRequest {
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    pub grammar: Option<String>,
    pub images: Vec<ImageInput>,
    /// Whose work this is: camera work goes first.
    pub lane: Lane,
    /// Stops the request early (a client that went away).
    pub cancel: Option<CancelToken>,
    /// Past this instant the answer is no use: generation stops with
    /// [`ReasonError::DeadlineExpired`] instead of running on.
    pub deadline: Option<Instant>,
}

/// The runtime's two queues. Camera work (triage, descriptions) is always
/// taken first, and a served request running when camera work arrives
/// pauses between two tokens until the camera work is done; each lane keeps
/// its own KV-cache slots, so the two never evict each other's prompts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// The pipeline's own calls.
    #[default]
    Camera,
    /// Requests from HTTP clients (`streamer serve`): bounded, and they
    /// give way to camera work.
    Served,
}

/// Cancels one request from any thread: the worker stops it before its
/// next token (or prefill batch) with [`ReasonError::Cancelled`].
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
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
    /// Vision projector (`mmproj` GGUF) that makes the text model a
    /// vision-language model.
    pub projector: Option<PathBuf>,
    /// KV-cache slots (llama.cpp sequences of `context` tokens each) kept
    /// for camera work: each keeps the prompt of its last call, and a call
    /// goes to the slot sharing the longest prefix with it.
    pub camera_slots: usize,
    /// Slots for served requests (0 when nothing is served); a chat
    /// client's growing conversation is reused from its slot.
    pub served_slots: usize,
    /// Served requests waiting or running at most; more are refused with
    /// [`ReasonError::Busy`].
    pub max_served: usize,
    /// How long a served request gives way to camera work, queued and
    /// paused together, before it gives up with
    /// [`ReasonError::CamerasBusy`] (a 503 for its client) instead of
    /// waiting on a model the cameras keep busy.
    pub max_served_wait: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            context: 4096,
            threads: None,
            batch: 512,
            projector: None,
            camera_slots: 1,
            served_slots: 0,
            max_served: 4,
            max_served_wait: Duration::from_secs(30),
        }
    }
}

enum Job {
    Generate {
        request: GenerateRequest,
        events: Sender<Event>,
        queued_at: Instant,
    },
    Render {
        messages: Vec<ChatMessage>,
        reply: Sender<Result<String, ReasonError>>,
    },
    Forget {
        done: Sender<()>,
    },
}

enum Event {
    /// The worker took the request (served requests only).
    Started,
    Text(String),
    Done(Result<Completion, ReasonError>),
}

/// A loaded model serving requests one at a time from a queue. Cheap to
/// share by reference; requests from several threads are queued in order.
pub struct LlmRuntime {
    camera_jobs: Option<Sender<Job>>,
    served_jobs: Option<Sender<Job>>,
    /// Served requests queued or running.
    served: Arc<AtomicUsize>,
    max_served: usize,
    max_served_wait: Duration,
    closed: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    info: ModelInfo,
    path: PathBuf,
}

impl LlmRuntime {
    /// Loads the GGUF at `path` on a new worker thread.
    pub fn load(path: &Path, options: RuntimeOptions) -> Result<Self, ReasonError> {
        let (camera_tx, camera_rx) = unbounded();
        let (served_tx, served_rx) = unbounded();
        let (ready_tx, ready_rx) = bounded(1);
        let owned = path.to_path_buf();
        let closed = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let max_served = options.max_served.max(1);
        let max_served_wait = options.max_served_wait;
        let queues = Queues {
            camera: camera_rx,
            served: served_rx,
        };
        let worker_closed = Arc::clone(&closed);
        let worker = thread::Builder::new()
            .name("llm-worker".into())
            .spawn(move || worker(owned, options, ready_tx, queues, worker_closed))
            .map_err(|e| ReasonError::Backend(e.to_string()))?;
        let info = ready_rx.recv().map_err(|_| ReasonError::WorkerGone)??;
        Ok(Self {
            camera_jobs: Some(camera_tx),
            served_jobs: Some(served_tx),
            served,
            max_served,
            max_served_wait,
            closed,
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
        mut request: GenerateRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, ReasonError> {
        let (events, rx) = unbounded();
        let lane = request.lane;
        let queued_at = Instant::now();
        // A served request that waits too long behind camera work is
        // cancelled, so the worker drops it when it comes to it.
        let cancel = (lane == Lane::Served)
            .then(|| request.cancel.get_or_insert_with(CancelToken::new).clone());
        let job = Job::Generate {
            request,
            events,
            queued_at,
        };
        match lane {
            Lane::Camera => self.send(job)?,
            Lane::Served => {
                let before = self.served.fetch_add(1, Ordering::SeqCst);
                if before >= self.max_served {
                    self.served.fetch_sub(1, Ordering::SeqCst);
                    return Err(ReasonError::Busy { waiting: before });
                }
                let sent = self
                    .served_jobs
                    .as_ref()
                    .ok_or(ReasonError::WorkerGone)
                    .and_then(|q| q.send(job).map_err(|_| ReasonError::WorkerGone));
                if let Err(e) = sent {
                    self.served.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        // A served request counts against the bound until its caller has
        // the answer.
        let _slot = (lane == Lane::Served).then(|| ServedSlot(&self.served));
        if let Some(cancel) = cancel {
            // Until the worker takes it, the request waits at most
            // `max_served_wait`; once taken, the worker keeps count.
            match rx.recv_timeout(self.max_served_wait) {
                Ok(Event::Started) => {}
                Ok(Event::Text(t)) => on_text(&t),
                Ok(Event::Done(result)) => return result,
                Err(RecvTimeoutError::Timeout) => {
                    cancel.cancel();
                    return Err(ReasonError::CamerasBusy {
                        waited_s: self.max_served_wait.as_secs(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => return Err(ReasonError::WorkerGone),
            }
        }
        for event in rx {
            match event {
                Event::Started => {}
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
                ..GenerateRequest::default()
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
                ..GenerateRequest::default()
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

    /// Stops serving: the running request ends at its next token and queued
    /// and later ones fail at once, all with [`ReasonError::Closed`]. For
    /// shutting down while callers on other threads still wait on the model.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Closes the runtime (see [`LlmRuntime::close`]) and waits, at most
    /// `bound`, until the worker has let go of the running request, so the
    /// process can exit without the worker still inside llama.cpp (callers
    /// on other threads may keep the runtime alive past `main`). Whether
    /// the worker went idle in time.
    pub fn close_and_wait(&self, bound: Duration) -> bool {
        self.close();
        let (done, rx) = bounded(1);
        // Jobs behind the running one fail at once once closed, so this
        // marker comes up as soon as the running request has stopped.
        if self.send(Job::Forget { done }).is_err() {
            return true;
        }
        rx.recv_timeout(bound).is_ok()
    }

    /// Drops the kept KV cache, so the next call prefills its whole prompt
    /// (for measuring cold starts).
    pub fn forget(&self) -> Result<(), ReasonError> {
        let (done, rx) = bounded(1);
        self.send(Job::Forget { done })?;
        rx.recv().map_err(|_| ReasonError::WorkerGone)
    }

    /// Served requests waiting or running, and the most allowed.
    pub fn served_load(&self) -> (usize, usize) {
        (self.served.load(Ordering::SeqCst), self.max_served)
    }

    /// Camera-lane work (rendering, forgetting and camera generations).
    fn send(&self, job: Job) -> Result<(), ReasonError> {
        self.camera_jobs
            .as_ref()
            .ok_or(ReasonError::WorkerGone)?
            .send(job)
            .map_err(|_| ReasonError::WorkerGone)
    }
}

/// Gives a served request's place back when its caller is done with it.
struct ServedSlot<'a>(&'a AtomicUsize);

impl Drop for ServedSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for LlmRuntime {
    fn drop(&mut self) {
        self.close();
        // Closing the queues ends the worker loop.
        self.camera_jobs.take();
        self.served_jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The worker's two queues.
struct Queues {
    camera: Receiver<Job>,
    served: Receiver<Job>,
}

impl Queues {
    /// The next job, camera work first; `None` once both queues are closed.
    fn next(&self) -> Option<(Job, Lane)> {
        match self.camera.try_recv() {
            Ok(job) => return Some((job, Lane::Camera)),
            Err(TryRecvError::Disconnected) => {
                return self.served.recv().ok().map(|j| (j, Lane::Served));
            }
            Err(TryRecvError::Empty) => {}
        }
        select_biased! {
            recv(self.camera) -> job => match job {
                Ok(job) => Some((job, Lane::Camera)),
                Err(_) => self.served.recv().ok().map(|j| (j, Lane::Served)),
            },
            recv(self.served) -> job => match job {
                Ok(job) => Some((job, Lane::Served)),
                Err(_) => self.camera.recv().ok().map(|j| (j, Lane::Camera)),
            },
        }
    }
}

fn worker(
    path: PathBuf,
    options: RuntimeOptions,
    ready: Sender<Result<ModelInfo, ReasonError>>,
    queues: Queues,
    closed: Arc<AtomicBool>,
) {
    let camera_slots = options.camera_slots.max(1);
    let slot_count = camera_slots + options.served_slots;
    let setup = || -> Result<(LoadedModel, LlamaContextParams), ReasonError> {
        let loaded = LoadedModel::load(&path)?;
        let threads = threads(&options);
        // One KV stream of `context` cells per slot (not unified), so no
        // slot can run out of room because of another.
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(options.context * slot_count as u32))
            .with_n_seq_max(slot_count as u32)
            .with_kv_unified(false)
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
    let vision = match options
        .projector
        .as_deref()
        .map(|p| load_projector(p, model, &options))
    {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let template = model.chat_template(None).ok();
    let mut info = loaded.info();
    info.vision = vision.is_some();
    if ready.send(Ok(info)).is_err() {
        return;
    }
    let slots = (0..slot_count)
        .map(|i| Slot {
            seq: i as i32,
            lane: if i < camera_slots {
                Lane::Camera
            } else {
                Lane::Served
            },
            cached: Vec::new(),
            used: 0,
        })
        .collect();
    let mut session = Session {
        model,
        vision,
        template,
        batch: LlamaBatch::new(options.batch as usize, 1),
        batch_size: options.batch as usize,
        seq_context: options.context as usize,
        slots,
        calls: 0,
        closed,
        max_served_wait: options.max_served_wait,
        patience: Patience::new(options.max_served_wait),
    };
    while let Some((job, lane)) = queues.next() {
        session.run(&mut ctx, job, lane, Some(&queues));
    }
}

fn load_projector(
    path: &Path,
    model: &LlamaModel,
    options: &RuntimeOptions,
) -> Result<MtmdContext, ReasonError> {
    let failed = |reason: String| ReasonError::Load {
        path: path.to_path_buf(),
        reason,
    };
    crate::gguf::check_gguf_header(path)?;
    let utf8 = path
        .to_str()
        .ok_or_else(|| failed("the path is not UTF-8".into()))?;
    let params = MtmdContextParams {
        use_gpu: cfg!(any(feature = "metal", feature = "cuda")),
        print_timings: false,
        n_threads: threads(options),
        ..MtmdContextParams::default()
    };
    MtmdContext::init_from_file(utf8, model, &params).map_err(|e| {
        failed(format!(
            "not a projector for this text model ({e}); its output width must equal the model's embedding width {}",
            model.n_embd()
        ))
    })
}

fn threads(options: &RuntimeOptions) -> i32 {
    options
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get())) as i32
}

/// One llama.cpp sequence and the tokens its KV cache holds.
struct Slot {
    seq: i32,
    lane: Lane,
    /// Tokens in the KV cache of `seq`, in order (empty after an image
    /// prompt, whose positions are not tokens).
    cached: Vec<LlamaToken>,
    /// When the slot was last used (the session's call count), for
    /// evicting the least recently used.
    used: u64,
}

/// The worker's state between calls: which tokens each slot holds.
struct Session<'m> {
    model: &'m LlamaModel,
    /// The projector's context, when the model sees images.
    vision: Option<MtmdContext>,
    template: Option<LlamaChatTemplate>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
    /// Tokens one slot holds at most (prompt plus completion).
    seq_context: usize,
    slots: Vec<Slot>,
    calls: u64,
    /// Set by [`LlmRuntime::close`].
    closed: Arc<AtomicBool>,
    max_served_wait: Duration,
    /// How long the served request being generated has given way so far.
    patience: Patience,
}

/// How long a served request has given way to camera work (queued, then
/// paused between its tokens) against how long it may.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Patience {
    limit: Duration,
    waited: Duration,
}

impl Patience {
    fn new(limit: Duration) -> Self {
        Self {
            limit,
            waited: Duration::ZERO,
        }
    }

    /// Counts `waited` more; past the limit the request gives up.
    fn wait(&mut self, waited: Duration) -> Result<(), ReasonError> {
        self.waited += waited;
        if self.waited > self.limit {
            Err(ReasonError::CamerasBusy {
                waited_s: self.waited.as_secs(),
            })
        } else {
            Ok(())
        }
    }
}

impl Session<'_> {
    /// Runs one job. `queues` is given while camera work may interrupt this
    /// job between tokens (a served generation), `None` inside such an
    /// interruption.
    fn run(&mut self, ctx: &mut LlamaContext<'_>, job: Job, lane: Lane, queues: Option<&Queues>) {
        match job {
            Job::Render { messages, reply } => {
                let _ = reply.send(self.render(&messages));
            }
            Job::Forget { done } => {
                // Inside an interruption a served sequence is mid-answer:
                // only the camera slots are forgotten then.
                let interrupting = queues.is_none();
                for slot in &mut self.slots {
                    if !interrupting || slot.lane == Lane::Camera {
                        let _ = ctx.clear_kv_cache_seq(Some(slot.seq as u32), None, None);
                        slot.cached.clear();
                    }
                }
                let _ = done.send(());
            }
            Job::Generate {
                request,
                events,
                queued_at,
            } => {
                let interrupts = queues.filter(|_| lane == Lane::Served);
                let result = if lane == Lane::Served {
                    let _ = events.send(Event::Started);
                    // Camera work is not counted against a served request
                    // paused inside it: only the outer, served call waits.
                    self.patience = Patience::new(self.max_served_wait);
                    self.patience.wait(queued_at.elapsed())
                } else {
                    Ok(())
                };
                let result = result.and_then(|()| {
                    let slot = self.pick_slot(lane, &request);
                    let result = self.generate(ctx, slot, &request, &events, interrupts);
                    if result.is_err() {
                        // Unknown KV state after a failure: start this slot
                        // clean.
                        let seq = self.slots[slot].seq as u32;
                        let _ = ctx.clear_kv_cache_seq(Some(seq), None, None);
                        self.slots[slot].cached.clear();
                    }
                    result
                });
                let _ = events.send(Event::Done(result));
            }
        }
    }

    /// The slot of `lane` for `request`: the one whose cached tokens share
    /// the longest prefix with its prompt, else the least recently used.
    /// Served requests fall back to the camera slots when none are kept
    /// for them (a server without cameras).
    fn pick_slot(&self, lane: Lane, request: &GenerateRequest) -> usize {
        let own: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].lane == lane)
            .collect();
        let candidates = if own.is_empty() {
            (0..self.slots.len()).collect()
        } else {
            own
        };
        let tokens = if request.images.is_empty() {
            self.render(&request.messages)
                .ok()
                .map(|p| self.model.vocab().tokenize(p.as_bytes(), true, true))
        } else {
            None
        };
        let shared = |i: usize| {
            tokens.as_ref().map_or(0, |t| {
                self.slots[i]
                    .cached
                    .iter()
                    .zip(t)
                    .take_while(|(a, b)| a == b)
                    .count()
            })
        };
        candidates
            .into_iter()
            .max_by_key(|&i| (shared(i), std::cmp::Reverse(self.slots[i].used)))
            .unwrap_or(0)
    }

    /// Runs camera work that arrived while a served request generates,
    /// counting the pause against the served request's patience: once it
    /// has given way for `max_served_wait`, it stops with
    /// [`ReasonError::CamerasBusy`] and the camera work goes on without it.
    fn take_interrupts(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        queues: Option<&Queues>,
    ) -> Result<(), ReasonError> {
        let Some(queues) = queues else {
            return Ok(());
        };
        while let Ok(job) = queues.camera.try_recv() {
            let paused = Instant::now();
            self.run(ctx, job, Lane::Camera, None);
            self.patience.wait(paused.elapsed())?;
        }
        Ok(())
    }

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
        slot: usize,
        request: &GenerateRequest,
        events: &Sender<Event>,
        interrupts: Option<&Queues>,
    ) -> Result<Completion, ReasonError> {
        let start = Instant::now();
        self.check(request)?;
        self.calls += 1;
        self.slots[slot].used = self.calls;
        let seq = self.slots[slot].seq;
        let prefill_start = Instant::now();
        let prompt = if request.images.is_empty() {
            self.prefill_text(ctx, slot, request, interrupts)?
        } else {
            self.prefill_images(ctx, slot, &request.messages, &request.images)?
        };
        let prefill = prefill_start.elapsed();
        let max_tokens =
            (request.sampling.max_tokens as usize).min(self.seq_context - prompt.n_past);
        let vocab = self.model.vocab();

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

        let mut logits_at = prompt.logits_at;
        let mut n_past = prompt.n_past;
        let mut ttft = None;
        let mut first_token_at = Instant::now();
        let mut completion_tokens = 0;
        let finish = loop {
            self.check(request)?;
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
            // Camera work waiting goes first; this sequence's KV stays put
            // and the next decode gives it back its own logits.
            self.take_interrupts(ctx, interrupts)?;
            self.batch.clear();
            self.batch
                .add(token, n_past as i32, &[seq], true)
                .map_err(|e| ReasonError::Generation(e.to_string()))?;
            ctx.decode(&mut self.batch)
                .map_err(|e| ReasonError::Generation(format!("decode: {e}")))?;
            if prompt.track_tokens {
                self.slots[slot].cached.push(token);
            }
            n_past += 1;
            logits_at = 0;
        };
        if finish != FinishReason::Stop {
            emit(stops.finish(), &mut text);
        }
        Ok(Completion {
            text,
            finish,
            timing: Timing {
                prompt_tokens: prompt.tokens,
                reused_tokens: prompt.reused,
                prefill_tokens: prompt.tokens - prompt.reused,
                completion_tokens,
                ttft: ttft.unwrap_or_default(),
                prefill,
                decode: first_token_at.elapsed(),
            },
        })
    }

    /// Whether `request` may go on: the runtime is open, nobody cancelled
    /// it and its deadline has not passed.
    fn check(&self, request: &GenerateRequest) -> Result<(), ReasonError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ReasonError::Closed);
        }
        if request
            .cancel
            .as_ref()
            .is_some_and(CancelToken::is_cancelled)
        {
            return Err(ReasonError::Cancelled);
        }
        if request.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ReasonError::DeadlineExpired);
        }
        Ok(())
    }

    /// Evaluates a text prompt in `slot`, keeping the KV cache of the
    /// longest prefix it shares with the slot's previous call.
    fn prefill_text(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        slot: usize,
        request: &GenerateRequest,
        interrupts: Option<&Queues>,
    ) -> Result<Prefilled, ReasonError> {
        let prompt = self.render(&request.messages)?;
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        if tokens.is_empty() || tokens.len() >= self.seq_context {
            return Err(ReasonError::PromptTooLong {
                tokens: tokens.len(),
                context: self.seq_context as u32,
            });
        }
        let seq = self.slots[slot].seq;
        // Re-evaluate at least the last prompt token so there are logits to
        // sample from.
        let shared = self.slots[slot]
            .cached
            .iter()
            .zip(&tokens)
            .take_while(|(a, b)| a == b)
            .count()
            .min(tokens.len() - 1);
        ctx.clear_kv_cache_seq(Some(seq as u32), Some(shared as u32), None)
            .map_err(|e| ReasonError::Generation(e.to_string()))?;
        self.slots[slot].cached.truncate(shared);

        let last = tokens.len() - 1;
        for (chunk_index, chunk) in tokens[shared..].chunks(self.batch_size).enumerate() {
            self.check(request)?;
            self.take_interrupts(ctx, interrupts)?;
            self.batch.clear();
            for (i, &token) in chunk.iter().enumerate() {
                let pos = shared + chunk_index * self.batch_size + i;
                self.batch
                    .add(token, pos as i32, &[seq], pos == last)
                    .map_err(|e| ReasonError::Generation(e.to_string()))?;
            }
            ctx.decode(&mut self.batch)
                .map_err(|e| ReasonError::Generation(format!("prefill: {e}")))?;
            self.slots[slot].cached.extend_from_slice(chunk);
        }
        Ok(Prefilled {
            tokens: tokens.len(),
            reused: shared,
            n_past: tokens.len(),
            logits_at: self.batch.n_tokens() - 1,
            track_tokens: true,
        })
    }

    /// Evaluates a prompt with images through the projector. The KV cache
    /// starts empty: image positions are not tokens to compare, so prefix
    /// reuse applies to text-only calls.
    fn prefill_images(
        &mut self,
        ctx: &mut LlamaContext<'_>,
        slot: usize,
        messages: &[ChatMessage],
        images: &[ImageInput],
    ) -> Result<Prefilled, ReasonError> {
        let marker = image_marker();
        let mut messages = messages.to_vec();
        let placed: usize = messages
            .iter()
            .map(|m| m.content.matches(marker).count())
            .sum();
        if placed == 0 {
            let last_user = messages
                .iter_mut()
                .rev()
                .find(|m| m.role == "user")
                .ok_or_else(|| ReasonError::Image("images need a user message".into()))?;
            last_user.content = format!("{}{}", marker.repeat(images.len()), last_user.content);
        } else if placed != images.len() {
            return Err(ReasonError::Image(format!(
                "{} images for {placed} image markers in the messages",
                images.len()
            )));
        }
        let prompt = self.render(&messages)?;
        let vision = self.vision.as_mut().ok_or(ReasonError::NoVision)?;
        let bitmaps = images
            .iter()
            .map(|image| bitmap(vision, image))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&MtmdBitmap> = bitmaps.iter().collect();
        let chunks = vision
            .tokenize(
                MtmdInputText {
                    text: prompt,
                    add_special: true,
                    parse_special: true,
                },
                &refs,
            )
            .map_err(|e| {
                ReasonError::Image(format!("cannot tokenize the prompt with images: {e}"))
            })?;
        let tokens = chunks.total_tokens();
        if tokens >= self.seq_context {
            return Err(ReasonError::PromptTooLong {
                tokens,
                context: self.seq_context as u32,
            });
        }
        let seq = self.slots[slot].seq;
        ctx.clear_kv_cache_seq(Some(seq as u32), None, None)
            .map_err(|e| ReasonError::Generation(e.to_string()))?;
        self.slots[slot].cached.clear();
        let n_past = chunks
            .eval_chunks(vision, ctx, 0, seq, self.batch_size as i32, true)
            .map_err(|e| ReasonError::Generation(format!("image prefill: {e}")))?;
        Ok(Prefilled {
            tokens,
            reused: 0,
            n_past: n_past as usize,
            // The last logits of the last batch `eval_chunks` decoded.
            logits_at: -1,
            track_tokens: false,
        })
    }
}

/// The state after a prompt is evaluated.
struct Prefilled {
    tokens: usize,
    reused: usize,
    /// Next position in the sequence.
    n_past: usize,
    /// Batch index of the logits to sample the first token from.
    logits_at: i32,
    /// Whether the slot's `cached` mirrors its KV cache (text-only prompts).
    track_tokens: bool,
}

fn bitmap(vision: &MtmdContext, image: &ImageInput) -> Result<MtmdBitmap, ReasonError> {
    let bad = |e: &dyn std::fmt::Display| ReasonError::Image(e.to_string());
    match image {
        ImageInput::Rgb {
            width,
            height,
            pixels,
        } => {
            if pixels.len() != *width as usize * *height as usize * 3 {
                return Err(ReasonError::Image(format!(
                    "{width}x{height} RGB needs {} bytes, got {}",
                    *width as usize * *height as usize * 3,
                    pixels.len()
                )));
            }
            MtmdBitmap::from_image_data(*width, *height, pixels).map_err(|e| bad(&e))
        }
        ImageInput::File(path) => {
            let utf8 = path
                .to_str()
                .ok_or_else(|| ReasonError::Image(format!("{} is not UTF-8", path.display())))?;
            if !path.is_file() {
                return Err(ReasonError::Image(format!(
                    "{} does not exist",
                    path.display()
                )));
            }
            MtmdBitmap::from_file(vision, utf8, false)
                .map_err(|e| ReasonError::Image(format!("cannot decode {}: {e}", path.display())))
        }
        ImageInput::Encoded(bytes) => {
            MtmdBitmap::from_buffer(vision, bytes, false).map_err(|e| bad(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patience_runs_out_only_past_the_limit_counting_every_wait() {
        let mut p = Patience::new(Duration::from_secs(10));
        assert!(p.wait(Duration::from_secs(4)).is_ok());
        assert!(p.wait(Duration::from_secs(6)).is_ok(), "exactly the limit");
        let over = p.wait(Duration::from_millis(1));
        assert!(
            matches!(over, Err(ReasonError::CamerasBusy { waited_s: 10 })),
            "{over:?}"
        );
        let mut fresh = Patience::new(Duration::ZERO);
        assert!(fresh.wait(Duration::ZERO).is_ok());
        assert!(fresh.wait(Duration::from_nanos(1)).is_err());
    }
}
