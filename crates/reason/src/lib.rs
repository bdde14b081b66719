//! In-process language models through llama.cpp (`llama-cpp-2`).
//!
//! [`LlmRuntime`] loads a GGUF once and serves generation requests from a
//! queue on a worker thread that owns the model and its context. It renders
//! chat messages with the model's own template, keeps the KV cache of the
//! previous prompt so a request sharing its prefix only prefills the new
//! part, constrains output with grammars (from JSON schemas), reports per-call
//! timing, and offers function tools whose calls it parses back.

mod backend;
mod describe;
mod error;
mod gguf;
mod openai;
mod projector;
mod runtime;
mod sampling;
mod stop;
mod tools;
mod triage;

pub use backend::{split_reasoning, ChatBackend, ChatReply, ChatRequest};
pub use describe::{label_facts, Describer, Description, DescriptionSource, Scene, LABELS_NOTE};
pub use error::ReasonError;
pub use gguf::{backend, LoadedModel, ModelInfo};
pub use openai::{EndpointConfig, OpenAiClient};
pub use projector::SyntheticProjector;
pub use runtime::{
    image_marker, CancelToken, ChatMessage, Completion, FinishReason, GenerateRequest, ImageInput,
    Lane, LlmRuntime, RuntimeOptions, Timing,
};
pub use sampling::Sampling;
pub use tools::{parse_reply, tools_prompt, MalformedCall, ParsedReply, Tool, ToolCall};
pub use triage::{
    addresses_the_ai, event_message, parse_triage, triage, triage_schema, triage_until, Triage,
    TriageInput, TriageOutcome, TRIAGE_RULES,
};
