//! A client for OpenAI-compatible chat endpoints (llama-server, vLLM,
//! Ollama, LM Studio, hosted APIs): streaming server-sent events, tools,
//! `response_format`, reasoning fields, and per-call timing.
//!
//! Nothing leaves the machine unless the user configures an endpoint.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::backend::split_reasoning;
use crate::{
    parse_reply, ChatBackend, ChatMessage, ChatReply, ChatRequest, FinishReason, ImageInput,
    ReasonError, Timing, ToolCall,
};

/// Where and how to reach an endpoint.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Base URL up to and including the API version, e.g.
    /// `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Bearer token, if the endpoint needs one. Read it from the
    /// environment; it is never logged.
    pub api_key: Option<String>,
    /// Longest silence allowed while waiting for the next bytes.
    pub idle_timeout: Duration,
    /// Whether the model accepts images (`image_url` content parts).
    pub vision: bool,
}

/// Shows whether a key is set, never the key, and the URL with any
/// password redacted.
impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("base_url", &streamer_core::redact_urls(&self.base_url))
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("idle_timeout", &self.idle_timeout)
            .field("vision", &self.vision)
            .finish()
    }
}

impl EndpointConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            idle_timeout: Duration::from_secs(30),
            vision: false,
        }
    }
}

/// A [`ChatBackend`] over HTTP.
pub struct OpenAiClient {
    config: EndpointConfig,
    agent: ureq::Agent,
}

impl OpenAiClient {
    pub fn new(config: EndpointConfig) -> Self {
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_recv_response(Some(config.idle_timeout))
                .timeout_per_read(Some(config.idle_timeout))
                .user_agent(concat!("streamer/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Self { config, agent }
    }

    fn url(&self) -> String {
        format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        )
    }

    /// The JSON body for `request` (public for tests and debugging).
    pub fn body(&self, request: &ChatRequest) -> Result<Value, ReasonError> {
        let mut messages: Vec<Value> = request.messages.iter().map(message_json).collect();
        if !request.images.is_empty() {
            if !self.config.vision {
                return Err(ReasonError::NoVision);
            }
            let parts = request
                .images
                .iter()
                .map(|image| {
                    Ok(json!({"type": "image_url", "image_url": {"url": data_url(image)?}}))
                })
                .collect::<Result<Vec<_>, ReasonError>>()?;
            let last_user = messages
                .iter_mut()
                .rev()
                .find(|m| m["role"] == "user")
                .ok_or_else(|| ReasonError::Image("images need a user message".into()))?;
            let text = last_user["content"].take();
            let mut content = parts;
            content.push(json!({"type": "text", "text": text}));
            last_user["content"] = Value::Array(content);
        }
        let s = &request.sampling;
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": s.max_tokens,
        });
        let fields = body.as_object_mut().expect("object literal");
        if let Some(t) = s.temperature {
            fields.insert("temperature".into(), json!(t));
        }
        if let Some(p) = s.top_p {
            fields.insert("top_p".into(), json!(p));
        }
        if !s.stop.is_empty() {
            fields.insert("stop".into(), json!(s.stop));
        }
        if s.seed != 0 {
            fields.insert("seed".into(), json!(s.seed));
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": t}))
                .collect();
            fields.insert("tools".into(), Value::Array(tools));
        } else if let Some(schema) = &request.json_schema {
            fields.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": {"name": "reply", "strict": true, "schema": schema}}),
            );
        }
        Ok(body)
    }
}

fn message_json(m: &ChatMessage) -> Value {
    json!({"role": m.role, "content": m.content})
}

fn data_url(image: &ImageInput) -> Result<String, ReasonError> {
    let (mime, bytes) = match image {
        ImageInput::Rgb {
            width,
            height,
            pixels,
        } => {
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image_rgb(pixels, *width, *height)
                .map_err(ReasonError::Image)?;
            ("image/png", png)
        }
        ImageInput::File(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| ReasonError::Image(format!("{}: {e}", path.display())))?;
            (sniff_mime(&bytes), bytes)
        }
        ImageInput::Encoded(bytes) => (sniff_mime(bytes), bytes.clone()),
    };
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

trait WriteRgb {
    fn write_image_rgb(self, pixels: &[u8], width: u32, height: u32) -> Result<(), String>;
}

impl<W: std::io::Write> WriteRgb for image::codecs::png::PngEncoder<W> {
    fn write_image_rgb(self, pixels: &[u8], width: u32, height: u32) -> Result<(), String> {
        use image::ImageEncoder as _;
        self.write_image(pixels, width, height, image::ExtendedColorType::Rgb8)
            .map_err(|e| format!("cannot encode a {width}x{height} RGB frame: {e}"))
    }
}

fn sniff_mime(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xff, 0xd8, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        _ => "application/octet-stream",
    }
}

impl ChatBackend for OpenAiClient {
    fn describe(&self) -> String {
        format!("{} at {}", self.config.model, self.config.base_url)
    }

    fn sees_images(&self) -> bool {
        self.config.vision
    }

    fn chat(
        &self,
        request: &ChatRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ChatReply, ReasonError> {
        let url = self.url();
        let endpoint_error = |message: String| ReasonError::Endpoint {
            url: url.clone(),
            message,
        };
        let body = self.body(request)?;
        let start = Instant::now();
        let mut call = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            call = call.header("Authorization", format!("Bearer {key}"));
        }
        let response = call
            .send(body.to_string())
            .map_err(|e| endpoint_error(e.to_string()))?;
        let status = response.status().as_u16();
        let mut reader = BufReader::new(response.into_body().into_reader());
        if !(200..300).contains(&status) {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut reader, &mut text);
            return Err(endpoint_error(format!(
                "HTTP {status}: {}",
                text.chars().take(500).collect::<String>()
            )));
        }

        let mut stream = StreamState::default();
        let mut line = String::new();
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| endpoint_error(format!("reading the stream: {e}")))?;
            if n == 0 {
                break;
            }
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim_start();
            if data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(data)
                .map_err(|e| endpoint_error(format!("bad stream chunk ({e}): {data}")))?;
            if let Some(error) = chunk.get("error") {
                return Err(endpoint_error(format!("the endpoint reported {error}")));
            }
            stream.absorb(&chunk, start, on_text);
        }
        Ok(stream.finish(start))
    }
}

/// What the stream has delivered so far.
#[derive(Default)]
struct StreamState {
    content: String,
    reasoning: String,
    /// Tool calls by index: name and argument text, which arrive in pieces.
    calls: BTreeMap<u64, (String, String)>,
    finish: Option<String>,
    first_token: Option<Instant>,
    ttft: Option<Duration>,
    usage: Option<Value>,
    timings: Option<Value>,
    chunks_with_tokens: usize,
}

impl StreamState {
    fn absorb(&mut self, chunk: &Value, start: Instant, on_text: &mut dyn FnMut(&str)) {
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        if let Some(timings) = chunk.get("timings").filter(|t| !t.is_null()) {
            self.timings = Some(timings.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        let mut got_token = false;
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.content.push_str(text);
            on_text(text);
            got_token = true;
        }
        for key in ["reasoning_content", "reasoning"] {
            if let Some(text) = delta[key].as_str().filter(|t| !t.is_empty()) {
                self.reasoning.push_str(text);
                got_token = true;
            }
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for call in calls {
                let index = call["index"].as_u64().unwrap_or(0);
                let entry = self.calls.entry(index).or_default();
                if let Some(name) = call["function"]["name"].as_str() {
                    entry.0.push_str(name);
                }
                if let Some(args) = call["function"]["arguments"].as_str() {
                    entry.1.push_str(args);
                }
                got_token = true;
            }
        }
        if got_token {
            self.chunks_with_tokens += 1;
            if self.ttft.is_none() {
                self.ttft = Some(start.elapsed());
                self.first_token = Some(Instant::now());
            }
        }
    }

    fn finish(self, start: Instant) -> ChatReply {
        let count = |v: &Option<Value>, key: &str| {
            v.as_ref().and_then(|v| v[key].as_u64()).map(|n| n as usize)
        };
        let completion_tokens = count(&self.usage, "completion_tokens")
            .or(count(&self.timings, "predicted_n"))
            .unwrap_or(self.chunks_with_tokens);
        let reused = count(&self.timings, "cache_n")
            .or_else(|| {
                self.usage
                    .as_ref()
                    .and_then(|u| u["prompt_tokens_details"]["cached_tokens"].as_u64())
                    .map(|n| n as usize)
            })
            .unwrap_or(0);
        let prompt_tokens = count(&self.usage, "prompt_tokens")
            .or_else(|| count(&self.timings, "prompt_n").map(|n| n + reused))
            .unwrap_or(0);
        let ttft = self.ttft.unwrap_or_else(|| start.elapsed());
        let prefill = self
            .timings
            .as_ref()
            .and_then(|t| t["prompt_ms"].as_f64())
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .unwrap_or(ttft);
        let timing = Timing {
            prompt_tokens,
            reused_tokens: reused.min(prompt_tokens),
            prefill_tokens: prompt_tokens.saturating_sub(reused),
            completion_tokens,
            ttft,
            prefill,
            // A reply that arrived in one chunk (a server that buffers tool
            // calls, or no streaming) has no decode time to measure: zero,
            // which the reports leave out, rather than a rate of millions.
            decode: self
                .first_token
                .filter(|_| self.chunks_with_tokens > 1)
                .map(|t| t.elapsed())
                .unwrap_or_default(),
        };

        let (think, answer) = split_reasoning(&self.content);
        let parsed = parse_reply(&answer);
        let mut tool_calls: Vec<ToolCall> = Vec::new();
        let mut malformed = parsed.malformed;
        for (name, args) in self.calls.into_values() {
            let arguments = if args.trim().is_empty() {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_str(&args)
            };
            match arguments {
                Ok(arguments) => tool_calls.push(ToolCall { name, arguments }),
                Err(e) => malformed.push(crate::MalformedCall {
                    raw: format!("{name}({args})"),
                    problem: format!("arguments are not JSON: {e}"),
                }),
            }
        }
        tool_calls.extend(parsed.calls);
        let reasoning = [Some(self.reasoning.trim().to_string()), think]
            .into_iter()
            .flatten()
            .filter(|r| !r.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let finish = match self.finish.as_deref() {
            Some("length") => FinishReason::Length,
            _ => FinishReason::EndOfGeneration,
        };
        ChatReply {
            content: parsed.content,
            reasoning: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls,
            malformed_calls: malformed,
            finish,
            timing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Sampling, Tool};

    fn client(vision: bool) -> OpenAiClient {
        OpenAiClient::new(EndpointConfig {
            vision,
            ..EndpointConfig::new("http://127.0.0.1:9/v1/", "test-model")
        })
    }

    #[test]
    fn the_body_carries_sampling_tools_and_images_in_openai_shape() {
        let request = ChatRequest {
            messages: vec![ChatMessage::user("Who is at the door?")],
            sampling: Sampling {
                temperature: Some(0.1),
                max_tokens: 64,
                ..Sampling::default()
            },
            tools: vec![Tool {
                name: "send_clip".into(),
                description: "Send a clip".into(),
                parameters: json!({"type": "object"}),
            }],
            json_schema: None,
            images: vec![ImageInput::Rgb {
                width: 2,
                height: 1,
                pixels: vec![0; 6],
            }],
            ..ChatRequest::default()
        };
        let body = client(true).body(&request).unwrap();
        assert_eq!(body["temperature"], json!(0.1f32));
        assert!(
            body.get("top_p").is_none(),
            "omitted means the model default"
        );
        assert_eq!(body["tools"][0]["function"]["name"], "send_clip");
        let content = body["messages"][0]["content"].as_array().unwrap();
        assert!(content[0]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,"));
        assert_eq!(content[1]["text"], "Who is at the door?");
        assert_eq!(client(true).url(), "http://127.0.0.1:9/v1/chat/completions");
        assert!(matches!(
            client(false).body(&request),
            Err(ReasonError::NoVision)
        ));
    }

    #[test]
    fn a_stream_assembles_content_reasoning_and_split_tool_arguments() {
        let mut state = StreamState::default();
        let start = Instant::now();
        let mut seen = String::new();
        for chunk in [
            json!({"choices": [{"delta": {"reasoning_content": "They asked for clips."}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "search_clips", "arguments": "{\"camera\":"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": " \"porch\"}"}}]}}]}),
            json!({"choices": [{"delta": {"content": "Searching."}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12}, "timings": {"cache_n": 30, "prompt_n": 10, "prompt_ms": 5.0}}),
        ] {
            state.absorb(&chunk, start, &mut |t| seen.push_str(t));
        }
        let reply = state.finish(start);
        assert_eq!(seen, "Searching.");
        assert_eq!(reply.content, "Searching.");
        assert_eq!(reply.reasoning.as_deref(), Some("They asked for clips."));
        assert_eq!(
            reply.tool_calls,
            vec![ToolCall {
                name: "search_clips".into(),
                arguments: json!({"camera": "porch"})
            }]
        );
        assert_eq!(reply.timing.prompt_tokens, 40);
        assert_eq!(reply.timing.reused_tokens, 30);
        assert_eq!(reply.timing.prefill_tokens, 10);
        assert_eq!(reply.timing.completion_tokens, 12);
    }

    #[test]
    fn broken_tool_arguments_are_reported_not_dropped() {
        let mut state = StreamState::default();
        let start = Instant::now();
        state.absorb(
            &json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "send_clip", "arguments": "{oops"}}]}}]}),
            start,
            &mut |_| {},
        );
        let reply = state.finish(start);
        assert!(reply.tool_calls.is_empty());
        assert_eq!(reply.malformed_calls.len(), 1);
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let mut config = EndpointConfig::new("http://u:pw@127.0.0.1:8080/v1", "m");
        config.api_key = Some("sk-very-secret".into());
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains(":pw@"),
            "{shown}"
        );
        assert!(shown.contains("api_key: Some(\"***\")"), "{shown}");
    }
}
