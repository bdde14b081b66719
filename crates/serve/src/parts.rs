//! What both APIs share: turning a client's conversation (text, pictures,
//! earlier tool calls and their results) into the runtime's messages, and
//! its tool definitions into [`Tool`]s.

use base64::Engine;
use serde_json::Value;
use streamer_reason::{image_marker, ChatMessage, ImageInput, Tool, ToolCall};

use crate::ApiError;

/// One message of a client's conversation, already unpacked.
pub struct InMessage {
    pub role: String,
    pub text: String,
    /// Pictures in order; each sits at an [`image_marker`] in `text`.
    pub images: Vec<ImageInput>,
    /// Calls an assistant message made earlier.
    pub tool_calls: Vec<ToolCall>,
}

/// Messages and pictures for the runtime. Earlier tool calls go back in the
/// model's own `<tool_call>` form, and tool results as `<tool_response>`
/// blocks in a user turn, the Hermes/Qwen convention the tool prompt uses.
pub fn conversation(
    messages: Vec<InMessage>,
    sees_images: bool,
) -> Result<(Vec<ChatMessage>, Vec<ImageInput>), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::bad_param(
            "messages",
            "needs at least one message",
        ));
    }
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut images = Vec::new();
    let mut last_was_tool = false;
    for m in messages {
        if !m.images.is_empty() && !sees_images {
            return Err(ApiError::bad_param(
                "messages",
                "this model cannot see images: start the server with a vision projector (`streamer serve --projector FILE`) or send text only",
            ));
        }
        images.extend(m.images);
        match m.role.as_str() {
            "system" | "developer" => out.push(ChatMessage::system(m.text)),
            "user" => out.push(ChatMessage::user(m.text)),
            "assistant" => {
                let mut text = m.text;
                for call in &m.tool_calls {
                    let call = serde_json::json!({"name": call.name, "arguments": call.arguments});
                    text.push_str(&format!("\n<tool_call>\n{call}\n</tool_call>"));
                }
                out.push(ChatMessage::assistant(text.trim().to_string()));
            }
            "tool" => {
                let block = format!("<tool_response>\n{}\n</tool_response>", m.text);
                match out.last_mut() {
                    Some(prev) if last_was_tool => {
                        prev.content.push('\n');
                        prev.content.push_str(&block);
                    }
                    _ => out.push(ChatMessage::user(block)),
                }
                last_was_tool = true;
                continue;
            }
            other => {
                return Err(ApiError::bad_param(
                    "messages",
                    format!("unknown role `{other}` (system, user, assistant or tool)"),
                ))
            }
        }
        last_was_tool = false;
    }
    Ok((out, images))
}

/// A picture given inline: a `data:` URL (OpenAI) or bare base64 (Ollama).
/// Other URLs are refused: the server never fetches from the network.
pub fn inline_image(url_or_base64: &str) -> Result<ImageInput, ApiError> {
    let data = if let Some(rest) = url_or_base64.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',').ok_or_else(|| {
            ApiError::bad_param("image_url", "a data: URL needs a comma before its data")
        })?;
        if !meta.ends_with(";base64") {
            return Err(ApiError::bad_param(
                "image_url",
                "only base64 data: URLs are accepted (data:image/jpeg;base64,...)",
            ));
        }
        data
    } else if url_or_base64.starts_with("http://") || url_or_base64.starts_with("https://") {
        return Err(ApiError::bad_param(
            "image_url",
            "images must be sent inline as data: URLs; this server never fetches from the network",
        ));
    } else {
        url_or_base64
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| {
            ApiError::bad_param("image_url", format!("the image is not valid base64: {e}"))
        })?;
    if bytes.is_empty() {
        return Err(ApiError::bad_param("image_url", "the image is empty"));
    }
    Ok(ImageInput::Encoded(bytes))
}

/// The marker that places a picture in a message's text.
pub fn marker() -> &'static str {
    image_marker()
}

/// A function definition in the shape both APIs use:
/// `{"type": "function", "function": {"name", "description", "parameters"}}`.
pub fn tool(def: &Value) -> Result<Tool, ApiError> {
    let kind = def
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("function");
    if kind != "function" {
        return Err(ApiError::bad_param(
            "tools",
            format!("tool type `{kind}` is not supported (only function)"),
        ));
    }
    let f = def
        .get("function")
        .ok_or_else(|| ApiError::bad_param("tools", "each tool needs a function object"))?;
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_param("tools", "each function needs a name"))?;
    Ok(Tool {
        name: name.to_string(),
        description: f
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        parameters: f
            .get("parameters")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
    })
}

/// Arguments of an earlier call: OpenAI sends a JSON string, Ollama an
/// object.
pub fn arguments(value: &Value) -> Value {
    match value {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, text: &str) -> InMessage {
        InMessage {
            role: role.into(),
            text: text.into(),
            images: Vec::new(),
            tool_calls: Vec::new(),
        }
    }

    #[test]
    fn tool_history_is_written_the_way_the_model_calls_tools() {
        let mut asked = msg("assistant", "");
        asked.tool_calls.push(ToolCall {
            name: "search_clips".into(),
            arguments: serde_json::json!({"camera": "porch"}),
        });
        let (messages, _) = conversation(
            vec![
                msg("user", "anything on the porch?"),
                asked,
                msg("tool", "2 clips"),
                msg("tool", "1 person"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(messages.len(), 3);
        assert!(
            messages[1].content.contains("<tool_call>"),
            "{:?}",
            messages[1]
        );
        assert!(messages[1].content.contains("\"camera\":\"porch\""));
        assert_eq!(messages[2].role, "user");
        assert_eq!(
            messages[2].content,
            "<tool_response>\n2 clips\n</tool_response>\n<tool_response>\n1 person\n</tool_response>"
        );
    }

    #[test]
    fn pictures_need_a_vision_model_and_inline_data() {
        let mut with_image = msg("user", "what is this?");
        with_image.images.push(ImageInput::Encoded(vec![1, 2, 3]));
        let err = conversation(vec![with_image], false).unwrap_err();
        assert_eq!(err.status.as_u16(), 400);
        assert!(err.message.contains("projector"), "{}", err.message);
        assert!(inline_image("https://example.com/a.jpg").is_err());
        assert!(inline_image("data:image/png,raw").is_err());
        assert!(inline_image("data:image/png;base64,!!!").is_err());
        assert!(matches!(
            inline_image("data:image/png;base64,AQID").unwrap(),
            ImageInput::Encoded(b) if b == [1, 2, 3]
        ));
        assert!(matches!(
            inline_image("AQID").unwrap(),
            ImageInput::Encoded(_)
        ));
    }

    #[test]
    fn unknown_roles_and_empty_conversations_are_bad_requests() {
        assert!(conversation(Vec::new(), false).is_err());
        let err = conversation(vec![msg("narrator", "x")], false).unwrap_err();
        assert!(err.message.contains("narrator"));
    }
}
