//! The benchmark's HTML report: one self-contained page (inline CSS, no
//! script, nothing fetched) with the score and its spread, a bar per suite,
//! speed and memory, the failure classes, every failed test with its reply
//! folded into a `<details>` element, and a leaderboard of saved runs.

use std::fmt::Write;

use crate::report::{Outcome, SeriesReport, TestRecord};

/// One row of the leaderboard: a saved series, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardRow {
    pub model: String,
    pub backend: String,
    pub machine: String,
    pub date: String,
    pub runs: usize,
    pub total: usize,
    pub passed_mean: f64,
    pub passed_sd: f64,
    pub wall_s: f64,
}

impl From<&SeriesReport> for BoardRow {
    fn from(s: &SeriesReport) -> Self {
        BoardRow {
            model: s.model.clone(),
            backend: s.backend.clone(),
            machine: s.machine.clone(),
            date: s.date.clone(),
            runs: s.runs.len(),
            total: s.total,
            passed_mean: s.passed.mean,
            passed_sd: s.passed.sd,
            wall_s: s.wall_s,
        }
    }
}

/// The leaderboard: every series saved as JSON in `dir`, best share of
/// tests passed first, and the files that did not parse with the reason.
pub fn board_from_dir(dir: &std::path::Path) -> (Vec<BoardRow>, Vec<String>) {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for f in files {
        let parsed = std::fs::read(&f)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<SeriesReport>(&b).map_err(|e| e.to_string()));
        match parsed {
            Ok(s) => rows.push(BoardRow::from(&s)),
            Err(e) => skipped.push(format!("{}: {e}", f.display())),
        }
    }
    sort_board(&mut rows);
    (rows, skipped)
}

/// Sorts leaderboard rows, best share of tests passed first.
pub fn sort_board(rows: &mut [BoardRow]) {
    let share = |r: &BoardRow| r.passed_mean / r.total.max(1) as f64;
    rows.sort_by(|a, b| share(b).total_cmp(&share(a)));
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:64rem;padding:0 1rem;color:#1d232a;background:#fbfbfa}
h1{font-size:1.5rem;margin:0 0 .2rem}h2{font-size:1.15rem;margin:2rem 0 .6rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.sub{color:#5b6470;margin:0 0 1.2rem}
.score{display:flex;gap:2.5rem;flex-wrap:wrap;margin:1rem 0}
.big{font-size:2.6rem;font-weight:650;line-height:1}.big small{font-size:1rem;font-weight:400;color:#5b6470}
.kv{color:#5b6470}.kv b{color:#1d232a;font-weight:600}
table{border-collapse:collapse;width:100%}td,th{padding:.3rem .5rem;text-align:left;border-bottom:1px solid #e6e6e3;vertical-align:top}
th{font-weight:600;color:#3b434c;font-size:.9rem}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.bar{background:#e9ecef;border-radius:3px;height:.9rem;min-width:10rem;position:relative}
.bar span{display:block;height:100%;border-radius:3px;background:#2f7d5b}
.bar i{position:absolute;top:-.15rem;height:1.2rem;border-left:2px solid #1d232a;opacity:.55}
.tag{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:.8rem;font-weight:600}
.wrong{background:#fde2e1;color:#8a1c14}.format{background:#fff1c2;color:#6b4d00}.degenerate{background:#e7e1fb;color:#3f2a8a}.error{background:#e3e6ea;color:#333}
details{border:1px solid #e1e1de;border-radius:5px;margin:.35rem 0;background:#fff}
summary{cursor:pointer;padding:.4rem .6rem}summary code{font-weight:600}
.body{padding:.2rem .8rem .8rem}pre{white-space:pre-wrap;word-break:break-word;background:#f4f4f2;padding:.5rem;border-radius:4px;margin:.3rem 0;font-size:.85rem}
ul.checks{margin:.3rem 0;padding-left:1.1rem}li.ok{color:#2f7d5b}li.no{color:#8a1c14}
footer{margin-top:2.5rem;color:#8a929b;font-size:.8rem}
";

/// Renders the report of `series`, with `board` (saved series, best first)
/// as the leaderboard.
pub fn render(series: &SeriesReport, board: &[BoardRow]) -> String {
    let mut h = String::new();
    let pct = |x: f64| 100.0 * x / series.total.max(1) as f64;
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>streamer bench: {model}</title><style>{STYLE}</style></head><body>\
         <h1>streamer bench: {model}</h1><p class=\"sub\">{backend} · {machine} · {date} · seeds {seeds}</p>",
        model = escape(&series.model),
        backend = escape(&series.backend),
        machine = escape(&series.machine),
        date = escape(&series.date),
        seeds = escape(
            &series
                .seeds
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let _ = write!(
        h,
        "<div class=\"score\"><div><div class=\"big\" id=\"score\">{:.1}<small> ± {:.1} of {}</small></div>\
         <div class=\"kv\">{:.1} % passed, over {} run(s)</div></div>\
         <div class=\"kv\">TTFT <b>{:.0} ms</b> avg<br>decode <b>{:.1} tok/s</b><br>peak RSS <b>{:.0} MiB</b><br>time <b>{:.0} s</b></div>\
         <div class=\"kv\">failures per run:<br>{}</div></div>",
        series.passed.mean,
        series.passed.sd,
        series.total,
        pct(series.passed.mean),
        series.runs.len(),
        series.ttft_avg_ms.mean,
        series.decode_tok_s_avg.mean,
        series.rss_peak_mib,
        series.wall_s,
        Outcome::FAILURES
            .iter()
            .map(|o| {
                let s = series.failures.get(o.name()).copied().unwrap_or(crate::report::Spread {
                    mean: 0.0,
                    sd: 0.0,
                });
                format!(
                    "<span class=\"tag {n}\">{n}</span> <b>{:.1}</b> ± {:.1}",
                    s.mean,
                    s.sd,
                    n = o.name()
                )
            })
            .collect::<Vec<_>>()
            .join("<br>")
    );

    h.push_str("<h2>Suites</h2><table id=\"suites\"><tr><th>suite</th><th class=\"n\">passed</th><th>share (bar: mean, mark: each run)</th></tr>");
    for s in &series.suites {
        let share = 100.0 * s.passed.mean / s.total.max(1) as f64;
        let marks: String = series
            .runs
            .iter()
            .filter_map(|r| r.suites.iter().find(|x| x.suite == s.suite))
            .map(|x| {
                format!(
                    "<i style=\"left:{:.1}%\"></i>",
                    100.0 * x.passed as f64 / x.total.max(1) as f64
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{:.1} ± {:.1} / {}</td><td><div class=\"bar\"><span style=\"width:{share:.1}%\"></span>{marks}</div></td></tr>",
            escape(&s.suite),
            s.passed.mean,
            s.passed.sd,
            s.total
        );
    }
    h.push_str("</table>");

    let failures: Vec<(u32, &TestRecord)> = series.failures().collect();
    let _ = write!(
        h,
        "<h2>Failures ({} over {} run(s); click one to read the reply)</h2><div id=\"failures\">",
        failures.len(),
        series.runs.len()
    );
    for (seed, t) in failures {
        failure(&mut h, seed, t);
    }
    h.push_str("</div>");

    h.push_str("<h2>Leaderboard</h2><table id=\"leaderboard\"><tr><th>model</th><th>backend</th><th>machine</th><th>date</th><th class=\"n\">runs</th><th class=\"n\">score</th><th class=\"n\">time</th></tr>");
    for r in board {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{:.1} ± {:.1} / {}</td><td class=\"n\">{:.0} s</td></tr>",
            escape(&r.model),
            escape(&r.backend),
            escape(&r.machine),
            escape(&r.date),
            r.runs,
            r.passed_mean,
            r.passed_sd,
            r.total,
            r.wall_s
        );
    }
    h.push_str("</table><footer>Written by <code>streamer bench</code>. Scores are deterministic checks on the replies shown; the data is in <code>fixtures/bench</code>.</footer></body></html>\n");
    h
}

fn failure(h: &mut String, seed: u32, t: &TestRecord) {
    let first = t
        .checks
        .iter()
        .find(|c| !c.passed)
        .map(|c| c.reason.clone())
        .or_else(|| t.error.clone())
        .unwrap_or_default();
    let _ = write!(
        h,
        "<details><summary><span class=\"tag {o}\">{o}</span> <code>{id}</code> {title} <span class=\"kv\">(seed {seed}): {first}</span></summary><div class=\"body\">",
        o = t.outcome.name(),
        id = escape(&t.id),
        title = escape(&t.title),
        first = escape(&first),
    );
    if !t.question.is_empty() {
        let _ = write!(
            h,
            "<div class=\"kv\">asked</div><pre>{}</pre>",
            escape(&t.question)
        );
    }
    if let Some(image) = &t.image {
        let _ = write!(h, "<div class=\"kv\">image: {}</div>", escape(image));
    }
    match &t.reply {
        Some(r) => {
            let _ = write!(
                h,
                "<div class=\"kv\">reply ({:?}, {} prompt + {} completion tokens, budget {})</div><pre>{}</pre>",
                r.finish,
                r.prompt_tokens,
                r.completion_tokens,
                t.request.max_tokens,
                escape(if r.content.is_empty() { "(no content)" } else { &r.content })
            );
            if let Some(reasoning) = &r.reasoning {
                let _ = write!(
                    h,
                    "<div class=\"kv\">reasoning</div><pre>{}</pre>",
                    escape(reasoning)
                );
            }
            for c in &r.tool_calls {
                let _ = write!(
                    h,
                    "<div class=\"kv\">tool call</div><pre>{}({})</pre>",
                    escape(&c.name),
                    escape(&c.arguments.to_string())
                );
            }
            for m in &r.malformed_calls {
                let _ = write!(
                    h,
                    "<div class=\"kv\">malformed call</div><pre>{}</pre>",
                    escape(m)
                );
            }
        }
        None => {
            let _ = write!(
                h,
                "<div class=\"kv\">no reply: {}</div>",
                escape(t.error.as_deref().unwrap_or("?"))
            );
        }
    }
    h.push_str("<ul class=\"checks\">");
    for c in &t.checks {
        let _ = write!(
            h,
            "<li class=\"{}\">{} — {}</li>",
            if c.passed { "ok" } else { "no" },
            escape(&c.check),
            escape(&c.reason)
        );
    }
    h.push_str("</ul></div></details>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Finish, ReplyRecord, RunInfo, RunReport};
    use crate::request::RequestShape;
    use crate::score::CheckResult;

    #[test]
    fn page_is_self_contained_and_escapes_replies() {
        let t = TestRecord {
            id: "chat-07".into(),
            suite: "Chat".into(),
            title: "Break-in <now>".into(),
            request: RequestShape::for_suite("Chat"),
            question: "Someone is at the door".into(),
            image: None,
            reply: Some(ReplyRecord {
                content: "<script>alert(1)</script> go downstairs".into(),
                reasoning: None,
                tool_calls: Vec::new(),
                malformed_calls: Vec::new(),
                finish: Finish::Stop,
                prompt_tokens: 40,
                completion_tokens: 9,
            }),
            checks: vec![CheckResult {
                check: "not_claim(/go downstairs/)".into(),
                passed: false,
                reason: "text asserts \"go downstairs\"".into(),
            }],
            outcome: Outcome::Wrong,
            error: None,
            ttft_ms: 120.0,
            decode_tok_s: 40.0,
        };
        let run = RunReport::new(
            RunInfo {
                model: "qwen".into(),
                seed: 1,
                ..RunInfo::default()
            },
            vec![t],
        );
        let series = SeriesReport::new(vec![run]);
        let page = render(&series, &[BoardRow::from(&series)]);
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(page.contains("<details>") && page.contains("chat-07"));
        assert!(page.contains("id=\"leaderboard\""));
    }
}
