//! The benchmark's HTML report renders in a real browser: headless Chromium
//! (Debian's `chromium`, installed by scripts/install-system-deps.sh) loads
//! the page from disk, its DOM holds the score, the suites, the folded-in
//! failures and the leaderboard, and it takes a screenshot of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use streamer_bench::{
    render_html, BoardRow, CheckResult, Finish, Outcome, ReplyRecord, RequestShape, RunInfo,
    RunReport, SeriesReport, TestRecord,
};

fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn record(id: &str, outcome: Outcome, content: &str) -> TestRecord {
    TestRecord {
        id: id.into(),
        suite: "Chat & JSON Compliance".into(),
        title: format!("test {id}"),
        request: RequestShape::for_suite("Chat & JSON Compliance"),
        question: "Someone is forcing the back door".into(),
        image: None,
        reply: Some(ReplyRecord {
            content: content.into(),
            reasoning: None,
            tool_calls: Vec::new(),
            malformed_calls: Vec::new(),
            finish: Finish::Stop,
            prompt_tokens: 60,
            completion_tokens: 20,
        }),
        checks: vec![CheckResult {
            check: "regex(/police/)".into(),
            passed: outcome == Outcome::Passed,
            reason: "text lacks police".into(),
        }],
        outcome,
        error: None,
        ttft_ms: 150.0,
        decode_tok_s: 40.0,
    }
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: scripts/install-system-deps.sh installs it"
        );
        eprintln!("chromium not installed: skipped (CI fails here)");
        return;
    };
    let runs = (1..=2)
        .map(|seed| {
            RunReport::new(
                RunInfo {
                    model: "qwen2.5-coder-0.5b".into(),
                    backend: "in-process".into(),
                    seed,
                    ..RunInfo::default()
                },
                vec![
                    record("chat-01", Outcome::Passed, "I'm Hearth."),
                    record(
                        "chat-07",
                        if seed == 1 {
                            Outcome::Wrong
                        } else {
                            Outcome::Passed
                        },
                        "Go downstairs <quietly> & check who it is.",
                    ),
                ],
            )
        })
        .collect();
    let series = SeriesReport::new(runs);
    let dir = std::env::temp_dir().join(format!("streamer-html-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("report.html");
    std::fs::write(&page, render_html(&series, &[BoardRow::from(&series)])).unwrap();
    let url = format!("file://{}", page.display());

    let dom = headless(&browser, &dir.join("profile-dom"))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "id=\"score\"",
        "Chat &amp; JSON Compliance",
        "<details>",
        "Go downstairs &lt;quietly&gt; &amp; check who it is.",
        "id=\"leaderboard\"",
    ] {
        assert!(dom.contains(needle), "rendered DOM lacks {needle}:\n{dom}");
    }
    assert!(dom.contains("1.5"), "mean score 1.5 not shown:\n{dom}");

    let shot = dir.join("report.png");
    let status = headless(&browser, &dir.join("profile-shot"))
        .arg("--window-size=1280,1600")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .expect("run chromium");
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
