//! The motion gate on footage of a camera that is idle most of the time
//! (made at test time from vtest: its empty scene with sensor noise, two
//! real segments with people, a simulated IR switch), through the real
//! `streamer replay` binary with and without `--motion`.

use std::process::Command;

use serde_json::Value;
use streamer_footage::{Footage, Label};
use streamer_models::ModelCache;

/// One replay: its frame lines and its visits as `(id, first, last)` ms.
struct Run {
    frames: Vec<Value>,
    visits: Vec<(String, u64, u64)>,
}

fn replay(footage: &Footage, motion: bool) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_streamer"));
    cmd.args(["replay", "--fps", &footage.fps.to_string()]);
    if motion {
        cmd.arg("--motion");
    }
    let out = cmd
        .arg(&footage.video)
        .env("STREAMER_LOG", "warn")
        .output()
        .expect("streamer runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let frames = lines
        .iter()
        .filter(|l| l.get("detections").is_some())
        .cloned()
        .collect();
    let visits = lines
        .iter()
        .filter(|l| l["type"] == "end")
        .map(|l| {
            (
                l["visit_id"].as_str().unwrap().to_string(),
                l["first_seen_ms"].as_u64().unwrap(),
                l["last_seen_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    Run { frames, visits }
}

fn label<'a>(footage: &'a Footage, frame: &Value) -> &'a Label {
    footage
        .label_at(frame["pts_ms"].as_u64().unwrap())
        .expect("every frame lies in a stretch")
}

fn print_visits(name: &str, footage: &Footage, visits: &[(String, u64, u64)]) {
    eprintln!("{name}: {} visits", visits.len());
    for (id, first, last) in visits {
        let people = footage.label_at(*first).is_some_and(|l| l.people);
        eprintln!(
            "  {id}  {:>6.1} s .. {:>6.1} s  {}",
            *first as f64 / 1e3,
            *last as f64 / 1e3,
            if people {
                "starts in a segment with people"
            } else {
                "starts in an idle stretch (a detector false positive)"
            }
        );
    }
}

#[test]
fn the_gate_skips_idle_frames_and_misses_no_visit() {
    let vtest = ModelCache::from_env()
        .require("vtest")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"));
    let dir = tempfile::tempdir().unwrap();
    let footage = streamer_footage::make(
        &vtest,
        5,
        &streamer_footage::standard_plan(),
        &dir.path().join("idle.mp4"),
    )
    .expect("footage is made");
    eprintln!(
        "footage: {} frames, {:.0} % idle; stretches: {:?}",
        footage.frames,
        footage.idle_share() * 100.0,
        footage
            .labels
            .iter()
            .map(|l| (l.start_ms, l.end_ms, l.people, l.ir_switch_ms))
            .collect::<Vec<_>>()
    );

    let ungated = replay(&footage, false);
    let gated = replay(&footage, true);
    assert_eq!(ungated.frames.len(), gated.frames.len());
    assert!(ungated.frames.iter().all(|f| f.get("motion").is_none()));

    // At least 80 % of the idle frames never reach the detector.
    let idle: Vec<&Value> = gated
        .frames
        .iter()
        .filter(|f| !label(&footage, f).people)
        .collect();
    let skipped = idle
        .iter()
        .filter(|f| matches!(f["motion"].as_str(), Some("still" | "lighting")))
        .count();
    let share = skipped as f64 / idle.len() as f64;
    eprintln!(
        "idle frames skipped: {skipped} of {} ({:.1} %)",
        idle.len(),
        share * 100.0
    );
    assert!(
        share >= 0.8,
        "only {:.1} % of idle frames skipped",
        share * 100.0
    );
    // Frames with people are all detected.
    for f in gated.frames.iter().filter(|f| label(&footage, f).people) {
        assert_ne!(f["motion"], "still", "a frame with people was skipped: {f}");
    }

    // Every visit of the ungated run is found with the gate on too: a
    // gated visit overlaps it in time.
    print_visits("ungated", &footage, &ungated.visits);
    print_visits("gated", &footage, &gated.visits);
    for (id, first, last) in &ungated.visits {
        assert!(
            gated.visits.iter().any(|(_, f, l)| f <= last && first <= l),
            "visit {id} ({first}..{last} ms) was missed with the gate on"
        );
    }

    // The IR switch opens the gate for at most a second (five frames).
    let ir_ms = footage
        .labels
        .iter()
        .find_map(|l| l.ir_switch_ms)
        .expect("the plan has an IR switch");
    let opened: Vec<u64> = gated
        .frames
        .iter()
        .map(|f| (f["pts_ms"].as_u64().unwrap(), f["motion"].as_str().unwrap()))
        .filter(|(t, m)| (ir_ms..ir_ms + 10_000).contains(t) && *m == "motion")
        .map(|(t, _)| t)
        .collect();
    eprintln!("after the IR switch at {ir_ms} ms, frames with motion: {opened:?}");
    assert!(
        opened.iter().all(|t| *t < ir_ms + 1000),
        "the IR switch kept the gate open: {opened:?}"
    );
}
