//! The part of Ollama's API that Home Assistant's Ollama integration and
//! the `ollama` Python client use: `GET /api/version`, `GET /api/tags`,
//! `POST /api/show`, and `POST /api/chat` (NDJSON streaming by default,
//! tools, `format` as "json" or a JSON schema).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use streamer_reason::{ChatReply, ChatRequest, FinishReason, Sampling, Tool};

use crate::parts::{self, InMessage};
use crate::{ApiError, Dialect, ModelApi, Piece};

/// The Ollama API level these endpoints follow (clients check it).
const API_VERSION: &str = "0.9.0";

#[derive(Deserialize)]
struct ChatBody {
    #[serde(default)]
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    tools: Vec<Value>,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    stream: Option<bool>,
}

#[derive(Default, Deserialize)]
struct Options {
    temperature: Option<f32>,
    top_p: Option<f32>,
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    seed: Option<i64>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    tool_calls: Vec<Call>,
}

#[derive(Deserialize)]
struct Call {
    function: Function,
}

#[derive(Deserialize)]
struct Function {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct ShowBody {
    #[serde(default, alias = "name")]
    model: String,
}

fn ollama(e: ApiError) -> ApiError {
    e.in_dialect(Dialect::Ollama)
}

pub(crate) async fn version() -> Json<Value> {
    Json(json!({"version": API_VERSION}))
}

fn tag_name(api: &ModelApi) -> String {
    format!("{}:latest", api.name)
}

fn details(api: &ModelApi) -> Value {
    let family = api.info.architecture.clone().unwrap_or_default();
    let quant = api
        .runtime
        .path()
        .file_stem()
        .map(|s| s.to_string_lossy().to_uppercase())
        .and_then(|s| s.rsplit(['-', '.']).next().map(str::to_string))
        .filter(|q| q.starts_with('Q') || q.starts_with("F16") || q.starts_with("BF16"))
        .unwrap_or_default();
    json!({
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": format!("{:.1}B", api.info.parameters as f64 / 1e9),
        "quantization_level": quant,
    })
}

fn modified_at(api: &ModelApi) -> String {
    chrono::DateTime::<chrono::Utc>::from(api.modified).to_rfc3339()
}

pub(crate) async fn tags(
    State(api): State<Arc<ModelApi>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    api.authorize(&headers).map_err(ollama)?;
    Ok(Json(json!({"models": [{
        "name": tag_name(&api),
        "model": tag_name(&api),
        "modified_at": modified_at(&api),
        "size": api.size_bytes,
        "digest": "",
        "details": details(&api),
    }]})))
}

pub(crate) async fn show(
    State(api): State<Arc<ModelApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    api.authorize(&headers).map_err(ollama)?;
    let body: ShowBody = serde_json::from_slice(&body)
        .map_err(|e| ollama(ApiError::bad_request(format!("bad /api/show body: {e}"))))?;
    api.check_model(&body.model).map_err(ollama)?;
    let arch = api.info.architecture.clone().unwrap_or_default();
    let mut capabilities = vec!["completion", "tools"];
    if api.sees_images() {
        capabilities.push("vision");
    }
    Ok(Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": api.info.chat_template.clone().unwrap_or_default(),
        "details": details(&api),
        "model_info": {
            "general.architecture": arch,
            "general.parameter_count": api.info.parameters,
            format!("{arch}.context_length"): api.context(),
            format!("{arch}.embedding_length"): api.info.embedding_width,
            format!("{arch}.block_count"): api.info.layers,
        },
        "capabilities": capabilities,
        "modified_at": modified_at(&api),
    })))
}

pub(crate) async fn chat(
    State(api): State<Arc<ModelApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api.authorize(&headers).map_err(ollama)?;
    let body: ChatBody = serde_json::from_slice(&body)
        .map_err(|e| ollama(ApiError::bad_request(format!("bad /api/chat body: {e}"))))?;
    api.check_model(&body.model).map_err(ollama)?;
    let stream = body.stream.unwrap_or(true);
    let chat = to_chat(&api, body).map_err(ollama)?;
    let started = Instant::now();
    if !stream {
        let reply = api.complete(chat).await.map_err(ollama)?;
        return Ok(Json(final_line(&api, &reply, started, true)).into_response());
    }
    // With tools the text may be a call, so the answer waits for the end.
    let buffered = !chat.tools.is_empty();
    let (mut rx, guard) = api.start(chat);
    let first = match rx.recv().await {
        Some(Piece::Done(result)) => match *result {
            Ok(reply) => Some(Piece::Done(Box::new(Ok(reply)))),
            Err(e) => return Err(ollama(e.into())),
        },
        other => other,
    };
    // Text streams as it comes (without tools); the last line carries the
    // counts, and the tool calls.
    let state = (rx, first, false, guard);
    let body = futures_util::stream::unfold(state, move |(mut rx, mut pending, done, guard)| {
        let api = Arc::clone(&api);
        async move {
            if done {
                return None;
            }
            let mut piece = match pending.take() {
                Some(p) => p,
                None => rx.recv().await?,
            };
            while buffered && matches!(piece, Piece::Text(_)) {
                piece = rx.recv().await?;
            }
            let (line, done) = match piece {
                Piece::Text(text) => (
                    json!({
                        "model": tag_name(&api),
                        "created_at": chrono::Utc::now().to_rfc3339(),
                        "message": {"role": "assistant", "content": text},
                        "done": false,
                    }),
                    false,
                ),
                Piece::Done(result) => match *result {
                    Ok(reply) => (final_line(&api, &reply, started, buffered), true),
                    Err(e) => (ollama(ApiError::from(e)).body(), true),
                },
            };
            let bytes = Bytes::from(format!("{line}\n"));
            Some((Ok::<_, Infallible>(bytes), (rx, None, done, guard)))
        }
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response())
}

/// The closing line: `done: true`, the reason, counts and durations (ns).
/// `whole` puts the full answer in it (no streaming); a stream already sent
/// the text, so its last line carries only the tool calls.
fn final_line(api: &ModelApi, reply: &ChatReply, started: Instant, whole: bool) -> Value {
    let t = &reply.timing;
    let mut message = json!({
        "role": "assistant",
        "content": if whole { reply.content.clone() } else { String::new() },
    });
    if whole {
        if let Some(r) = &reply.reasoning {
            message["thinking"] = json!(r);
        }
    }
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = json!(reply
            .tool_calls
            .iter()
            .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
            .collect::<Vec<_>>());
    }
    json!({
        "model": tag_name(api),
        "created_at": chrono::Utc::now().to_rfc3339(),
        "message": message,
        "done": true,
        "done_reason": if reply.finish == FinishReason::Length { "length" } else { "stop" },
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": t.prompt_tokens,
        "prompt_eval_duration": t.prefill.as_nanos() as u64,
        "eval_count": t.completion_tokens,
        "eval_duration": t.decode.as_nanos() as u64,
    })
}

fn to_chat(api: &ModelApi, body: ChatBody) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::with_capacity(body.messages.len());
    for m in body.messages {
        let images = m
            .images
            .iter()
            .map(|b| parts::inline_image(b))
            .collect::<Result<Vec<_>, _>>()?;
        // Ollama puts a message's pictures before its text.
        let text = format!("{}{}", parts::marker().repeat(images.len()), m.content);
        messages.push(InMessage {
            role: m.role,
            text,
            images,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| streamer_reason::ToolCall {
                    name: c.function.name,
                    arguments: parts::arguments(&c.function.arguments),
                })
                .collect(),
        });
    }
    let (messages, images) = parts::conversation(messages, api.sees_images())?;
    let tools: Vec<Tool> = body
        .tools
        .iter()
        .map(parts::tool)
        .collect::<Result<_, _>>()?;
    let json_schema = match body.format {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(json!({"type": "object"})),
        Some(schema @ Value::Object(_)) => Some(schema),
        Some(_) => {
            return Err(ApiError::bad_param(
                "format",
                "format must be \"json\" or a JSON schema object",
            ))
        }
    };
    let o = body.options;
    let max_tokens = match o.num_predict {
        Some(n) if n > 0 => n.min(u32::MAX as i64) as u32,
        _ => 2048,
    };
    Ok(ChatRequest {
        messages,
        sampling: Sampling {
            temperature: o.temperature,
            top_p: o.top_p,
            max_tokens,
            stop: o.stop.unwrap_or_default(),
            seed: o.seed.map_or(0, |s| s as u32),
        },
        tools,
        json_schema,
        images,
        ..ChatRequest::default()
    })
}
