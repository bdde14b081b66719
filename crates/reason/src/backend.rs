//! One interface over every place a model can run: the in-process llama.cpp
//! runtime, or any OpenAI-compatible HTTP endpoint ([`crate::OpenAiClient`]).
//! Callers (the describer, the triage call, the benchmark) take a
//! `&dyn ChatBackend` and do not care which.

use std::time::Instant;

use serde_json::Value;

use crate::{
    parse_reply, tools_prompt, CancelToken, ChatMessage, FinishReason, GenerateRequest, ImageInput,
    Lane, LlmRuntime, MalformedCall, ReasonError, Sampling, Timing, Tool, ToolCall,
};

/// A chat request as every backend understands it.
#[derive(Clone, Debug, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub sampling: Sampling,
    /// Functions the model may call.
    pub tools: Vec<Tool>,
    /// JSON Schema the reply must follow (a grammar in-process,
    /// `response_format` over HTTP). Ignored when tools are offered.
    pub json_schema: Option<Value>,
    /// Pictures for a vision-language model, placed before the last user
    /// message (or at image markers, see [`crate::image_marker`]).
    pub images: Vec<ImageInput>,
    /// In-process: which queue the request joins (camera work first).
    pub lane: Lane,
    /// Stops the request early.
    pub cancel: Option<CancelToken>,
    /// The answer is no use after this (in-process: generation stops).
    pub deadline: Option<Instant>,
}

/// A model's answer, split into its parts.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatReply {
    /// The visible answer, without reasoning and tool-call blocks.
    pub content: String,
    /// Thinking the model did before answering (`<think>` blocks, or an
    /// endpoint's reasoning field).
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// Tool calls the model attempted but got wrong.
    pub malformed_calls: Vec<MalformedCall>,
    pub finish: FinishReason,
    pub timing: Timing,
}

/// Something that answers chat requests.
pub trait ChatBackend: Send + Sync {
    /// Which model this is, for reports ("qwen2.5-coder-0.5b (in-process)").
    fn describe(&self) -> String;

    /// Whether requests may carry images.
    fn sees_images(&self) -> bool;

    /// Answers `request`, passing visible text to `on_text` as it streams.
    fn chat(
        &self,
        request: &ChatRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ChatReply, ReasonError>;
}

impl ChatBackend for LlmRuntime {
    fn describe(&self) -> String {
        let name = self.info().name.clone().unwrap_or_else(|| {
            self.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        format!("{name} (in-process llama.cpp)")
    }

    fn sees_images(&self) -> bool {
        self.info().vision
    }

    fn chat(
        &self,
        request: &ChatRequest,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<ChatReply, ReasonError> {
        let mut messages = request.messages.clone();
        if !request.tools.is_empty() {
            offer_tools(&mut messages, &request.tools);
        }
        let grammar = match (&request.json_schema, request.tools.is_empty()) {
            (Some(schema), true) => Some(
                llama_cpp_2::json_schema_to_grammar(&schema.to_string())
                    .map_err(|e| ReasonError::Grammar(e.to_string()))?,
            ),
            _ => None,
        };
        let completion = self.generate(
            GenerateRequest {
                messages,
                sampling: request.sampling.clone(),
                grammar,
                images: request.images.clone(),
                lane: request.lane,
                cancel: request.cancel.clone(),
                deadline: request.deadline,
            },
            on_text,
        )?;
        let (reasoning, answer) = split_reasoning(&completion.text);
        let parsed = parse_reply(&answer);
        Ok(ChatReply {
            content: parsed.content,
            reasoning,
            tool_calls: parsed.calls,
            malformed_calls: parsed.malformed,
            finish: completion.finish,
            timing: completion.timing,
        })
    }
}

/// Adds the tool listing to the system message (creating one if needed).
fn offer_tools(messages: &mut Vec<ChatMessage>, tools: &[Tool]) {
    let listing = tools_prompt(tools);
    match messages.first_mut() {
        Some(first) if first.role == "system" => {
            first.content = format!("{}\n\n{listing}", first.content);
        }
        _ => messages.insert(0, ChatMessage::system(listing)),
    }
}

/// Splits `<think>…</think>` blocks from the answer. An unterminated block
/// (generation stopped while thinking) is all reasoning.
pub fn split_reasoning(text: &str) -> (Option<String>, String) {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut reasoning = Vec::new();
    let mut answer = String::new();
    let mut rest = text;
    loop {
        match rest.find(OPEN) {
            Some(start) => {
                answer.push_str(&rest[..start]);
                let inner = &rest[start + OPEN.len()..];
                match inner.find(CLOSE) {
                    Some(end) => {
                        reasoning.push(inner[..end].trim().to_string());
                        rest = &inner[end + CLOSE.len()..];
                    }
                    None => {
                        reasoning.push(inner.trim().to_string());
                        break;
                    }
                }
            }
            None => {
                // Some templates open the block in the prompt, so the reply
                // holds only the closing tag.
                match rest.find(CLOSE) {
                    Some(end) if answer.is_empty() && reasoning.is_empty() => {
                        reasoning.push(rest[..end].trim().to_string());
                        answer.push_str(&rest[end + CLOSE.len()..]);
                    }
                    _ => answer.push_str(rest),
                }
                break;
            }
        }
    }
    let reasoning = reasoning.join("\n").trim().to_string();
    (
        (!reasoning.is_empty()).then_some(reasoning),
        answer.trim().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_blocks_become_reasoning() {
        assert_eq!(
            split_reasoning("<think>it is a cat</think>\n\nA cat."),
            (Some("it is a cat".into()), "A cat.".into())
        );
        assert_eq!(
            split_reasoning("<think>still going"),
            (Some("still going".into()), String::new())
        );
        assert_eq!(
            split_reasoning("weighing it</think>normal"),
            (Some("weighing it".into()), "normal".into())
        );
        assert_eq!(split_reasoning("plain"), (None, "plain".into()));
    }

    #[test]
    fn tools_join_an_existing_system_message() {
        let tool = Tool {
            name: "system_status".into(),
            description: "Camera health".into(),
            parameters: serde_json::json!({"type": "object", "properties": {}}),
        };
        let mut messages = vec![
            ChatMessage::system("You guard a house."),
            ChatMessage::user("ok?"),
        ];
        offer_tools(&mut messages, std::slice::from_ref(&tool));
        assert_eq!(messages.len(), 2);
        assert!(messages[0].content.starts_with("You guard a house."));
        assert!(messages[0].content.contains("system_status"));

        let mut bare = vec![ChatMessage::user("ok?")];
        offer_tools(&mut bare, &[tool]);
        assert_eq!(bare[0].role, "system");
    }
}
