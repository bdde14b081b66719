//! Generation through the in-process runtime with the real GGUF models from
//! the model cache (SmolLM2-135M for speed, Qwen2.5-Coder-0.5B where the
//! output must make sense).

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::json;
use streamer_models::ModelCache;
use streamer_reason::{
    ChatMessage, FinishReason, LlmRuntime, ReasonError, RuntimeOptions, Sampling,
};

fn cached(name: &str) -> std::path::PathBuf {
    ModelCache::from_env()
        .require(name)
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"))
}

fn small_options() -> RuntimeOptions {
    RuntimeOptions {
        context: 2048,
        threads: Some(2),
        batch: 256,
        projector: None,
        ..RuntimeOptions::default()
    }
}

fn smol() -> &'static LlmRuntime {
    static RT: OnceLock<LlmRuntime> = OnceLock::new();
    RT.get_or_init(|| LlmRuntime::load(&cached("smollm2-135m"), small_options()).unwrap())
}

fn qwen() -> &'static LlmRuntime {
    static RT: OnceLock<LlmRuntime> = OnceLock::new();
    RT.get_or_init(|| LlmRuntime::load(&cached("qwen2.5-coder-0.5b"), small_options()).unwrap())
}

#[test]
fn chat_messages_render_with_the_models_own_template() {
    let prompt = qwen()
        .render(&[
            ChatMessage::system("You watch cameras."),
            ChatMessage::user("Anyone at the door?"),
        ])
        .unwrap();
    assert!(
        prompt.starts_with("<|im_start|>system\nYou watch cameras.<|im_end|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|im_start|>user\nAnyone at the door?<|im_end|>"),
        "{prompt}"
    );
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
}

#[test]
fn generation_streams_text_and_reports_sane_timing() {
    let mut streamed = String::new();
    let done = smol()
        .generate(
            streamer_reason::GenerateRequest {
                messages: vec![ChatMessage::user("Write one sentence about a front door.")],
                sampling: Sampling::greedy(24),
                grammar: None,
                images: Vec::new(),
                ..Default::default()
            },
            |piece| streamed.push_str(piece),
        )
        .unwrap();
    assert!(!done.text.trim().is_empty());
    assert_eq!(streamed, done.text);
    let t = done.timing;
    assert!(t.prompt_tokens > 5 && t.prefill_tokens <= t.prompt_tokens);
    assert!((1..=24).contains(&t.completion_tokens), "{t:?}");
    assert!(done.finish == FinishReason::Length || t.completion_tokens < 24);
    assert!(!t.ttft.is_zero() && t.ttft >= t.prefill, "{t:?}");
    assert!(t.prefill_tokens_per_s() > 0.0);
    if t.completion_tokens > 2 {
        assert!(t.decode_tokens_per_s() > 1.0, "{t:?}");
    }
}

#[test]
fn stop_strings_end_generation_before_they_appear() {
    let done = qwen()
        .chat(
            vec![ChatMessage::user(
                "Count from 1 to 10, separated by commas. Output only the numbers.",
            )],
            Sampling {
                stop: vec!["5".into()],
                ..Sampling::greedy(40)
            },
        )
        .unwrap();
    assert_eq!(done.finish, FinishReason::Stop, "{:?}", done.text);
    assert!(
        done.text.contains('4') && !done.text.contains('5'),
        "{:?}",
        done.text
    );
}

#[derive(Debug, Deserialize)]
struct Triage {
    urgency: String,
    alert_message: String,
    should_notify: bool,
}

fn triage_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "urgency": {"type": "string", "enum": ["normal", "monitor", "suspicious", "critical"]},
            "alert_message": {"type": "string", "maxLength": 120},
            "should_notify": {"type": "boolean"}
        },
        "required": ["urgency", "alert_message", "should_notify"],
        "additionalProperties": false
    })
}

#[test]
fn grammar_constrained_json_always_parses_even_from_a_tiny_model() {
    let scenes = [
        "A courier leaves a parcel at the front door and walks away.",
        "Someone in a hood tries the handle of the back door at 3 am.",
        "The cat walks across the garden.",
    ];
    for (seed, scene) in scenes.iter().enumerate() {
        let (triage, done): (Triage, _) = smol()
            .generate_json(
                vec![
                    ChatMessage::system("Classify the camera event. Answer in JSON."),
                    ChatMessage::user(*scene),
                ],
                &triage_schema(),
                Sampling {
                    temperature: Some(0.8),
                    seed: seed as u32,
                    max_tokens: 200,
                    ..Sampling::default()
                },
            )
            .unwrap_or_else(|e| panic!("scene {scene:?}: {e}"));
        assert!(["normal", "monitor", "suspicious", "critical"].contains(&triage.urgency.as_str()));
        assert!(triage.alert_message.chars().count() <= 120);
        let _ = triage.should_notify;
        assert_ne!(done.finish, FinishReason::Length, "{:?}", done.text);
    }
}

#[test]
fn output_that_does_not_fit_the_callers_type_is_a_typed_error() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Count {
        count: u32,
    }
    // The grammar allows a string; the caller wants a number.
    let schema = json!({"type": "object", "properties": {"count": {"type": "string", "maxLength": 10}}, "required": ["count"]});
    let err = smol()
        .generate_json::<Count>(
            vec![ChatMessage::user("How many people?")],
            &schema,
            Sampling::greedy(60),
        )
        .unwrap_err();
    match err {
        ReasonError::InvalidOutput { raw, .. } => assert!(raw.contains("count"), "{raw}"),
        other => panic!("expected InvalidOutput, got {other}"),
    }
}

#[test]
fn a_shared_prompt_prefix_is_not_prefilled_twice() {
    let rt = LlmRuntime::load(&cached("smollm2-135m"), small_options()).unwrap();
    let system = ChatMessage::system(
        "You are the triage assistant of a home security system. Cameras: front door, \
         driveway, back garden. Rules: deliveries in daytime are normal; anyone trying \
         doors at night is critical; unknown people lingering are suspicious. "
            .repeat(3),
    );
    let ask = |question: &str| {
        rt.chat(
            vec![system.clone(), ChatMessage::user(question)],
            Sampling::greedy(4),
        )
        .unwrap()
        .timing
    };
    let cold = ask("A person at the front door.");
    let warm = ask("A fox in the back garden.");
    assert_eq!(cold.reused_tokens, 0);
    assert!(warm.reused_tokens > 100, "{warm:?}");
    assert!(
        warm.prefill_tokens * 3 < cold.prefill_tokens,
        "cold {cold:?}\nwarm {warm:?}"
    );
    assert_eq!(warm.reused_tokens + warm.prefill_tokens, warm.prompt_tokens);
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let rt = LlmRuntime::load(
        &cached("smollm2-135m"),
        RuntimeOptions {
            context: 128,
            threads: Some(1),
            batch: 128,
            projector: None,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let err = rt
        .chat(
            vec![ChatMessage::user("camera ".repeat(400))],
            Sampling::greedy(4),
        )
        .unwrap_err();
    assert!(
        matches!(err, ReasonError::PromptTooLong { tokens, .. } if tokens > 256),
        "{err}"
    );
    // The runtime still works afterwards.
    assert!(rt
        .chat(vec![ChatMessage::user("Hi")], Sampling::greedy(2))
        .is_ok());
}

#[test]
fn a_request_that_needs_a_tool_produces_a_parsed_call() {
    use streamer_reason::{parse_reply, tools_prompt, Tool};
    let tools = [
        Tool {
            name: "search_clips".into(),
            description: "Find recorded video clips from one camera in a time range".into(),
            parameters: json!({"type": "object", "properties": {
                "camera": {"type": "string", "description": "camera name"},
                "since": {"type": "string", "description": "start time, HH:MM"}
            }, "required": ["camera"]}),
        },
        Tool {
            name: "get_system_status".into(),
            description: "Report which cameras are online and disk usage".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
    ];
    let system = format!(
        "You are a home security assistant.\n\n{}",
        tools_prompt(&tools)
    );
    let done = qwen()
        .chat(
            vec![
                ChatMessage::system(system),
                ChatMessage::user("Find the clips from the driveway camera since 08:00."),
            ],
            Sampling::greedy(80),
        )
        .unwrap();
    let parsed = parse_reply(&done.text);
    let call = parsed
        .calls
        .first()
        .unwrap_or_else(|| panic!("no tool call in {:?}", done.text));
    assert_eq!(call.name, "search_clips", "{:?}", done.text);
    let camera = call.arguments["camera"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(camera.contains("driveway"), "{:?}", call.arguments);
}
