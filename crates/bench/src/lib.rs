//! `streamer-bench`: the model-free half of `streamer replay --bench`.
//!
//! It holds the test data model and loader ([`suite`]), the cleaning of model
//! replies ([`reply`]), the deterministic scorer ([`score`]), the request
//! shape each suite is sent with plus the tool definitions ([`request`]), and
//! the generator of challenging-condition image variants ([`vlm_images`])
//! and of security scenes with known truth ([`scenes`]),
//! what a run keeps and how failures are classed ([`report`]), and the HTML
//! report ([`html`]). Nothing here loads or runs a model.

pub mod html;
pub mod reply;
pub mod report;
pub mod request;
pub mod scenes;
pub mod score;
pub mod suite;
pub mod vlm_images;

pub use html::{board_from_dir, render as render_html, sort_board, BoardRow};
pub use reply::{clean, extract_json, strip_think, Cleaned, Reply, ToolCall};
pub use report::{
    classify, is_looping, percentile, Finish, Outcome, ReplyRecord, RunInfo, RunReport,
    SeriesReport, Spread, SuiteScore, SuiteSpread, TestRecord,
};
pub use request::{
    routing_tools, security_tools, token_budget, tools_for, RequestShape, ShapeOverride,
    ROUTING_TOOL_NAMES, SECURITY_TOOL_NAMES,
};
pub use scenes::{compose as compose_scene, cut_out, Cutout, Light, Scene};
pub use score::{json_eq, lookup, score, score_cleaned, Check, CheckResult, JsonKind, Score};
pub use suite::{
    check_expected_suites, load_llm, load_suite, load_vlm, load_vlm_catalogue, BenchError,
    ImageRef, ImageSource, LlmTest, Message, References, Role, Suite, VlmTest,
    EXPECTED_SCENE_TESTS, EXPECTED_SUITES, EXPECTED_VLM_TESTS,
};
pub use vlm_images::{apply, UnknownVariant, Variant};

/// The directory holding the committed benchmark data (`fixtures/bench`):
/// `$STREAMER_BENCH_FIXTURES` when set, else the checkout this binary was
/// built from, else `fixtures/bench` under the working directory (a binary
/// copied elsewhere and run from a checkout).
pub fn fixtures_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("STREAMER_BENCH_FIXTURES") {
        return dir.into();
    }
    let built_from =
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/bench"));
    if built_from.is_dir() {
        return built_from;
    }
    std::path::PathBuf::from("fixtures/bench")
}
