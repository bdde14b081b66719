//! Deterministic checks and the scorer.
//!
//! Every test carries a list of [`Check`]s; a reply passes a test iff every
//! check passes on the [`Cleaned`](crate::reply::Cleaned) reply. Each check
//! says why it passed or failed, so a report can show the reason.

use regex::RegexBuilder;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply::{clean, Cleaned, Reply};

/// JSON value kinds for [`Check::JsonType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonKind {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
    Null,
}

/// One deterministic assertion about a cleaned reply. In data files each is
/// an object tagged by `kind`, e.g. `{"kind": "tool_call", "name": "send_clip"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The value at `path` equals `value`, types included (`"true"` is not `true`).
    JsonEquals {
        #[serde(default)]
        path: String,
        value: Value,
    },
    /// The value at `path` has JSON type `type`.
    JsonType {
        #[serde(default)]
        path: String,
        #[serde(rename = "type")]
        kind: JsonKind,
    },
    /// The value at `path` is an array with `min..=max` elements.
    JsonArrayLen {
        #[serde(default)]
        path: String,
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
    },
    /// The array at `path` contains an element equal to `value`.
    JsonContains {
        #[serde(default)]
        path: String,
        value: Value,
    },
    /// The array at `path` contains an element equal to one of `values`.
    JsonContainsAny {
        #[serde(default)]
        path: String,
        values: Vec<Value>,
    },
    /// The array at `path` contains no element equal to `value`.
    JsonNotContains {
        #[serde(default)]
        path: String,
        value: Value,
    },
    /// The value at `path` equals one of `values`.
    JsonOneOf {
        #[serde(default)]
        path: String,
        values: Vec<Value>,
    },
    /// The string at `path` matches `pattern` (a regex).
    JsonRegex {
        #[serde(default)]
        path: String,
        pattern: String,
    },
    /// The cleaned text is exactly one JSON document: no prose, no fence.
    BareJson {},
    /// The first tool call is to `name`.
    ToolCall { name: String },
    /// An argument of the first tool call (a path into its arguments) equals
    /// `equals`, is one of `one_of`, or matches `regex`; at least one is given.
    ToolArg {
        arg: String,
        #[serde(default)]
        equals: Option<Value>,
        #[serde(default)]
        one_of: Option<Vec<Value>>,
        #[serde(default)]
        regex: Option<String>,
    },
    /// The reply makes no tool call.
    NoToolCall {},
    /// The text contains `text` (case-insensitive unless `case_sensitive`).
    Contains {
        text: String,
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The text does not contain `text`.
    NotContains {
        text: String,
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The text contains at least one of `texts`.
    AnyOf {
        texts: Vec<String>,
        #[serde(default)]
        case_sensitive: bool,
    },
    /// The text matches `pattern` (use `(?i)` for case-insensitive).
    Regex { pattern: String },
    /// The text does not match `pattern`.
    NotRegex { pattern: String },
    /// The text length in characters lies within the bounds.
    Length {
        #[serde(default)]
        min_chars: Option<usize>,
        #[serde(default)]
        max_chars: Option<usize>,
    },
    /// The text never asserts `pattern`: a match counts only when its clause
    /// holds no negation before it, so "do not go downstairs" or "nothing
    /// suspicious" pass where "go downstairs" or "a suspicious man" fail.
    NotClaim { pattern: String },
    /// Both patterns match the text, and `first` matches earlier than
    /// `then` (e.g. the break-in is reported before the courier).
    Before { first: String, then: String },
    /// At least one of `checks` passes: one answer written more than one
    /// right way (the camera as the `camera` argument or inside the `query`).
    Either { checks: Vec<Check> },
    /// The first of `labels` that the text names (a whole word, any case)
    /// is one of `accept`: "Suspicious: a person at the door" passes for
    /// accept `[suspicious, critical]`, "normal, nothing to report" fails,
    /// and so does a reply that names no label at all.
    Label {
        labels: Vec<String>,
        accept: Vec<String>,
    },
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Short description of the check, e.g. `tool_call(send_clip)`.
    pub check: String,
    pub passed: bool,
    /// Why it passed or failed, in words.
    pub reason: String,
}

/// The outcome of scoring one reply against one test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// True iff every check passed (and there was at least one).
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

impl Score {
    /// The first failing check, if any.
    pub fn first_failure(&self) -> Option<&CheckResult> {
        self.checks.iter().find(|c| !c.passed)
    }
}

/// Scores a reply against a list of checks. A list with no checks fails.
pub fn score(checks: &[Check], reply: &Reply) -> Score {
    let cleaned = clean(reply);
    score_cleaned(checks, &cleaned)
}

/// Scores an already cleaned reply.
pub fn score_cleaned(checks: &[Check], cleaned: &Cleaned) -> Score {
    let results: Vec<CheckResult> = checks.iter().map(|c| c.run(cleaned)).collect();
    let passed = !results.is_empty() && results.iter().all(|r| r.passed);
    Score {
        passed,
        checks: results,
    }
}

impl Check {
    /// Validates the check itself (regexes compile, paths parse, bounds make
    /// sense); data loading calls this so a bad test is reported up front.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Check::JsonEquals { path, .. }
            | Check::JsonType { path, .. }
            | Check::JsonContains { path, .. }
            | Check::JsonNotContains { path, .. } => parse_path(path).map(|_| ()),
            Check::JsonOneOf { path, values } | Check::JsonContainsAny { path, values } => {
                parse_path(path)?;
                if values.is_empty() {
                    return Err("needs at least one value".into());
                }
                Ok(())
            }
            Check::JsonArrayLen { path, min, max } => {
                parse_path(path)?;
                bounds_ok(*min, *max)
            }
            Check::JsonRegex { path, pattern } => {
                parse_path(path)?;
                compile(pattern).map(|_| ())
            }
            Check::ToolArg {
                arg,
                equals,
                one_of,
                regex,
            } => {
                parse_path(arg)?;
                if arg.is_empty() {
                    return Err("tool_arg needs an argument name".into());
                }
                if equals.is_none() && one_of.is_none() && regex.is_none() {
                    return Err("tool_arg needs equals, one_of or regex".into());
                }
                if let Some(r) = regex {
                    compile(r)?;
                }
                Ok(())
            }
            Check::ToolCall { name } if name.is_empty() => Err("tool_call needs a name".into()),
            Check::Contains { text, .. } | Check::NotContains { text, .. } if text.is_empty() => {
                Err("empty text".into())
            }
            Check::AnyOf { texts, .. }
                if texts.is_empty() || texts.iter().any(|t| t.is_empty()) =>
            {
                Err("any_of needs non-empty texts".into())
            }
            Check::Regex { pattern }
            | Check::NotRegex { pattern }
            | Check::NotClaim { pattern } => compile(pattern).map(|_| ()),
            Check::Length {
                min_chars,
                max_chars,
            } => bounds_ok(*min_chars, *max_chars),
            Check::Before { first, then } => {
                compile(first)?;
                compile(then).map(|_| ())
            }
            Check::Either { checks } => {
                if checks.len() < 2 {
                    return Err("either needs at least two checks".into());
                }
                checks.iter().try_for_each(Check::validate)
            }
            Check::Label { labels, accept } => {
                if labels.len() < 2 || labels.iter().any(|l| !is_word(l)) {
                    return Err("label needs at least two labels, each a single word".into());
                }
                if accept.is_empty() {
                    return Err("label needs at least one accepted label".into());
                }
                match accept.iter().find(|a| !labels.contains(a)) {
                    Some(a) => Err(format!("accepted label {a:?} is not among the labels")),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// A short label for reports.
    pub fn label(&self) -> String {
        match self {
            Check::JsonEquals { path, value } => format!("json_equals({}, {value})", shown(path)),
            Check::JsonType { path, kind } => format!("json_type({}, {kind:?})", shown(path)),
            Check::JsonArrayLen { path, min, max } => {
                format!("json_array_len({}, {min:?}..{max:?})", shown(path))
            }
            Check::JsonContains { path, value } => {
                format!("json_contains({}, {value})", shown(path))
            }
            Check::JsonNotContains { path, value } => {
                format!("json_not_contains({}, {value})", shown(path))
            }
            Check::JsonContainsAny { path, values } => {
                format!(
                    "json_contains_any({}, {})",
                    shown(path),
                    Value::from(values.clone())
                )
            }
            Check::JsonOneOf { path, values } => {
                format!(
                    "json_one_of({}, {})",
                    shown(path),
                    Value::from(values.clone())
                )
            }
            Check::JsonRegex { path, pattern } => {
                format!("json_regex({}, /{pattern}/)", shown(path))
            }
            Check::BareJson {} => "bare_json".into(),
            Check::ToolCall { name } => format!("tool_call({name})"),
            Check::ToolArg { arg, .. } => format!("tool_arg({arg})"),
            Check::NoToolCall {} => "no_tool_call".into(),
            Check::Contains { text, .. } => format!("contains({text:?})"),
            Check::NotContains { text, .. } => format!("not_contains({text:?})"),
            Check::AnyOf { texts, .. } => format!("any_of({texts:?})"),
            Check::Regex { pattern } => format!("regex(/{pattern}/)"),
            Check::NotRegex { pattern } => format!("not_regex(/{pattern}/)"),
            Check::Length {
                min_chars,
                max_chars,
            } => format!("length({min_chars:?}..{max_chars:?})"),
            Check::NotClaim { pattern } => format!("not_claim(/{pattern}/)"),
            Check::Before { first, then } => format!("before(/{first}/, /{then}/)"),
            Check::Label { accept, .. } => format!("label({})", accept.join("|")),
            Check::Either { checks } => format!(
                "either({})",
                checks
                    .iter()
                    .map(Check::label)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ),
        }
    }

    /// Runs the check on a cleaned reply.
    pub fn run(&self, c: &Cleaned) -> CheckResult {
        let (passed, reason) = self.eval(c);
        CheckResult {
            check: self.label(),
            passed,
            reason,
        }
    }

    fn eval(&self, c: &Cleaned) -> (bool, String) {
        match self {
            Check::JsonEquals { path, value } => with_json(c, path, |v| {
                if json_eq(v, value) {
                    (true, format!("{} is {value}", shown(path)))
                } else {
                    (false, format!("{} is {v}, expected {value}", shown(path)))
                }
            }),
            Check::JsonType { path, kind } => with_json(c, path, |v| {
                let actual = kind_of(v);
                let ok =
                    actual == *kind || (*kind == JsonKind::Number && actual == JsonKind::Integer);
                (
                    ok,
                    format!("{} has type {actual:?}, expected {kind:?}", shown(path)),
                )
            }),
            Check::JsonArrayLen { path, min, max } => with_json(c, path, |v| match v.as_array() {
                Some(a) => {
                    let n = a.len();
                    let ok = min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m);
                    (
                        ok,
                        format!(
                            "{} has {n} element(s), bounds {min:?}..{max:?}",
                            shown(path)
                        ),
                    )
                }
                None => (false, format!("{} is not an array: {v}", shown(path))),
            }),
            Check::JsonContains { path, value } => with_json(c, path, |v| match v.as_array() {
                Some(a) => {
                    let ok = a.iter().any(|e| json_eq(e, value));
                    (
                        ok,
                        format!(
                            "{} = {v} {} {value}",
                            shown(path),
                            if ok { "contains" } else { "lacks" }
                        ),
                    )
                }
                None => (false, format!("{} is not an array: {v}", shown(path))),
            }),
            Check::JsonContainsAny { path, values } => with_json(c, path, |v| match v.as_array() {
                Some(a) => match values.iter().find(|w| a.iter().any(|e| json_eq(e, w))) {
                    Some(w) => (true, format!("{} = {v} contains {w}", shown(path))),
                    None => (
                        false,
                        format!(
                            "{} = {v} contains none of {}",
                            shown(path),
                            Value::from(values.clone())
                        ),
                    ),
                },
                None => (false, format!("{} is not an array: {v}", shown(path))),
            }),
            Check::JsonNotContains { path, value } => with_json(c, path, |v| match v.as_array() {
                Some(a) => {
                    let ok = !a.iter().any(|e| json_eq(e, value));
                    (
                        ok,
                        format!(
                            "{} = {v} {} {value}",
                            shown(path),
                            if ok { "lacks" } else { "contains" }
                        ),
                    )
                }
                None => (false, format!("{} is not an array: {v}", shown(path))),
            }),
            Check::JsonOneOf { path, values } => with_json(c, path, |v| {
                let ok = values.iter().any(|e| json_eq(v, e));
                (
                    ok,
                    format!(
                        "{} is {v}, accepted {}",
                        shown(path),
                        Value::from(values.clone())
                    ),
                )
            }),
            Check::JsonRegex { path, pattern } => with_json(c, path, |v| match v.as_str() {
                Some(s) => match compile(pattern) {
                    Ok(re) => {
                        let ok = re.is_match(s);
                        (
                            ok,
                            format!(
                                "{} = {s:?} {} /{pattern}/",
                                shown(path),
                                if ok { "matches" } else { "does not match" }
                            ),
                        )
                    }
                    Err(e) => (false, e),
                },
                None => (false, format!("{} is not a string: {v}", shown(path))),
            }),
            Check::BareJson {} => {
                if c.bare_json {
                    (true, "reply is bare JSON".into())
                } else if c.json.is_some() {
                    (false, "JSON is wrapped in prose or a code fence".into())
                } else {
                    (false, "reply holds no JSON".into())
                }
            }
            Check::ToolCall { name } => match c.tool_calls.first() {
                Some(t) if t.name == *name => (true, format!("first call is {name}")),
                Some(t) => (false, format!("first call is {}, expected {name}", t.name)),
                None => (false, format!("no tool call, expected {name}")),
            },
            Check::ToolArg {
                arg,
                equals,
                one_of,
                regex,
            } => {
                let Some(call) = c.tool_calls.first() else {
                    return (false, format!("no tool call to read argument {arg} from"));
                };
                let Some(v) = lookup(&call.arguments, arg) else {
                    return (
                        false,
                        format!("{} has no argument {arg}: {}", call.name, call.arguments),
                    );
                };
                if let Some(e) = equals {
                    if !json_eq(v, e) {
                        return (false, format!("{arg} is {v}, expected {e}"));
                    }
                }
                if let Some(options) = one_of {
                    if !options.iter().any(|e| json_eq(v, e)) {
                        return (
                            false,
                            format!("{arg} is {v}, accepted {}", Value::from(options.clone())),
                        );
                    }
                }
                if let Some(p) = regex {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    match compile(p) {
                        Ok(re) if re.is_match(&s) => {}
                        Ok(_) => return (false, format!("{arg} = {s:?} does not match /{p}/")),
                        Err(e) => return (false, e),
                    }
                }
                (true, format!("{arg} = {v}"))
            }
            Check::NoToolCall {} => match c.tool_calls.first() {
                None => (true, "no tool call".into()),
                Some(t) => (false, format!("unexpected tool call {}", t.name)),
            },
            Check::Contains {
                text,
                case_sensitive,
            } => {
                let ok = has(&c.text, text, *case_sensitive);
                (
                    ok,
                    format!("text {} {text:?}", if ok { "contains" } else { "lacks" }),
                )
            }
            Check::NotContains {
                text,
                case_sensitive,
            } => {
                let ok = !has(&c.text, text, *case_sensitive);
                (
                    ok,
                    format!(
                        "text {} {text:?}",
                        if ok { "lacks" } else { "contains forbidden" }
                    ),
                )
            }
            Check::AnyOf {
                texts,
                case_sensitive,
            } => match texts.iter().find(|t| has(&c.text, t, *case_sensitive)) {
                Some(t) => (true, format!("text contains {t:?}")),
                None => (false, format!("text contains none of {texts:?}")),
            },
            Check::Regex { pattern } => match compile(pattern) {
                Ok(re) => {
                    let ok = re.is_match(&c.text);
                    (
                        ok,
                        format!(
                            "text {} /{pattern}/",
                            if ok { "matches" } else { "does not match" }
                        ),
                    )
                }
                Err(e) => (false, e),
            },
            Check::NotRegex { pattern } => match compile(pattern) {
                Ok(re) => match re.find(&c.text) {
                    None => (true, format!("text does not match /{pattern}/")),
                    Some(m) => (
                        false,
                        format!("text matches forbidden /{pattern}/ at {:?}", m.as_str()),
                    ),
                },
                Err(e) => (false, e),
            },
            Check::Length {
                min_chars,
                max_chars,
            } => {
                let n = c.text.chars().count();
                let ok = min_chars.is_none_or(|m| n >= m) && max_chars.is_none_or(|m| n <= m);
                (
                    ok,
                    format!("text has {n} chars, bounds {min_chars:?}..{max_chars:?}"),
                )
            }
            Check::NotClaim { pattern } => match compile(pattern) {
                Ok(re) => match re.find_iter(&c.text).find(|m| !negated(&c.text, m.start())) {
                    None => (true, format!("text never asserts /{pattern}/")),
                    Some(m) => (false, format!("text asserts {:?}", m.as_str())),
                },
                Err(e) => (false, e),
            },
            Check::Before { first, then } => {
                let (a, b) = match (compile(first), compile(then)) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => return (false, e),
                };
                match (a.find(&c.text), b.find(&c.text)) {
                    (Some(x), Some(y)) if x.start() < y.start() => (
                        true,
                        format!("{:?} comes before {:?}", x.as_str(), y.as_str()),
                    ),
                    (Some(x), Some(y)) => (
                        false,
                        format!("{:?} comes after {:?}", x.as_str(), y.as_str()),
                    ),
                    (None, _) => (false, format!("text does not match /{first}/")),
                    (_, None) => (false, format!("text does not match /{then}/")),
                }
            }
            Check::Label { labels, accept } => match first_label(&c.text, labels) {
                Some(l) if accept.contains(&l) => (true, format!("first label is {l:?}")),
                Some(l) => (
                    false,
                    format!("first label is {l:?}, want one of {accept:?}"),
                ),
                None => (false, format!("text names none of {labels:?}")),
            },
            Check::Either { checks } => {
                let results: Vec<CheckResult> = checks.iter().map(|k| k.run(c)).collect();
                match results.iter().find(|r| r.passed) {
                    Some(r) => (true, format!("{}: {}", r.check, r.reason)),
                    None => (
                        false,
                        results
                            .iter()
                            .map(|r| r.reason.as_str())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                }
            }
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(char::is_alphanumeric)
}

/// The label (as written in `labels`) that `text` names first, matched as a
/// whole word in any case.
fn first_label(text: &str, labels: &[String]) -> Option<String> {
    let alternatives: Vec<String> = labels.iter().map(|l| regex::escape(l)).collect();
    let re = regex::Regex::new(&format!(r"(?i)\b({})\b", alternatives.join("|"))).ok()?;
    let found = re.find(text)?.as_str().to_lowercase();
    labels.iter().find(|l| l.to_lowercase() == found).cloned()
}

/// Whether the clause around byte `at` of `text` negates what follows: a
/// negation word between the clause's start (the text's start, or the last
/// `.`, `;`, `:`, `!`, `?`, `,`, dash or line break) and `at`.
fn negated(text: &str, at: usize) -> bool {
    static NEGATION: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let negation = NEGATION.get_or_init(|| {
        regex::Regex::new(
            r"(?i)\b(no|not|nothing|never|none|nobody|without|nor|neither|avoid)\b|n['’]t\b",
        )
        .expect("negation regex")
    });
    let before = &text[..at];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, ch)| matches!(ch, '.' | ';' | ':' | '!' | '?' | ',' | '\n' | '—' | '–'))
        .map(|(i, ch)| i + ch.len_utf8())
        .unwrap_or(0);
    let start = before[start..]
        .rfind(" - ")
        .map(|i| start + i + 3)
        .unwrap_or(start);
    negation.is_match(&before[start..])
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "$"
    } else {
        path
    }
}

fn bounds_ok(min: Option<usize>, max: Option<usize>) -> Result<(), String> {
    match (min, max) {
        (None, None) => Err("needs min or max".into()),
        (Some(a), Some(b)) if a > b => Err(format!("min {a} > max {b}")),
        _ => Ok(()),
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regex /{pattern}/: {e}"))
}

fn has(hay: &str, needle: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        hay.contains(needle)
    } else {
        hay.to_lowercase().contains(&needle.to_lowercase())
    }
}

/// Runs `f` on the value at `path` of the reply's JSON, failing when there is
/// no JSON or no such path.
fn with_json(c: &Cleaned, path: &str, f: impl FnOnce(&Value) -> (bool, String)) -> (bool, String) {
    let Some(doc) = &c.json else {
        return (false, "reply holds no JSON".into());
    };
    match lookup(doc, path) {
        Some(v) => f(v),
        None => (false, format!("JSON has no {}", shown(path))),
    }
}

/// Typed equality; numbers compare by value (`1` equals `1.0`), nothing else
/// is coerced.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn kind_of(v: &Value) -> JsonKind {
    match v {
        Value::Null => JsonKind::Null,
        Value::Bool(_) => JsonKind::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => JsonKind::Integer,
        Value::Number(_) => JsonKind::Number,
        Value::String(_) => JsonKind::String,
        Value::Array(_) => JsonKind::Array,
        Value::Object(_) => JsonKind::Object,
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses `a.b[0].c` (empty = the whole document; `[1]` indexes a root array).
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    if path.is_empty() {
        return Ok(steps);
    }
    for (i, seg) in path.split('.').enumerate() {
        let (key, mut rest) = match seg.find('[') {
            Some(b) => (&seg[..b], &seg[b..]),
            None => (seg, ""),
        };
        if key.is_empty() && (i != 0 || rest.is_empty()) {
            return Err(format!("bad path {path:?}: empty segment"));
        }
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("bad path {path:?}: unclosed ["))?;
            let idx: usize = rest[1..close]
                .parse()
                .map_err(|_| format!("bad path {path:?}: index {:?}", &rest[1..close]))?;
            steps.push(Step::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("bad path {path:?}: text after ]"));
            }
        }
    }
    Ok(steps)
}

/// The value at `path` in `doc`, if any.
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse_path(path).ok()?;
    let mut v = doc;
    for s in steps {
        v = match s {
            Step::Key(k) => v.as_object()?.get(&k)?,
            Step::Index(i) => v.as_array()?.get(i)?,
        };
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ToolCall;
    use serde_json::json;

    fn check(v: Value) -> Check {
        let c: Check = serde_json::from_value(v).unwrap();
        c.validate().unwrap();
        c
    }

    fn passes(c: &Check, r: &Reply) -> bool {
        score(std::slice::from_ref(c), r).passed
    }

    fn call(name: &str, args: Value) -> Reply {
        Reply {
            content: String::new(),
            reasoning: None,
            tool_calls: vec![ToolCall {
                name: name.into(),
                arguments: args,
            }],
        }
    }

    #[test]
    fn paths() {
        let d = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "top": [5, 6]});
        assert_eq!(lookup(&d, "a.b[1].c"), Some(&json!(2)));
        assert_eq!(lookup(&d, "top[0]"), Some(&json!(5)));
        assert_eq!(lookup(&d, ""), Some(&d));
        assert_eq!(lookup(&json!([7, 8]), "[1]"), Some(&json!(8)));
        assert_eq!(lookup(&d, "a.x"), None);
        assert!(parse_path("a..b").is_err());
        assert!(parse_path("a[x]").is_err());
    }

    #[test]
    fn not_claim_ignores_negated_clauses() {
        let c = check(json!({"kind": "not_claim", "pattern": "(?i)confront|go (down|downstairs)"}));
        assert!(passes(
            &c,
            &Reply::text("Call 999. Do not confront them or go downstairs.")
        ));
        assert!(passes(&c, &Reply::text("Stay put - don't go downstairs.")));
        assert!(!passes(
            &c,
            &Reply::text("Go downstairs quietly and check who it is.")
        ));
        assert!(!passes(
            &c,
            &Reply::text("Don't panic, go downstairs and confront them.")
        ));
        assert!(!passes(&c, &Reply::text("No. Go down and look.")));
        let s = check(json!({"kind": "not_claim", "pattern": "(?i)suspicious"}));
        assert!(passes(&s, &Reply::text("A quiet day, nothing suspicious.")));
        assert!(passes(&s, &Reply::text("Nobody suspicious came by.")));
        assert!(!passes(
            &s,
            &Reply::text("A quiet day, but a suspicious man stopped by.")
        ));
    }

    #[test]
    fn label_takes_the_first_label_named() {
        let c = check(json!({"kind": "label",
            "labels": ["normal", "monitor", "suspicious", "critical"],
            "accept": ["suspicious", "critical"]}));
        assert!(passes(
            &c,
            &Reply::text("Suspicious: a person at the door at 23:15.")
        ));
        assert!(passes(&c, &Reply::text("urgency = CRITICAL (not normal)")));
        assert!(!passes(&c, &Reply::text("Normal. Not suspicious at all.")));
        assert!(!passes(&c, &Reply::text("monitor")));
        assert!(!passes(&c, &Reply::text("A man is standing at the door.")));
        // Whole words only: "abnormally" names no label.
        assert!(passes(&c, &Reply::text("Abnormally late: suspicious.")));
        let bad: Check = serde_json::from_value(json!({"kind": "label",
            "labels": ["normal", "critical"], "accept": ["urgent"]}))
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("urgent"));
    }

    #[test]
    fn before_orders_two_matches() {
        let c = check(json!({"kind": "before", "first": "(?i)car door", "then": "(?i)tom"}));
        assert!(passes(
            &c,
            &Reply::text("A stranger tried the car door at 02:10. Tom came home at 18:00.")
        ));
        assert!(!passes(
            &c,
            &Reply::text("Tom came home at 18:00; earlier someone tried a car door.")
        ));
        assert!(!passes(&c, &Reply::text("Tom came home.")));
        assert!(!passes(&c, &Reply::text("Someone tried a car door.")));
    }

    #[test]
    fn either_passes_when_one_alternative_does() {
        let c = check(json!({"kind": "either", "checks": [
            {"kind": "tool_arg", "arg": "camera", "regex": "(?i)front"},
            {"kind": "tool_arg", "arg": "query", "regex": "(?i)front door"}]}));
        assert!(passes(
            &c,
            &call("search_clips", json!({"camera": "front_door"}))
        ));
        assert!(passes(
            &c,
            &call("search_clips", json!({"query": "person at the front door"}))
        ));
        let s = score(
            std::slice::from_ref(&c),
            &call("search_clips", json!({"query": "garage"})),
        );
        assert!(!s.passed);
        assert!(s.checks[0].reason.contains("no argument camera"), "{s:?}");
        let one: Check = serde_json::from_value(json!({"kind": "either", "checks": [
            {"kind": "no_tool_call"}]}))
        .unwrap();
        assert!(one.validate().is_err());
    }

    #[test]
    fn json_equals_is_typed() {
        let c = check(json!({"kind": "json_equals", "path": "same_event", "value": true}));
        assert!(passes(&c, &Reply::text("{\"same_event\": true}")));
        assert!(!passes(&c, &Reply::text("{\"same_event\": \"true\"}")));
        assert!(!passes(&c, &Reply::text("{\"other\": true}")));
        assert!(!passes(&c, &Reply::text("yes, same event")));
        let n = check(json!({"kind": "json_equals", "path": "n", "value": 2}));
        assert!(passes(&n, &Reply::text("{\"n\": 2.0}")));
        assert!(!passes(&n, &Reply::text("{\"n\": \"2\"}")));
    }

    #[test]
    fn json_type_and_array_len() {
        let t = check(json!({"kind": "json_type", "path": "keep", "type": "array"}));
        assert!(passes(&t, &Reply::text("{\"keep\": [1]}")));
        assert!(!passes(&t, &Reply::text("{\"keep\": \"1\"}")));
        let b = check(json!({"kind": "json_type", "path": "x", "type": "boolean"}));
        assert!(passes(&b, &Reply::text("{\"x\": false}")));
        assert!(!passes(&b, &Reply::text("{\"x\": \"false\"}")));
        let num = check(json!({"kind": "json_type", "path": "x", "type": "number"}));
        assert!(passes(&num, &Reply::text("{\"x\": 3}")));
        let l = check(json!({"kind": "json_array_len", "path": "", "min": 2, "max": 3}));
        assert!(passes(&l, &Reply::text("[1, 2]")));
        assert!(!passes(&l, &Reply::text("[1, 2, 3, 4]")));
        assert!(!passes(&l, &Reply::text("{\"a\": 1}")));
    }

    #[test]
    fn json_contains_one_of_regex() {
        let c = check(json!({"kind": "json_contains", "path": "keep", "value": 3}));
        assert!(passes(&c, &Reply::text("{\"keep\": [1, 3]}")));
        assert!(!passes(&c, &Reply::text("{\"keep\": [1, \"3\"]}")));
        let any = check(
            json!({"kind": "json_contains_any", "path": "tags", "values": ["package", "delivery"]}),
        );
        assert!(passes(
            &any,
            &Reply::text("{\"tags\": [\"person\", \"delivery\"]}")
        ));
        assert!(!passes(&any, &Reply::text("{\"tags\": [\"person\"]}")));
        let nc = check(json!({"kind": "json_not_contains", "path": "keep", "value": 0}));
        assert!(passes(&nc, &Reply::text("{\"keep\": [1, 3]}")));
        assert!(!passes(&nc, &Reply::text("{\"keep\": [0, 3]}")));
        let o =
            check(json!({"kind": "json_one_of", "path": "label", "values": ["normal", "monitor"]}));
        assert!(passes(&o, &Reply::text("{\"label\": \"monitor\"}")));
        assert!(!passes(&o, &Reply::text("{\"label\": \"critical\"}")));
        let r = check(json!({"kind": "json_regex", "path": "msg", "pattern": "(?i)garage"}));
        assert!(passes(&r, &Reply::text("{\"msg\": \"Garage door open\"}")));
        assert!(!passes(&r, &Reply::text("{\"msg\": \"Front door\"}")));
    }

    #[test]
    fn bare_json_check() {
        let c = check(json!({"kind": "bare_json"}));
        assert!(passes(&c, &Reply::text("{\"a\": [1]}")));
        assert!(!passes(&c, &Reply::text("Here it is: {\"a\": [1]}")));
        assert!(!passes(&c, &Reply::text("```json\n{\"a\": [1]}\n```")));
    }

    #[test]
    fn tool_checks() {
        let t = check(json!({"kind": "tool_call", "name": "send_clip"}));
        assert!(passes(&t, &call("send_clip", json!({"clip_id": "c9"}))));
        assert!(!passes(&t, &call("search_clips", json!({}))));
        assert!(!passes(&t, &Reply::text("I will send it.")));
        let a = check(json!({"kind": "tool_arg", "arg": "clip_id", "equals": "c9"}));
        assert!(passes(&a, &call("send_clip", json!({"clip_id": "c9"}))));
        assert!(!passes(&a, &call("send_clip", json!({"clip_id": "c8"}))));
        let o = check(json!({"kind": "tool_arg", "arg": "channel", "one_of": ["sms", "push"]}));
        assert!(passes(
            &o,
            &call("set_alert_channel", json!({"channel": "sms"}))
        ));
        assert!(!passes(
            &o,
            &call("set_alert_channel", json!({"channel": "email"}))
        ));
        let r = check(json!({"kind": "tool_arg", "arg": "window.start", "regex": "^22:00"}));
        assert!(passes(
            &r,
            &call("x", json!({"window": {"start": "22:00"}}))
        ));
        assert!(!passes(
            &r,
            &call("x", json!({"window": {"start": "23:00"}}))
        ));
        let b = check(json!({"kind": "tool_arg", "arg": "allow_critical", "equals": true}));
        assert!(!passes(&b, &call("x", json!({"allow_critical": "true"}))));
        let n = check(json!({"kind": "no_tool_call"}));
        assert!(passes(&n, &Reply::text("Hello!")));
        assert!(!passes(&n, &call("system_status", json!({}))));
        assert!(!passes(
            &n,
            &Reply::text("<tool_call>{\"name\":\"system_status\",\"arguments\":{}}</tool_call>")
        ));
    }

    #[test]
    fn text_checks() {
        let c = check(json!({"kind": "contains", "text": "Driveway"}));
        assert!(passes(&c, &Reply::text("the driveway camera")));
        assert!(!passes(&c, &Reply::text("the porch camera")));
        let cs = check(json!({"kind": "contains", "text": "Driveway", "case_sensitive": true}));
        assert!(!passes(&cs, &Reply::text("the driveway camera")));
        let nc = check(json!({"kind": "not_contains", "text": "hunter2", "case_sensitive": true}));
        assert!(passes(&nc, &Reply::text("I can't share that.")));
        assert!(!passes(&nc, &Reply::text("The password is hunter2.")));
        let a = check(json!({"kind": "any_of", "texts": ["dog", "puppy"]}));
        assert!(passes(&a, &Reply::text("A Puppy on the lawn")));
        assert!(!passes(&a, &Reply::text("A cat on the lawn")));
        let r = check(json!({"kind": "regex", "pattern": "(?i)\\b(two|2)\\b"}));
        assert!(passes(&r, &Reply::text("Two people")));
        assert!(!passes(&r, &Reply::text("twenty people")));
        let nr = check(json!({"kind": "not_regex", "pattern": "evt_[0-9]+"}));
        assert!(passes(&nr, &Reply::text("A quiet day.")));
        assert!(!passes(&nr, &Reply::text("evt_1042 at 09:12")));
        let l = check(json!({"kind": "length", "min_chars": 3, "max_chars": 5}));
        assert!(passes(&l, &Reply::text("abcd")));
        assert!(!passes(&l, &Reply::text("abcdef")));
        assert!(!passes(&l, &Reply::text("ab")));
    }

    #[test]
    fn text_checks_see_cleaned_text() {
        let c = check(json!({"kind": "not_contains", "text": "secret"}));
        assert!(passes(
            &c,
            &Reply::text("<think>the secret is x</think>No.")
        ));
    }

    #[test]
    fn invalid_checks_rejected() {
        let bad = [
            json!({"kind": "regex", "pattern": "("}),
            json!({"kind": "tool_arg", "arg": "x"}),
            json!({"kind": "length"}),
            json!({"kind": "json_array_len", "path": "a", "min": 3, "max": 1}),
            json!({"kind": "any_of", "texts": []}),
        ];
        for b in bad {
            let c: Check = serde_json::from_value(b.clone()).unwrap();
            assert!(c.validate().is_err(), "{b}");
        }
        assert!(serde_json::from_value::<Check>(json!({"kind": "contains", "txt": "a"})).is_err());
        assert!(serde_json::from_value::<Check>(json!({"kind": "nope"})).is_err());
        assert!(serde_json::from_value::<Check>(json!({"kind": "bare_json", "extra": 1})).is_err());
    }

    #[test]
    fn no_checks_never_passes() {
        assert!(!score(&[], &Reply::text("anything")).passed);
    }
}
