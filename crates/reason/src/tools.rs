//! Function tools: describing them to the model and reading its calls back.
//!
//! The prompt format is the Hermes/Qwen convention: tools are listed as JSON
//! inside `<tools>` tags in the system message, and the model answers with
//! `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks. The
//! parser is lenient about what small models get wrong (a missing closing
//! tag, code fences, arguments given as a JSON string, a bare call object
//! without tags) and reports what it cannot read instead of dropping it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A function the model may call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// A call the model made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
}

/// A `<tool_call>` block that could not be read.
#[derive(Clone, Debug, PartialEq)]
pub struct MalformedCall {
    pub raw: String,
    pub problem: String,
}

/// A reply split into plain text and tool calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedReply {
    /// Text outside the tool-call blocks, trimmed.
    pub content: String,
    pub calls: Vec<ToolCall>,
    pub malformed: Vec<MalformedCall>,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// The system-prompt section that offers `tools` to the model.
pub fn tools_prompt(tools: &[Tool]) -> String {
    let listing: Vec<String> = tools
        .iter()
        .map(|t| serde_json::json!({"type": "function", "function": t}).to_string())
        .collect();
    format!(
        "# Tools\n\nWhen a function below can answer the request, call it instead of \
         guessing. The available functions, one JSON signature per line, are inside \
         <tools></tools>:\n<tools>\n{}\n</tools>\n\nTo call a function, reply with a JSON \
         object holding its name and arguments inside <tool_call></tool_call> tags, e.g.\n\
         <tool_call>\n{{\"name\": \"function_name\", \"arguments\": {{\"key\": \"value\"}}}}\n</tool_call>\n\
         For small talk, or when no function fits, answer in plain text.",
        listing.join("\n")
    )
}

/// Splits a model reply into text and tool calls.
pub fn parse_reply(reply: &str) -> ParsedReply {
    let mut parsed = ParsedReply::default();
    let mut text = String::new();
    let mut rest = reply;
    while let Some(start) = rest.find(OPEN) {
        text.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        // A missing closing tag runs to the next call or the end.
        let (body, next) = match after.find(CLOSE) {
            Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
            None => match after.find(OPEN) {
                Some(n) => (&after[..n], &after[n..]),
                None => (after, ""),
            },
        };
        match parse_call(body) {
            Ok(call) => parsed.calls.push(call),
            Err(problem) => parsed.malformed.push(MalformedCall {
                raw: body.trim().to_string(),
                problem,
            }),
        }
        rest = next;
    }
    text.push_str(rest);
    // Small models sometimes drop the tags and answer with the bare call
    // object; accept a reply that is exactly one `{"name", "arguments"}`.
    if parsed.calls.is_empty() && parsed.malformed.is_empty() {
        let bare = strip_fences(text.trim());
        if let Ok(value) = serde_json::from_str::<Value>(bare) {
            if value.get("name").is_some_and(Value::is_string) && value.get("arguments").is_some() {
                if let Ok(call) = parse_call(bare) {
                    parsed.calls.push(call);
                    return parsed;
                }
            }
        }
    }
    parsed.content = text.trim().to_string();
    parsed
}

fn parse_call(body: &str) -> Result<ToolCall, String> {
    let json = strip_fences(body.trim());
    let value: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    let name = value
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("no \"name\" string")?
        .to_string();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        // Some models send the arguments object serialised as a string.
        Some(Value::String(s)) => {
            serde_json::from_str(s).map_err(|e| format!("arguments string is not JSON: {e}"))?
        }
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => return Err(format!("arguments must be an object, got {other}")),
    };
    Ok(ToolCall { name, arguments })
}

fn strip_fences(s: &str) -> &str {
    let s = s
        .strip_prefix("```json")
        .or_else(|| s.strip_prefix("```"))
        .unwrap_or(s);
    s.strip_suffix("```").unwrap_or(s).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn well_formed_calls_and_surrounding_text_are_separated() {
        let reply = "Let me look.\n<tool_call>\n{\"name\": \"search_clips\", \"arguments\": {\"camera\": \"driveway\"}}\n</tool_call>";
        let p = parse_reply(reply);
        assert_eq!(p.content, "Let me look.");
        assert_eq!(
            p.calls,
            vec![ToolCall {
                name: "search_clips".into(),
                arguments: json!({"camera": "driveway"})
            }]
        );
        assert!(p.malformed.is_empty());
    }

    #[test]
    fn small_model_mistakes_are_tolerated() {
        // Arguments as a string, code fences, and a missing closing tag.
        let reply = "<tool_call>```json\n{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}\n```</tool_call>\
                     <tool_call>{\"name\": \"b\"}";
        let p = parse_reply(reply);
        let names: Vec<&str> = p.calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.calls[0].arguments, json!({"x": 1}));
        assert_eq!(p.calls[1].arguments, json!({}));
    }

    #[test]
    fn unreadable_calls_are_reported_not_dropped() {
        let p = parse_reply(
            "<tool_call>{\"name\": </tool_call><tool_call>{\"arguments\": {}}</tool_call>plain",
        );
        assert!(p.calls.is_empty());
        assert_eq!(p.malformed.len(), 2);
        assert!(p.malformed[0].problem.contains("not JSON"));
        assert!(p.malformed[1].problem.contains("name"));
        assert_eq!(p.content, "plain");
    }

    #[test]
    fn a_bare_call_object_without_tags_is_accepted() {
        let p = parse_reply("{\"name\": \"get_system_status\", \"arguments\": {}}");
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].name, "get_system_status");
        assert_eq!(p.content, "");
        // JSON that is not a call stays text.
        let p = parse_reply("{\"urgency\": \"normal\"}");
        assert!(p.calls.is_empty());
    }

    #[test]
    fn no_tags_means_a_plain_answer() {
        let p = parse_reply("Hello! How can I help?");
        assert!(p.calls.is_empty() && p.malformed.is_empty());
        assert_eq!(p.content, "Hello! How can I help?");
    }
}
