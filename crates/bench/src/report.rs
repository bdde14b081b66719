//! What a benchmark run keeps: per test the request shape, the whole reply,
//! every check's result and the failure's class; per run the totals; over
//! several seeds the mean and spread. All of it serializes to the `--json`
//! report and back, so the HTML report and the leaderboard read saved runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reply::{clean, Reply, ToolCall};
use crate::request::RequestShape;
use crate::score::{Check, CheckResult, Score};

/// How a test ended. A failure is `wrong` (a real answer, the wrong one),
/// `format` (the right content in the wrong form: JSON wrapped in prose, a
/// malformed tool call, a call written out as text), `degenerate` (empty,
/// cut off at the token budget, or looping) or `error` (the call failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Wrong,
    Format,
    Degenerate,
    Error,
}

impl Outcome {
    pub const FAILURES: [Outcome; 4] = [
        Outcome::Wrong,
        Outcome::Format,
        Outcome::Degenerate,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Wrong => "wrong",
            Outcome::Format => "format",
            Outcome::Degenerate => "degenerate",
            Outcome::Error => "error",
        }
    }
}

/// Why generation stopped, as the backend said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    Stop,
    /// Cut off at `max_tokens`.
    Length,
    ToolCalls,
}

/// The reply as the report keeps it: everything needed to audit a score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool calls the model attempted but wrote wrong, as it wrote them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed_calls: Vec<String>,
    pub finish: Finish,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

impl ReplyRecord {
    /// The reply as the scorer sees it.
    pub fn reply(&self) -> Reply {
        Reply {
            content: self.content.clone(),
            reasoning: self.reasoning.clone(),
            tool_calls: self.tool_calls.clone(),
        }
    }
}

/// One test of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    pub id: String,
    pub suite: String,
    #[serde(default)]
    pub title: String,
    /// The request as sent: sampling, budget, tools, timeout.
    pub request: RequestShape,
    /// The prompt's last user message (the question), for reading.
    #[serde(default)]
    pub question: String,
    /// The image the test showed, for image tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// `None` when the call failed (see `error`).
    pub reply: Option<ReplyRecord>,
    pub checks: Vec<CheckResult>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub ttft_ms: f64,
    pub decode_tok_s: f64,
}

impl TestRecord {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// Classifies a scored reply. `malformed_calls` are tool calls the backend
/// could not parse.
pub fn classify(checks: &[Check], reply: &ReplyRecord, score: &Score) -> Outcome {
    if score.passed {
        return Outcome::Passed;
    }
    let cleaned = clean(&reply.reply());
    if reply.finish == Finish::Length || is_looping(&cleaned.text) {
        return Outcome::Degenerate;
    }
    if !reply.malformed_calls.is_empty() && cleaned.tool_calls.is_empty() {
        return Outcome::Format;
    }
    if cleaned.text.trim().is_empty() && cleaned.tool_calls.is_empty() {
        return Outcome::Degenerate;
    }
    let only_form_failed = checks.iter().zip(&score.checks).all(|(check, result)| {
        result.passed || is_form_failure(check, result, &cleaned.text, cleaned.json.is_some())
    });
    if only_form_failed {
        Outcome::Format
    } else {
        Outcome::Wrong
    }
}

/// Whether a failed check failed on form alone: JSON that is wrapped, JSON
/// that does not parse, or an expected tool call written out as text.
fn is_form_failure(check: &Check, result: &CheckResult, text: &str, has_json: bool) -> bool {
    match check {
        Check::BareJson {} => has_json || text.contains('{'),
        Check::JsonEquals { .. }
        | Check::JsonType { .. }
        | Check::JsonArrayLen { .. }
        | Check::JsonContains { .. }
        | Check::JsonContainsAny { .. }
        | Check::JsonNotContains { .. }
        | Check::JsonOneOf { .. }
        | Check::JsonRegex { .. } => {
            !has_json && result.reason == "reply holds no JSON" && text.contains('{')
        }
        Check::ToolCall { name } => {
            result.reason.starts_with("no tool call") && text.contains(name)
        }
        _ => false,
    }
}

/// Whether a text repeats itself: some run of eight words occurs three or
/// more times, or a line of ten or more characters does.
pub fn is_looping(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut grams: BTreeMap<&[&str], usize> = BTreeMap::new();
    for w in words.windows(8) {
        let n = grams.entry(w).or_default();
        *n += 1;
        if *n >= 3 {
            return true;
        }
    }
    let mut lines: BTreeMap<&str, usize> = BTreeMap::new();
    for l in text
        .lines()
        .map(str::trim)
        .filter(|l| l.chars().count() >= 10)
    {
        let n = lines.entry(l).or_default();
        *n += 1;
        if *n >= 3 {
            return true;
        }
    }
    false
}

/// Passed and total of one suite in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteScore {
    pub suite: String,
    pub passed: usize,
    pub total: usize,
}

/// One run: one model, one backend, one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The model's name (`qwen2.5-coder-0.5b`) or file.
    pub model: String,
    /// How it was reached, e.g. "qwen2.5-coder-0.5b (in-process, 2 threads)".
    pub backend: String,
    /// The machine, e.g. "x86_64, 2 cores".
    #[serde(default)]
    pub machine: String,
    /// When the run started, UTC, RFC 3339.
    #[serde(default)]
    pub date: String,
    pub seed: u32,
    pub passed: usize,
    pub total: usize,
    pub ttft_avg_ms: f64,
    pub ttft_p95_ms: f64,
    pub decode_tok_s_avg: f64,
    pub completion_tokens: usize,
    pub rss_peak_mib: f64,
    pub wall_s: f64,
    pub suites: Vec<SuiteScore>,
    /// Failures per class (`wrong`, `format`, `degenerate`, `error`).
    pub failures: BTreeMap<String, usize>,
    pub tests: Vec<TestRecord>,
}

/// Context of a run that the records do not carry.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub model: String,
    pub backend: String,
    pub machine: String,
    pub date: String,
    pub seed: u32,
    pub rss_peak_mib: f64,
    pub wall_s: f64,
}

impl RunReport {
    /// Totals a run's records.
    pub fn new(info: RunInfo, tests: Vec<TestRecord>) -> Self {
        let mut suites: Vec<SuiteScore> = Vec::new();
        for t in &tests {
            match suites.iter_mut().find(|s| s.suite == t.suite) {
                Some(s) => {
                    s.total += 1;
                    s.passed += t.passed() as usize;
                }
                None => suites.push(SuiteScore {
                    suite: t.suite.clone(),
                    passed: t.passed() as usize,
                    total: 1,
                }),
            }
        }
        let mut failures: BTreeMap<String, usize> = Outcome::FAILURES
            .iter()
            .map(|o| (o.name().to_string(), 0))
            .collect();
        for t in tests.iter().filter(|t| !t.passed()) {
            *failures.entry(t.outcome.name().to_string()).or_default() += 1;
        }
        let answered: Vec<&TestRecord> = tests.iter().filter(|t| t.reply.is_some()).collect();
        let mut ttfts: Vec<f64> = answered.iter().map(|t| t.ttft_ms).collect();
        ttfts.sort_by(f64::total_cmp);
        let decode: Vec<f64> = answered
            .iter()
            .map(|t| t.decode_tok_s)
            .filter(|v| *v > 0.0)
            .collect();
        RunReport {
            model: info.model,
            backend: info.backend,
            machine: info.machine,
            date: info.date,
            seed: info.seed,
            passed: tests.iter().filter(|t| t.passed()).count(),
            total: tests.len(),
            ttft_avg_ms: Spread::of(&ttfts).mean,
            ttft_p95_ms: percentile(&ttfts, 0.95),
            decode_tok_s_avg: Spread::of(&decode).mean,
            completion_tokens: answered
                .iter()
                .filter_map(|t| t.reply.as_ref())
                .map(|r| r.completion_tokens)
                .sum(),
            rss_peak_mib: info.rss_peak_mib,
            wall_s: info.wall_s,
            suites,
            failures,
            tests,
        }
    }

    pub fn pass_rate(&self) -> f64 {
        self.passed as f64 / self.total.max(1) as f64
    }
}

/// The value below which `q` of the sorted values lie (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        if n == 0 {
            return Spread { mean: 0.0, sd: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Spread { mean, sd }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} ± {:.1}", self.mean, self.sd)
    }
}

/// A suite's passed count over the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteSpread {
    pub suite: String,
    pub total: usize,
    pub passed: Spread,
}

/// Several runs of one model and backend that differ only in seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesReport {
    pub model: String,
    pub backend: String,
    pub machine: String,
    pub date: String,
    pub seeds: Vec<u32>,
    pub total: usize,
    /// Tests passed per run.
    pub passed: Spread,
    pub suites: Vec<SuiteSpread>,
    /// Failures per class, per run.
    pub failures: BTreeMap<String, Spread>,
    pub ttft_avg_ms: Spread,
    pub decode_tok_s_avg: Spread,
    pub rss_peak_mib: f64,
    /// All runs together.
    pub wall_s: f64,
    pub runs: Vec<RunReport>,
}

impl SeriesReport {
    /// Summarises runs (at least one) of the same tests.
    pub fn new(runs: Vec<RunReport>) -> Self {
        let first = runs.first().expect("a series holds at least one run");
        let per_run =
            |f: &dyn Fn(&RunReport) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
        let suites = first
            .suites
            .iter()
            .map(|s| SuiteSpread {
                suite: s.suite.clone(),
                total: s.total,
                passed: per_run(&|r| {
                    r.suites
                        .iter()
                        .find(|x| x.suite == s.suite)
                        .map_or(0.0, |x| x.passed as f64)
                }),
            })
            .collect();
        let failures = Outcome::FAILURES
            .iter()
            .map(|o| {
                let name = o.name();
                (
                    name.to_string(),
                    per_run(&|r| r.failures.get(name).copied().unwrap_or(0) as f64),
                )
            })
            .collect();
        SeriesReport {
            model: first.model.clone(),
            backend: first.backend.clone(),
            machine: first.machine.clone(),
            date: first.date.clone(),
            seeds: runs.iter().map(|r| r.seed).collect(),
            total: first.total,
            passed: per_run(&|r| r.passed as f64),
            suites,
            failures,
            ttft_avg_ms: per_run(&|r| r.ttft_avg_ms),
            decode_tok_s_avg: per_run(&|r| r.decode_tok_s_avg),
            rss_peak_mib: runs.iter().map(|r| r.rss_peak_mib).fold(0.0, f64::max),
            wall_s: runs.iter().map(|r| r.wall_s).sum(),
            runs,
        }
    }

    /// Every failed test of every run, with the seed it failed under.
    pub fn failures(&self) -> impl Iterator<Item = (u32, &TestRecord)> {
        self.runs
            .iter()
            .flat_map(|r| r.tests.iter().filter(|t| !t.passed()).map(|t| (r.seed, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::score;
    use serde_json::json;

    fn record(content: &str, finish: Finish, malformed: &[&str]) -> ReplyRecord {
        ReplyRecord {
            content: content.into(),
            reasoning: None,
            tool_calls: Vec::new(),
            malformed_calls: malformed.iter().map(|s| s.to_string()).collect(),
            finish,
            prompt_tokens: 10,
            completion_tokens: 5,
        }
    }

    fn outcome(checks: serde_json::Value, r: &ReplyRecord) -> Outcome {
        let checks: Vec<Check> = serde_json::from_value(checks).unwrap();
        let s = score(&checks, &r.reply());
        classify(&checks, r, &s)
    }

    #[test]
    fn failures_fall_into_classes() {
        let label = json!([{"kind": "json_equals", "path": "label", "value": "critical"},
                           {"kind": "bare_json"}]);
        let right = record("{\"label\": \"critical\"}", Finish::Stop, &[]);
        assert_eq!(outcome(label.clone(), &right), Outcome::Passed);
        let wrong = record("{\"label\": \"normal\"}", Finish::Stop, &[]);
        assert_eq!(outcome(label.clone(), &wrong), Outcome::Wrong);
        let wrapped = record("Here you go: {\"label\": \"critical\"}", Finish::Stop, &[]);
        assert_eq!(outcome(label.clone(), &wrapped), Outcome::Format);
        let broken = record("{label: critical", Finish::Stop, &[]);
        assert_eq!(outcome(label.clone(), &broken), Outcome::Format);
        let empty = record("  ", Finish::Stop, &[]);
        assert_eq!(outcome(label.clone(), &empty), Outcome::Degenerate);
        let cut = record("{\"label\": \"crit", Finish::Length, &[]);
        assert_eq!(outcome(label, &cut), Outcome::Degenerate);

        let call = json!([{"kind": "tool_call", "name": "send_clip"}]);
        let malformed = record("", Finish::Stop, &["{\"name\": send_clip"]);
        assert_eq!(outcome(call.clone(), &malformed), Outcome::Format);
        let prose = record(
            "I would call send_clip with the clip id.",
            Finish::Stop,
            &[],
        );
        assert_eq!(outcome(call.clone(), &prose), Outcome::Format);
        let answer = record("Sure, the clip is on its way.", Finish::Stop, &[]);
        assert_eq!(outcome(call, &answer), Outcome::Wrong);
    }

    #[test]
    fn loops_are_found() {
        let looped = "The person is at the door and the person is at the door. ".repeat(4);
        assert!(is_looping(&looped));
        assert!(is_looping("alert\nA person walks by the gate.\nA person walks by the gate.\nA person walks by the gate."));
        assert!(!is_looping(
            "A courier left a parcel at 11:20. Tom came home at 18:05. Lily got home at 15:32."
        ));
    }

    fn test(id: &str, suite: &str, outcome: Outcome) -> TestRecord {
        TestRecord {
            id: id.into(),
            suite: suite.into(),
            title: String::new(),
            request: RequestShape::for_suite(suite),
            question: String::new(),
            image: None,
            reply: Some(record("x", Finish::Stop, &[])),
            checks: Vec::new(),
            outcome,
            error: None,
            ttft_ms: 100.0,
            decode_tok_s: 40.0,
        }
    }

    #[test]
    fn series_gives_mean_and_spread() {
        let run = |seed, outcomes: [Outcome; 3]| {
            RunReport::new(
                RunInfo {
                    model: "m".into(),
                    seed,
                    ..RunInfo::default()
                },
                vec![
                    test("a-1", "A", outcomes[0]),
                    test("a-2", "A", outcomes[1]),
                    test("b-1", "B", outcomes[2]),
                ],
            )
        };
        use Outcome::*;
        let s = SeriesReport::new(vec![
            run(1, [Passed, Passed, Wrong]),
            run(2, [Passed, Format, Passed]),
            run(3, [Passed, Degenerate, Wrong]),
        ]);
        assert_eq!(s.seeds, vec![1, 2, 3]);
        assert!((s.passed.mean - 5.0 / 3.0).abs() < 1e-9);
        assert!(
            (s.passed.sd - (1.0f64 / 3.0).sqrt()).abs() < 1e-9,
            "{:?}",
            s.passed
        );
        assert_eq!(s.suites[0].suite, "A");
        assert!((s.suites[0].passed.mean - 4.0 / 3.0).abs() < 1e-9);
        assert!((s.failures["wrong"].mean - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.failures().count(), 4);
        let back: SeriesReport = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
