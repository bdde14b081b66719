//! Model replies and their cleaning.
//!
//! A [`Reply`] is what a backend returned for one request: the message
//! content, an optional separate reasoning text, and any structured tool
//! calls. Scoring never looks at a raw reply; it looks at the [`Cleaned`]
//! form produced by [`clean`]: think blocks stripped, the reasoning text used
//! when the content is empty, Hermes/Qwen `<tool_call>` blocks lifted out of
//! the content, and the first JSON document found in the text.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool call: the function name and its arguments (normally an object).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// Function name, e.g. `search_clips`.
    pub name: String,
    /// Arguments; a JSON string holding an object is accepted and parsed.
    #[serde(default)]
    pub arguments: Value,
}

/// A model reply as a backend returns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reply {
    /// The message content (may hold think blocks, prose, fences, tags).
    pub content: String,
    /// Separate reasoning text, for backends that return it apart.
    pub reasoning: Option<String>,
    /// Structured tool calls, in the order the model made them.
    pub tool_calls: Vec<ToolCall>,
}

/// Serde form of a reply: a bare string means `{content: string}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ReplyRepr {
    Text(String),
    Full(ReplyObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyObject {
    #[serde(default)]
    content: String,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match ReplyRepr::deserialize(d)? {
            ReplyRepr::Text(content) => Reply {
                content,
                ..Reply::default()
            },
            ReplyRepr::Full(o) => Reply {
                content: o.content,
                reasoning: o.reasoning,
                tool_calls: o.tool_calls,
            },
        })
    }
}

impl Reply {
    /// A reply with only content.
    pub fn text(content: impl Into<String>) -> Self {
        Reply {
            content: content.into(),
            ..Reply::default()
        }
    }
}

/// A reply after cleaning; what the checks look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cleaned {
    /// Visible answer text: think blocks and tool-call tags removed, trimmed;
    /// the reasoning text when the content was empty.
    pub text: String,
    /// The first JSON document found in `text` (whole text, fence, or the
    /// first balanced `{...}`/`[...]` that parses).
    pub json: Option<Value>,
    /// True when `text` is exactly one JSON document, with no prose or fence.
    pub bare_json: bool,
    /// Structured tool calls, or those parsed from `<tool_call>` tags.
    pub tool_calls: Vec<ToolCall>,
}

/// Cleans a reply for scoring. Never fails: unparseable parts are left as text.
pub fn clean(reply: &Reply) -> Cleaned {
    let mut text = strip_think(&reply.content).trim().to_string();
    let mut tool_calls: Vec<ToolCall> = reply.tool_calls.iter().map(normalize_call).collect();
    if tool_calls.is_empty() {
        let (rest, parsed) = take_hermes_calls(&text);
        if !parsed.is_empty() {
            tool_calls = parsed;
            text = rest.trim().to_string();
        }
    }
    if text.is_empty() && tool_calls.is_empty() {
        if let Some(r) = &reply.reasoning {
            text = strip_think(r).trim().to_string();
        }
    }
    let bare_json = !text.is_empty() && serde_json::from_str::<Value>(&text).is_ok();
    let json = extract_json(&text);
    Cleaned {
        text,
        json,
        bare_json,
        tool_calls,
    }
}

/// Removes `<think>…</think>` blocks. An unterminated `<think>` hides the
/// rest of the text; a `</think>` with no opening tag hides what precedes it
/// (templates that open the block in the prompt).
pub fn strip_think(s: &str) -> String {
    const OPEN: &str = "<think>";
    const CLOSE: &str = "</think>";
    let mut s = s;
    // A close tag before any open tag: the prompt opened the block.
    if let Some(c) = s.find(CLOSE) {
        if s.find(OPEN).is_none_or(|o| o > c) {
            s = &s[c + CLOSE.len()..];
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(o) = rest.find(OPEN) {
        out.push_str(&rest[..o]);
        let after = &rest[o + OPEN.len()..];
        match after.find(CLOSE) {
            Some(c) => rest = &after[c + CLOSE.len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Finds the JSON document in a text: the whole text if it parses, else the
/// first fenced block (```json or ```) that parses, else the first balanced
/// `{...}` or `[...]` that parses.
pub fn extract_json(text: &str) -> Option<Value> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    let mut rest = t;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |n| n + 1);
        let body = &after[body_start..];
        let Some(end) = body.find("```") else { break };
        if let Ok(v) = serde_json::from_str::<Value>(body[..end].trim()) {
            return Some(v);
        }
        rest = &body[end + 3..];
    }
    first_embedded_json(t)
}

/// The first `{` or `[` from which a JSON value parses.
fn first_embedded_json(t: &str) -> Option<Value> {
    for (i, ch) in t.char_indices() {
        if ch != '{' && ch != '[' {
            continue;
        }
        let mut it = serde_json::Deserializer::from_str(&t[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = it.next() {
            return Some(v);
        }
    }
    None
}

/// Tool-call arguments given as a JSON string holding an object are parsed.
fn normalize_call(c: &ToolCall) -> ToolCall {
    ToolCall {
        name: c.name.trim().to_string(),
        arguments: normalize_args(&c.arguments),
    }
}

fn normalize_args(v: &Value) -> Value {
    match v {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ Value::Object(_)) => inner,
            _ => v.clone(),
        },
        Value::Null => Value::Object(Default::default()),
        _ => v.clone(),
    }
}

/// Lifts `<tool_call>{"name":..,"arguments":..}</tool_call>` blocks out of
/// the text; returns the remaining text and the parsed calls. An
/// unterminated last block runs to the end of the text.
fn take_hermes_calls(text: &str) -> (String, Vec<ToolCall>) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut rest_text = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(o) = rest.find(OPEN) {
        rest_text.push_str(&rest[..o]);
        let after = &rest[o + OPEN.len()..];
        let (body, next) = match after.find(CLOSE) {
            Some(c) => (&after[..c], &after[c + CLOSE.len()..]),
            None => (after, ""),
        };
        if let Some(call) = parse_call_body(body) {
            calls.push(call);
        } else {
            // Unparseable block stays visible to the text checks.
            rest_text.push_str(OPEN);
            rest_text.push_str(body);
        }
        rest = next;
    }
    rest_text.push_str(rest);
    (rest_text, calls)
}

fn parse_call_body(body: &str) -> Option<ToolCall> {
    let v = extract_json(body)?;
    let obj = v.as_object()?;
    let name = obj.get("name")?.as_str()?.trim().to_string();
    let args = obj
        .get("arguments")
        .or_else(|| obj.get("parameters"))
        .cloned()
        .unwrap_or(Value::Null);
    Some(ToolCall {
        name,
        arguments: normalize_args(&args),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_think_blocks() {
        assert_eq!(strip_think("<think>hmm</think>Answer").trim(), "Answer");
        assert_eq!(strip_think("a<think>x</think>b<think>y</think>c"), "abc");
        assert_eq!(strip_think("<think>still thinking...").trim(), "");
        assert_eq!(strip_think("reasoning here</think>\nFinal").trim(), "Final");
    }

    #[test]
    fn finds_json_in_fences_and_prose() {
        let fenced = "Here you go:\n```json\n{\"a\": 1}\n```\nDone.";
        assert_eq!(extract_json(fenced), Some(json!({"a": 1})));
        let plain_fence = "```\n[1, 2]\n```";
        assert_eq!(extract_json(plain_fence), Some(json!([1, 2])));
        let prose = "The result is {\"keep\": [0, 2]} as requested [see note].";
        assert_eq!(extract_json(prose), Some(json!({"keep": [0, 2]})));
        let skip_bad = "Note [draft] then {\"ok\": true}";
        assert_eq!(extract_json(skip_bad), Some(json!({"ok": true})));
        assert_eq!(extract_json("no json here"), None);
    }

    #[test]
    fn bare_json_only_when_nothing_else() {
        assert!(clean(&Reply::text(" {\"a\":1} ")).bare_json);
        assert!(!clean(&Reply::text("Sure! {\"a\":1}")).bare_json);
        assert!(!clean(&Reply::text("```json\n{\"a\":1}\n```")).bare_json);
        // A think block before bare JSON is not prose.
        assert!(clean(&Reply::text("<think>ok</think>{\"a\":1}")).bare_json);
    }

    #[test]
    fn reasoning_used_when_content_empty() {
        let r = Reply {
            content: "  ".into(),
            reasoning: Some("{\"urgency\": \"normal\"}".into()),
            tool_calls: vec![],
        };
        let c = clean(&r);
        assert_eq!(c.json, Some(json!({"urgency": "normal"})));
        let r2 = Reply {
            content: "<think>only thoughts</think>".into(),
            reasoning: Some("fallback".into()),
            tool_calls: vec![],
        };
        assert_eq!(clean(&r2).text, "fallback");
    }

    #[test]
    fn parses_hermes_tool_calls() {
        let r = Reply::text(
            "<think>need clips</think>I'll search.\n<tool_call>\n{\"name\": \"search_clips\", \"arguments\": {\"camera\": \"driveway\"}}\n</tool_call>",
        );
        let c = clean(&r);
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].name, "search_clips");
        assert_eq!(c.tool_calls[0].arguments, json!({"camera": "driveway"}));
        assert_eq!(c.text, "I'll search.");
        // Arguments as a JSON string, and an unterminated block.
        let r = Reply::text(
            "<tool_call>{\"name\":\"send_clip\",\"arguments\":\"{\\\"clip_id\\\":\\\"c1\\\"}\"}",
        );
        let c = clean(&r);
        assert_eq!(c.tool_calls[0].arguments, json!({"clip_id": "c1"}));
    }

    #[test]
    fn structured_calls_win_and_string_args_parse() {
        let r = Reply {
            content: String::new(),
            reasoning: None,
            tool_calls: vec![ToolCall {
                name: "system_status".into(),
                arguments: json!("{\"component\":\"cameras\"}"),
            }],
        };
        let c = clean(&r);
        assert_eq!(c.tool_calls[0].arguments, json!({"component": "cameras"}));
    }

    #[test]
    fn reply_deserializes_from_string_or_object() {
        let r: Reply = serde_json::from_value(json!("hi")).unwrap();
        assert_eq!(r, Reply::text("hi"));
        let r: Reply =
            serde_json::from_value(json!({"tool_calls": [{"name": "x", "arguments": {}}]}))
                .unwrap();
        assert_eq!(r.tool_calls[0].name, "x");
        assert!(serde_json::from_value::<Reply>(json!({"contnt": "typo"})).is_err());
    }
}
