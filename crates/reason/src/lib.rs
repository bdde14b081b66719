//! In-process language models through llama.cpp (`llama-cpp-2`).
//!
//! [`LlmRuntime`] loads a GGUF once and serves generation requests from a
//! queue on a worker thread that owns the model and its context. It renders
//! chat messages with the model's own template, keeps the KV cache of the
//! previous prompt so a request sharing its prefix only prefills the new
//! part, constrains output with grammars (from JSON schemas), reports per-call
//! timing, and offers function tools whose calls it parses back.

mod error;
mod gguf;
mod projector;
mod runtime;
mod sampling;
mod stop;
mod tools;

pub use error::ReasonError;
pub use gguf::{backend, LoadedModel, ModelInfo};
pub use projector::SyntheticProjector;
pub use runtime::{
    image_marker, ChatMessage, Completion, FinishReason, GenerateRequest, ImageInput, LlmRuntime,
    RuntimeOptions, Timing,
};
pub use sampling::Sampling;
pub use tools::{parse_reply, tools_prompt, MalformedCall, ParsedReply, Tool, ToolCall};
