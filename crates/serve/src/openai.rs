//! `POST /v1/chat/completions` and `GET /v1/models`, as OpenAI's clients
//! expect them: streaming as server-sent events (`data:` chunks, then
//! `data: [DONE]`), tool calls, JSON mode with a schema, usage.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use streamer_reason::{ChatReply, ChatRequest, FinishReason, Sampling, Tool};

use crate::parts::{self, InMessage};
use crate::think::{Split, ThinkSplitter};
use crate::{ApiError, ModelApi, Piece};

/// Tokens generated when the client sets no limit.
const DEFAULT_MAX_TOKENS: u32 = 2048;

#[derive(Deserialize)]
struct CompletionRequest {
    #[serde(default)]
    model: String,
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    response_format: Option<Value>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stop: Option<Stop>,
    seed: Option<i64>,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Vec<InCall>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Deserialize)]
struct ImageUrl {
    url: String,
}

#[derive(Deserialize)]
struct InCall {
    function: InFunction,
}

#[derive(Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

pub(crate) async fn models(
    State(api): State<Arc<ModelApi>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    api.authorize(&headers)?;
    let created = created(&api);
    Ok(Json(json!({
        "object": "list",
        "data": [{"id": api.name, "object": "model", "created": created, "owned_by": "streamer"}],
    })))
}

pub(crate) async fn chat_completions(
    State(api): State<Arc<ModelApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    api.authorize(&headers)?;
    let request: CompletionRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not a valid chat completion request: {e}"
        ))
    })?;
    api.check_model(&request.model)?;
    let (chat, stream, usage) = to_chat(&api, request)?;
    if stream {
        stream_completion(api, chat, usage).await
    } else {
        let reply = api.complete(chat).await?;
        Ok(Json(completion_body(&api, &reply)).into_response())
    }
}

/// The runtime's request for an OpenAI one, whether to stream, and whether
/// the stream ends with usage.
fn to_chat(api: &ModelApi, r: CompletionRequest) -> Result<(ChatRequest, bool, bool), ApiError> {
    if r.n.is_some_and(|n| n != 1) {
        return Err(ApiError::bad_param(
            "n",
            "only one choice per request (n = 1)",
        ));
    }
    let mut messages = Vec::with_capacity(r.messages.len());
    for m in r.messages {
        let mut text = String::new();
        let mut images = Vec::new();
        match m.content {
            None => {}
            Some(Content::Text(t)) => text = t,
            Some(Content::Parts(list)) => {
                for part in list {
                    match part {
                        Part::Text { text: t } => text.push_str(&t),
                        Part::ImageUrl { image_url } => {
                            images.push(parts::inline_image(&image_url.url)?);
                            text.push_str(parts::marker());
                        }
                    }
                }
            }
        }
        let tool_calls = m
            .tool_calls
            .into_iter()
            .map(|c| streamer_reason::ToolCall {
                name: c.function.name,
                arguments: parts::arguments(&c.function.arguments),
            })
            .collect();
        messages.push(InMessage {
            role: m.role,
            text,
            images,
            tool_calls,
        });
    }
    let (mut messages, images) = parts::conversation(messages, api.sees_images())?;

    let mut tools: Vec<Tool> = r
        .tools
        .unwrap_or_default()
        .iter()
        .map(parts::tool)
        .collect::<Result<_, _>>()?;
    match r.tool_choice.as_ref() {
        None => {}
        Some(Value::String(s)) if s == "auto" => {}
        Some(Value::String(s)) if s == "none" => tools.clear(),
        Some(Value::String(s)) if s == "required" => {
            require_a_call(&mut messages, "one of the functions");
        }
        Some(choice) => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad_param("tool_choice", "auto, none, required or {\"type\": \"function\", \"function\": {\"name\": ...}}"))?;
            if !tools.iter().any(|t| t.name == name) {
                return Err(ApiError::bad_param(
                    "tool_choice",
                    format!("no tool named `{name}` in tools"),
                ));
            }
            tools.retain(|t| t.name == name);
            require_a_call(&mut messages, &format!("the function {name}"));
        }
    }

    let json_schema = match r.response_format.as_ref() {
        None => None,
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => Some(
                format
                    .pointer("/json_schema/schema")
                    .cloned()
                    .ok_or_else(|| {
                        ApiError::bad_param(
                            "response_format",
                            "json_schema needs json_schema.schema",
                        )
                    })?,
            ),
            _ => {
                return Err(ApiError::bad_param(
                    "response_format",
                    "type must be text, json_object or json_schema",
                ))
            }
        },
    };
    let stop = match r.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) => v,
    };
    let sampling = Sampling {
        temperature: r.temperature,
        top_p: r.top_p,
        max_tokens: r
            .max_completion_tokens
            .or(r.max_tokens)
            .unwrap_or(DEFAULT_MAX_TOKENS)
            .max(1),
        stop,
        seed: r.seed.map_or(0, |s| s as u32),
    };
    let include_usage = r.stream_options.is_some_and(|o| o.include_usage);
    Ok((
        ChatRequest {
            messages,
            sampling,
            tools,
            json_schema,
            images,
            ..ChatRequest::default()
        },
        r.stream,
        include_usage,
    ))
}

/// `tool_choice` that forces a call: said in the system message (the
/// in-process model has no grammar for "some call").
fn require_a_call(messages: &mut Vec<streamer_reason::ChatMessage>, what: &str) {
    let note = format!("You must answer by calling {what}.");
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{note}", first.content);
        }
        _ => messages.insert(0, streamer_reason::ChatMessage::system(note)),
    }
}

fn created(api: &ModelApi) -> u64 {
    api.modified
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn finish_reason(reply: &ChatReply) -> &'static str {
    if !reply.tool_calls.is_empty() {
        "tool_calls"
    } else if reply.finish == FinishReason::Length {
        "length"
    } else {
        "stop"
    }
}

fn usage(reply: &ChatReply) -> Value {
    let t = &reply.timing;
    json!({
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "total_tokens": t.prompt_tokens + t.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": t.reused_tokens},
    })
}

fn tool_calls(api: &ModelApi, reply: &ChatReply) -> Vec<Value> {
    reply
        .tool_calls
        .iter()
        .map(|c| {
            json!({
                "id": api.id("call"),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments.to_string()},
            })
        })
        .collect()
}

fn completion_body(api: &ModelApi, reply: &ChatReply) -> Value {
    let mut message = json!({"role": "assistant", "content": reply.content});
    if let Some(r) = &reply.reasoning {
        message["reasoning_content"] = json!(r);
    }
    if !reply.tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls(api, reply));
        if reply.content.is_empty() {
            message["content"] = Value::Null;
        }
    }
    json!({
        "id": api.id("chatcmpl"),
        "object": "chat.completion",
        "created": now_s(),
        "model": api.name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(reply)}],
        "usage": usage(reply),
    })
}

/// Streams a completion as server-sent events. The first piece (or the
/// error) is awaited before answering, so a busy server or an over-long
/// prompt still gets its status code rather than a broken stream.
async fn stream_completion(
    api: Arc<ModelApi>,
    chat: ChatRequest,
    include_usage: bool,
) -> Result<Response, ApiError> {
    let buffered = !chat.tools.is_empty();
    let (mut rx, guard) = api.start(chat);
    let first = match rx.recv().await {
        Some(Piece::Done(result)) => match *result {
            Ok(reply) => Some(Piece::Done(Box::new(Ok(reply)))),
            Err(e) => return Err(e.into()),
        },
        other => other,
    };
    let id = api.id("chatcmpl");
    let usage_id = id.clone();
    let chunk = {
        let api = Arc::clone(&api);
        move |delta: Value, finish: Option<&str>| -> Bytes {
            let body = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": now_s(),
                "model": api.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            Bytes::from(format!("data: {body}\n\n"))
        }
    };
    let opening = chunk(json!({"role": "assistant", "content": ""}), None);
    struct Stream {
        rx: tokio::sync::mpsc::Receiver<Piece>,
        pending: Option<Piece>,
        queue: std::collections::VecDeque<Bytes>,
        splitter: ThinkSplitter,
        done: bool,
        _guard: crate::CancelGuard,
    }
    let state = Stream {
        rx,
        pending: first,
        queue: std::collections::VecDeque::from([opening]),
        splitter: ThinkSplitter::default(),
        done: false,
        _guard: guard,
    };
    let body = futures_util::stream::unfold(state, move |mut s| {
        let chunk = chunk.clone();
        let api = Arc::clone(&api);
        let usage_id = usage_id.clone();
        async move {
            loop {
                if let Some(bytes) = s.queue.pop_front() {
                    return Some((Ok::<_, Infallible>(bytes), s));
                }
                if s.done {
                    return None;
                }
                let piece = match s.pending.take() {
                    Some(p) => p,
                    None => match s.rx.recv().await {
                        Some(p) => p,
                        None => {
                            s.done = true;
                            continue;
                        }
                    },
                };
                match piece {
                    Piece::Text(text) if !buffered => {
                        for part in s.splitter.push(&text) {
                            s.queue.push_back(match part {
                                Split::Answer(t) => chunk(json!({"content": t}), None),
                                Split::Reasoning(t) => chunk(json!({"reasoning_content": t}), None),
                            });
                        }
                    }
                    Piece::Text(_) => {}
                    Piece::Done(result) => {
                        s.done = true;
                        match *result {
                            Ok(reply) => {
                                if buffered {
                                    if let Some(r) = &reply.reasoning {
                                        s.queue.push_back(chunk(
                                            json!({"reasoning_content": r}),
                                            None,
                                        ));
                                    }
                                    if !reply.content.is_empty() {
                                        s.queue.push_back(chunk(
                                            json!({"content": reply.content}),
                                            None,
                                        ));
                                    }
                                    for (i, mut call) in
                                        tool_calls(&api, &reply).into_iter().enumerate()
                                    {
                                        call["index"] = json!(i);
                                        s.queue
                                            .push_back(chunk(json!({"tool_calls": [call]}), None));
                                    }
                                } else {
                                    for part in s.splitter.finish() {
                                        s.queue.push_back(match part {
                                            Split::Answer(t) => chunk(json!({"content": t}), None),
                                            Split::Reasoning(t) => {
                                                chunk(json!({"reasoning_content": t}), None)
                                            }
                                        });
                                    }
                                }
                                s.queue
                                    .push_back(chunk(json!({}), Some(finish_reason(&reply))));
                                if include_usage {
                                    let body = json!({
                                        "id": usage_id,
                                        "object": "chat.completion.chunk",
                                        "created": now_s(),
                                        "model": api.name,
                                        "choices": [],
                                        "usage": usage(&reply),
                                    });
                                    s.queue.push_back(Bytes::from(format!("data: {body}\n\n")));
                                }
                            }
                            Err(e) => {
                                let e = ApiError::from(e);
                                s.queue
                                    .push_back(Bytes::from(format!("data: {}\n\n", e.body())));
                            }
                        }
                        s.queue.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
                    }
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
