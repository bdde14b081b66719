//! How each suite's requests are shaped, and the tools offered to the model.
//!
//! Defaults per suite: temperature omitted (the backend's own default), 0.1
//! for classification and deduplication suites, 0.7 with top_p 0.8 for the
//! JSON extraction suites. A suite file's `defaults` and a test's `shape`
//! override these field by field. Earlier tool calls and their results are
//! never sent as structured messages: the test data writes them as plain text.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Idle timeout of a text request, in seconds.
pub const TEXT_TIMEOUT_S: u64 = 30;
/// Idle timeout of a request carrying an image, in seconds.
pub const IMAGE_TIMEOUT_S: u64 = 120;
/// Generation budget of suites that answer in prose or with tool calls.
pub const DEFAULT_MAX_TOKENS: u32 = 640;
/// Generation budget of suites that answer with one small JSON object.
pub const JSON_MAX_TOKENS: u32 = 384;
/// Generation budget of the evening summaries.
pub const NARRATIVE_MAX_TOKENS: u32 = 768;

/// The token budget of a suite: generous for a right answer (the integrity
/// test holds every passing reference to half of it), small enough that a
/// runaway reply is cut off early and counted as degenerate.
pub fn token_budget(suite: &str) -> u32 {
    if CLASSIFICATION_SUITES.contains(&suite) || EXTRACTION_SUITES.contains(&suite) {
        JSON_MAX_TOKENS
    } else if suite == "Narrative Synthesis" {
        NARRATIVE_MAX_TOKENS
    } else {
        DEFAULT_MAX_TOKENS
    }
}

/// Suites sent with temperature 0.1 (classification and deduplication).
pub const CLASSIFICATION_SUITES: [&str; 4] = [
    "Topic Classification",
    "Event Deduplication",
    "Security Classification",
    "VLM-to-Alert Triage",
];

/// Suites sent with temperature 0.7, top_p 0.8 (JSON extraction).
pub const EXTRACTION_SUITES: [&str; 2] = ["Context Preprocessing", "Knowledge Distillation"];

/// Suites whose tool-using tests are offered the routing tools as well.
pub const ROUTING_SUITES: [&str; 1] = ["Alert Routing"];

/// The sampling and transport settings of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestShape {
    /// `None`: omit the field and let the backend choose.
    pub temperature: Option<f32>,
    /// `None`: omit the field.
    pub top_p: Option<f32>,
    pub max_tokens: u32,
    /// Whether tool definitions are sent.
    pub tools: bool,
    /// Idle timeout: the call fails when no token arrives for this long.
    pub timeout_s: u64,
}

/// Field-by-field overrides of a [`RequestShape`], as written in data files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeOverride {
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default)]
    pub timeout_s: Option<u64>,
}

impl RequestShape {
    /// The default shape of a text request in `suite`.
    pub fn for_suite(suite: &str) -> Self {
        let (temperature, top_p) = if CLASSIFICATION_SUITES.contains(&suite) {
            (Some(0.1), None)
        } else if EXTRACTION_SUITES.contains(&suite) {
            (Some(0.7), Some(0.8))
        } else {
            (None, None)
        };
        RequestShape {
            temperature,
            top_p,
            max_tokens: token_budget(suite),
            tools: false,
            timeout_s: TEXT_TIMEOUT_S,
        }
    }

    /// The default shape of a VLM (image) request.
    pub fn vlm() -> Self {
        RequestShape {
            temperature: None,
            top_p: None,
            max_tokens: 256,
            tools: false,
            timeout_s: IMAGE_TIMEOUT_S,
        }
    }

    /// Applies overrides; fields the override leaves unset are kept.
    pub fn with(mut self, o: &ShapeOverride) -> Self {
        if o.temperature.is_some() {
            self.temperature = o.temperature;
        }
        if o.top_p.is_some() {
            self.top_p = o.top_p;
        }
        if let Some(m) = o.max_tokens {
            self.max_tokens = m;
        }
        if let Some(t) = o.timeout_s {
            self.timeout_s = t;
        }
        self
    }

    /// Sets whether tools are sent.
    pub fn with_tools(mut self, tools: bool) -> Self {
        self.tools = tools;
        self
    }
}

fn function(name: &str, description: &str, parameters: Value) -> Value {
    json!({
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters}
    })
}

/// Names of the seven assistant tools, in [`security_tools`] order.
pub const SECURITY_TOOL_NAMES: [&str; 7] = [
    "search_clips",
    "analyze_clip",
    "send_clip",
    "system_status",
    "subscribe_alerts",
    "schedule_task",
    "read_knowledge",
];

/// Names of the alert routing tools, in [`routing_tools`] order.
pub const ROUTING_TOOL_NAMES: [&str; 5] = [
    "set_alert_channel",
    "set_quiet_hours",
    "update_alert_rule",
    "cancel_alert_rule",
    "broadcast_message",
];

/// The fixed set of seven home-security assistant tools, as OpenAI-style
/// function definitions.
pub fn security_tools() -> Vec<Value> {
    vec![
        function(
            "search_clips",
            "Search recorded camera clips by what happened, which camera, and when. Returns matching clips with their ids.",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for, e.g. 'person at the door', 'red car'"},
                    "camera": {"type": "string", "description": "Camera name, e.g. 'driveway'; omit for all cameras"},
                    "start": {"type": "string", "description": "Start of the time range, ISO 8601 or words like 'yesterday 18:00'"},
                    "end": {"type": "string", "description": "End of the time range"}
                },
                "required": ["query"]
            }),
        ),
        function(
            "analyze_clip",
            "Look closely at one recorded clip and answer a question about what it shows.",
            json!({
                "type": "object",
                "properties": {
                    "clip_id": {"type": "string"},
                    "question": {"type": "string", "description": "What to find out about the clip"}
                },
                "required": ["clip_id", "question"]
            }),
        ),
        function(
            "send_clip",
            "Send a recorded clip to a household member or contact.",
            json!({
                "type": "object",
                "properties": {
                    "clip_id": {"type": "string"},
                    "recipient": {"type": "string", "description": "Who receives it, e.g. 'me', 'Dana', 'neighbour'"}
                },
                "required": ["clip_id", "recipient"]
            }),
        ),
        function(
            "system_status",
            "Report the health of the system: cameras online/offline, storage, models.",
            json!({
                "type": "object",
                "properties": {
                    "component": {"type": "string", "enum": ["all", "cameras", "storage", "models"]}
                },
                "required": []
            }),
        ),
        function(
            "subscribe_alerts",
            "Notify the user when something happens in the future, e.g. when a person appears on a camera.",
            json!({
                "type": "object",
                "properties": {
                    "condition": {"type": "string", "description": "What should trigger the alert"},
                    "camera": {"type": "string", "description": "Camera to watch; omit for all"},
                    "until": {"type": "string", "description": "When the subscription ends, if ever"}
                },
                "required": ["condition"]
            }),
        ),
        function(
            "schedule_task",
            "Run a task later or on a schedule, e.g. arm cameras at a time or send a daily summary.",
            json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "What to do"},
                    "at": {"type": "string", "description": "When: 'HH:MM', ISO 8601 time, or a cron-like phrase"},
                    "repeat": {"type": "string", "enum": ["once", "daily", "weekdays", "weekly"]}
                },
                "required": ["task", "at"]
            }),
        ),
        function(
            "read_knowledge",
            "Read what the system has stored about the household: people, pets, vehicles, routines, preferences.",
            json!({
                "type": "object",
                "properties": {
                    "topic": {"type": "string", "description": "What to look up, e.g. 'vehicles', 'pets', 'cleaner schedule'"}
                },
                "required": ["topic"]
            }),
        ),
    ]
}

/// Tools for routing alerts: channel, quiet hours, change and cancel a rule,
/// broadcast. Offered (with the seven) to the Alert Routing suite.
pub fn routing_tools() -> Vec<Value> {
    let severity =
        json!({"type": "string", "enum": ["normal", "monitor", "suspicious", "critical"]});
    vec![
        function(
            "set_alert_channel",
            "Choose where alerts of a given minimum severity are delivered.",
            json!({
                "type": "object",
                "properties": {
                    "channel": {"type": "string", "enum": ["push", "sms", "email", "siren", "speaker"]},
                    "min_severity": severity
                },
                "required": ["channel"]
            }),
        ),
        function(
            "set_quiet_hours",
            "Silence non-urgent alerts during a daily time window.",
            json!({
                "type": "object",
                "properties": {
                    "start": {"type": "string", "description": "HH:MM, 24-hour"},
                    "end": {"type": "string", "description": "HH:MM, 24-hour"},
                    "allow_critical": {"type": "boolean", "description": "Whether critical alerts still get through"}
                },
                "required": ["start", "end", "allow_critical"]
            }),
        ),
        function(
            "update_alert_rule",
            "Change an existing alert rule: its camera, minimum severity or channel.",
            json!({
                "type": "object",
                "properties": {
                    "rule_id": {"type": "string"},
                    "camera": {"type": "string"},
                    "min_severity": severity,
                    "channel": {"type": "string", "enum": ["push", "sms", "email", "siren", "speaker"]}
                },
                "required": ["rule_id"]
            }),
        ),
        function(
            "cancel_alert_rule",
            "Delete an existing alert rule so it no longer fires.",
            json!({
                "type": "object",
                "properties": {"rule_id": {"type": "string"}},
                "required": ["rule_id"]
            }),
        ),
        function(
            "broadcast_message",
            "Send one message to every household member at once.",
            json!({
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "channels": {"type": "array", "items": {"type": "string", "enum": ["push", "sms", "email", "speaker"]}}
                },
                "required": ["message"]
            }),
        ),
    ]
}

/// The tools offered to a tool-using test of `suite`.
pub fn tools_for(suite: &str) -> Vec<Value> {
    let mut t = security_tools();
    if ROUTING_SUITES.contains(&suite) {
        t.extend(routing_tools());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_defaults() {
        let c = RequestShape::for_suite("Security Classification");
        assert_eq!((c.temperature, c.top_p), (Some(0.1), None));
        let e = RequestShape::for_suite("Knowledge Distillation");
        assert_eq!((e.temperature, e.top_p), (Some(0.7), Some(0.8)));
        let o = RequestShape::for_suite("Tool Use");
        assert_eq!((o.temperature, o.top_p, o.timeout_s), (None, None, 30));
        assert_eq!(RequestShape::vlm().timeout_s, 120);
        let over = ShapeOverride {
            max_tokens: Some(2048),
            timeout_s: Some(60),
            ..Default::default()
        };
        let s = RequestShape::for_suite("Event Deduplication").with(&over);
        assert_eq!(
            (s.temperature, s.max_tokens, s.timeout_s),
            (Some(0.1), 2048, 60)
        );
    }

    #[test]
    fn tool_definitions_are_well_formed() {
        let all = tools_for("Alert Routing");
        let names: Vec<&str> = all
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        let expected: Vec<&str> = SECURITY_TOOL_NAMES
            .iter()
            .chain(ROUTING_TOOL_NAMES.iter())
            .copied()
            .collect();
        assert_eq!(names, expected);
        for t in &all {
            assert_eq!(t["type"], "function");
            assert!(t["function"]["description"].as_str().unwrap().len() > 10);
            assert_eq!(t["function"]["parameters"]["type"], "object");
            for r in t["function"]["parameters"]["required"].as_array().unwrap() {
                let r = r.as_str().unwrap();
                assert!(
                    t["function"]["parameters"]["properties"].get(r).is_some(),
                    "{r}"
                );
            }
        }
        assert_eq!(tools_for("Tool Use").len(), 7);
    }
}
