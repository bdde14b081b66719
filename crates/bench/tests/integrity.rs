//! Integrity of the committed benchmark data: the suites and counts are
//! exactly those of the issue, every test has an assertion, and every test
//! is proven able to pass (its passing reference passes) and able to fail
//! (its failing reference fails).

use std::collections::{BTreeMap, HashSet};

use streamer_bench::{
    check_expected_suites, fixtures_dir, load_llm, load_vlm, load_vlm_catalogue, Check,
    ImageSource, References, Score, Variant, EXPECTED_SCENE_TESTS, EXPECTED_VLM_TESTS,
    SECURITY_TOOL_NAMES,
};

fn describe(s: &Score) -> String {
    s.checks
        .iter()
        .map(|c| {
            format!(
                "    [{}] {}: {}",
                if c.passed { "ok" } else { "FAIL" },
                c.check,
                c.reason
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Scores every reference; returns a problem description for each that
/// goes the wrong way.
fn check_references(id: &str, checks: &[Check], r: &References) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, reply) in r.passing().enumerate() {
        let p = streamer_bench::score(checks, reply);
        if !p.passed {
            problems.push(format!(
                "{id}: passing reference #{i} FAILS\n{}",
                describe(&p)
            ));
        }
    }
    for (i, reply) in r.failing().enumerate() {
        // A failing reference is a realistic wrong answer, never an empty one.
        let cleaned = streamer_bench::clean(reply);
        if cleaned.text.chars().count() < 2 && cleaned.tool_calls.is_empty() {
            problems.push(format!("{id}: failing reference #{i} is empty"));
        }
        let f = streamer_bench::score(checks, reply);
        if f.passed {
            problems.push(format!(
                "{id}: failing reference #{i} PASSES\n{}",
                describe(&f)
            ));
        }
    }
    problems
}

fn assert_no_problems(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn llm_suites_have_the_expected_names_and_counts() {
    let suites = load_llm(&fixtures_dir().join("llm")).expect("load LLM suites");
    check_expected_suites(&suites).unwrap();
    let total: usize = suites.iter().map(|s| s.tests.len()).sum();
    assert_eq!(total, 96);
}

#[test]
fn llm_references_pass_and_fail() {
    let suites = load_llm(&fixtures_dir().join("llm")).expect("load LLM suites");
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    for s in &suites {
        for t in &s.tests {
            assert!(ids.insert(t.id.clone()), "duplicate id {}", t.id);
            assert!(!t.checks.is_empty(), "{} has no checks", t.id);
            problems.extend(check_references(&t.id, &t.checks, &t.reference));
        }
    }
    assert_no_problems(&problems);
}

#[test]
fn tool_use_covers_every_tool_and_no_tool() {
    let suites = load_llm(&fixtures_dir().join("llm")).unwrap();
    let tool_use = suites.iter().find(|s| s.name == "Tool Use").unwrap();
    let mut expected: BTreeMap<&str, usize> = SECURITY_TOOL_NAMES.iter().map(|n| (*n, 0)).collect();
    let mut no_tool = 0;
    for t in &tool_use.tests {
        assert!(t.tools, "{} must offer tools", t.id);
        for c in &t.checks {
            match c {
                Check::ToolCall { name } => {
                    *expected
                        .get_mut(name.as_str())
                        .unwrap_or_else(|| panic!("{}: unknown tool {name}", t.id)) += 1;
                }
                Check::NoToolCall {} => no_tool += 1,
                _ => {}
            }
        }
    }
    for (name, n) in &expected {
        assert!(*n >= 1, "no Tool Use test expects {name}");
    }
    assert!(no_tool >= 1, "no Tool Use test expects no tool call");
}

#[test]
fn tool_checks_name_offered_tools() {
    let suites = load_llm(&fixtures_dir().join("llm")).unwrap();
    for s in &suites {
        let offered: HashSet<String> = streamer_bench::tools_for(&s.name)
            .iter()
            .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
            .collect();
        for t in &s.tests {
            for c in &t.checks {
                if let Check::ToolCall { name } = c {
                    assert!(t.tools, "{} checks a tool call but offers no tools", t.id);
                    assert!(
                        offered.contains(name),
                        "{}: {name} is not offered to {}",
                        t.id,
                        s.name
                    );
                }
            }
        }
    }
}

#[test]
fn vlm_tests_are_complete_and_references_go_both_ways() {
    let dir = fixtures_dir().join("vlm");
    let tests = load_vlm(&dir.join("tests.json")).expect("load VLM tests");
    let catalogue = load_vlm_catalogue(&dir.join("images.json")).expect("load image catalogue");
    assert_eq!(tests.len(), EXPECTED_VLM_TESTS);
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut per_variant: BTreeMap<&str, usize> =
        Variant::ALL.iter().map(|v| (v.name(), 0)).collect();
    for t in &tests {
        assert!(ids.insert(t.id.clone()), "duplicate id {}", t.id);
        assert!(!t.checks.is_empty(), "{} has no checks", t.id);
        assert!(
            catalogue.contains_key(&t.image.source),
            "{}: image source {} is not in the catalogue",
            t.id,
            t.image.source
        );
        if let Some(v) = t.image.variant {
            *per_variant.get_mut(v.name()).unwrap() += 1;
        }
        problems.extend(check_references(&t.id, &t.checks, &t.reference));
    }
    assert_no_problems(&problems);
    for (v, n) in per_variant {
        assert!(
            n >= 2,
            "variant {v} is used by {n} test(s), want at least 2"
        );
    }
}

#[test]
fn catalogue_sources_are_well_formed_and_all_used() {
    let dir = fixtures_dir().join("vlm");
    let catalogue = load_vlm_catalogue(&dir.join("images.json")).unwrap();
    let mut tests = load_vlm(&dir.join("tests.json")).unwrap();
    tests.extend(load_vlm(&dir.join("scenes.json")).unwrap());
    let mut used: HashSet<&str> = tests.iter().map(|t| t.image.source.as_str()).collect();
    // A scene's photo counts as used.
    for src in catalogue.values() {
        if let ImageSource::Scene { scene, .. } = src {
            used.insert(scene.background.as_str());
        }
    }
    for (id, src) in &catalogue {
        assert!(
            used.contains(id.as_str()),
            "catalogue image {id} is used by no test"
        );
        match src {
            ImageSource::Package {
                package,
                member,
                licence,
                ..
            } => {
                assert!(
                    package.starts_with("debian:") || package.starts_with("pypi:"),
                    "{id}: package {package} must be debian:NAME or pypi:NAME==VERSION"
                );
                assert!(!member.is_empty() && !licence.is_empty(), "{id}");
            }
            ImageSource::Footage {
                footage,
                time_s,
                licence,
                ..
            } => {
                assert_eq!(footage, "vtest", "{id}: unknown footage");
                assert!(*time_s >= 0.0 && *time_s < 100.0, "{id}: time {time_s}");
                assert!(!licence.is_empty(), "{id}");
            }
            ImageSource::Scene { scene, licence, .. } => {
                assert!(!licence.is_empty(), "{id}");
                for p in &scene.people {
                    assert!(p.time_s >= 0.0 && p.time_s < 100.0, "{id}: vtest time");
                    assert!(p.bbox[2] <= 768 && p.bbox[3] <= 576, "{id}: box off vtest");
                }
            }
        }
    }
}

#[test]
fn scene_tests_judge_security_and_cannot_be_gamed_by_a_constant_label() {
    let dir = fixtures_dir().join("vlm");
    let tests = load_vlm(&dir.join("scenes.json")).expect("load scene tests");
    let catalogue = load_vlm_catalogue(&dir.join("images.json")).unwrap();
    assert_eq!(tests.len(), EXPECTED_SCENE_TESTS);
    let mut problems = Vec::new();
    let (mut high, mut low) = (0, 0);
    for t in &tests {
        assert!(
            matches!(
                catalogue.get(&t.image.source),
                Some(ImageSource::Scene { .. })
            ),
            "{}: {} is not a composed scene",
            t.id,
            t.image.source
        );
        for c in &t.checks {
            if let Check::Label { accept, .. } = c {
                if accept.iter().any(|a| a == "suspicious" || a == "critical") {
                    high += 1;
                } else {
                    low += 1;
                }
            }
        }
        problems.extend(check_references(&t.id, &t.checks, &t.reference));
    }
    assert_no_problems(&problems);
    // Always answering "suspicious" (or always "normal") gets at most half
    // of the urgency questions right.
    assert!(
        high >= 3 && high == low,
        "urgency truths: {high} high, {low} low"
    );
}

/// A generous token count for a reply: three characters a token (English
/// text runs nearer four with these tokenizers), plus the call's framing.
fn tokens_at_most(r: &streamer_bench::Reply) -> usize {
    let calls: usize = r
        .tool_calls
        .iter()
        .map(|c| (c.name.len() + c.arguments.to_string().len()) / 3 + 16)
        .sum();
    r.content.chars().count().div_ceil(3) + calls
}

#[test]
fn token_budgets_leave_right_answers_room() {
    // The budget cuts off runaways; a right answer needs at most half of it.
    let suites = load_llm(&fixtures_dir().join("llm")).unwrap();
    for s in &suites {
        for t in &s.tests {
            let budget = s.shape(t).max_tokens as usize;
            for r in t.reference.passing() {
                let need = tokens_at_most(r);
                assert!(
                    2 * need <= budget,
                    "{}: a right answer of about {need} tokens needs more than half the budget {budget}",
                    t.id
                );
            }
        }
    }
}
