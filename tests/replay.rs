//! `streamer replay` end to end: the real binary, GStreamer, ONNX Runtime
//! and the embedded CenterNet model from the cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use streamer_models::ModelCache;

fn streamer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(args)
        .env("STREAMER_LOG", "warn")
        .output()
        .expect("streamer runs")
}

fn vtest() -> PathBuf {
    ModelCache::from_env()
        .require("vtest")
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"))
}

fn all_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// The per-frame detection lines (visit events carry a `type` instead).
fn lines(out: &Output) -> Vec<Value> {
    all_lines(out)
        .into_iter()
        .filter(|l| l.get("detections").is_some())
        .collect()
}

fn visit_events(out: &Output) -> Vec<Value> {
    all_lines(out)
        .into_iter()
        .filter(|l| l.get("type").is_some())
        .collect()
}

fn people(line: &Value) -> usize {
    line["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["label"] == "person")
        .count()
}

fn make_black_clip(path: &Path) {
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "videotestsrc", "num-buffers=40", "pattern=black", "!"])
        .args(["video/x-raw,width=640,height=480,framerate=10/1", "!"])
        .args([
            "x264enc",
            "speed-preset=ultrafast",
            "!",
            "h264parse",
            "!",
            "mp4mux",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", path.display()))
        .status()
        .expect("gst-launch-1.0 runs (package gstreamer1.0-tools)");
    assert!(status.success());
}

#[test]
fn replay_finds_people_in_most_frames_of_pedestrian_footage() {
    let out = streamer(&["replay", "--fps", "1", vtest().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let frames = lines(&out);
    // vtest.avi is 79.5 s long.
    assert!(
        (75..=82).contains(&frames.len()),
        "{} frames\n{stderr}",
        frames.len()
    );
    let with_people = frames.iter().filter(|l| people(l) > 0).count();
    assert!(
        with_people * 10 >= frames.len() * 8,
        "people in only {with_people} of {} frames",
        frames.len()
    );
    // Timestamps follow the 1 fps sampling; boxes are in 768x576 frame pixels.
    for (i, l) in frames.iter().enumerate() {
        assert_eq!(l["camera"], "vtest");
        assert_eq!(l["pts_ms"], 1000 * i as u64);
        for d in l["detections"].as_array().unwrap() {
            let b: Vec<f64> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(
                b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= 768.0 && b[3] <= 576.0,
                "{d}"
            );
        }
    }
    assert!(stderr.contains("frames with people"), "{stderr}");
    println!("{stderr}");
}

#[test]
fn replay_finds_nobody_in_a_black_clip() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("black.mp4");
    make_black_clip(&clip);
    let out = streamer(&[
        "replay",
        "--fps",
        "5",
        "--camera",
        "night",
        clip.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = lines(&out);
    assert_eq!(frames.len(), 20, "4 s at 5 fps");
    assert!(frames
        .iter()
        .all(|l| people(l) == 0 && l["camera"] == "night"));
}

#[test]
fn replay_of_an_unreadable_input_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("camera-dump.mp4");
    std::fs::write(&bogus, vec![7u8; 10_000]).unwrap();
    let out = streamer(&["replay", bogus.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("camera-dump.mp4") && stderr.contains("GStreamer"),
        "{stderr}"
    );

    let out = streamer(&["replay", "/nonexistent/clip.mp4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/clip.mp4"));
}

/// A private model cache holding copies of `names` from the real one.
fn private_cache(names: &[&str]) -> tempfile::TempDir {
    let cache = ModelCache::from_env();
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let entry = cache.entry(name).unwrap();
        let src = cache
            .require(name)
            .unwrap_or_else(|e| panic!("{e}\n(run `make models`)"));
        let dst_dir = dir.path().join(name);
        std::fs::create_dir_all(&dst_dir).unwrap();
        std::fs::copy(&src, dst_dir.join(&entry.file)).unwrap();
        std::fs::copy(
            cache.dir(entry).join("record.json"),
            dst_dir.join("record.json"),
        )
        .unwrap();
    }
    dir
}

#[test]
fn calibration_measures_the_person_mean_and_replay_without_it_names_the_fix() {
    let dir = private_cache(&["onnxruntime", "centernet", "mobilenetv2-embedder", "vtest"]);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_streamer"))
            .args(args)
            .env("STREAMER_MODELS", dir.path())
            .env("STREAMER_LOG", "warn")
            .output()
            .unwrap()
    };
    let vtest = dir.path().join("vtest/vtest.avi");
    let out = run(&["replay", "--fps", "1", vtest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("person-mean.json")
            && stderr.contains("streamer models calibrate --embedder mobilenetv2-embedder`"),
        "{stderr}"
    );

    // Footage without people cannot calibrate, and says what to give instead.
    let black = dir.path().join("black.mp4");
    make_black_clip(&black);
    let out = run(&[
        "models",
        "calibrate",
        "--embedder",
        "mobilenetv2-embedder",
        black.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("0 person crops") && stderr.contains("people in view"),
        "{stderr}"
    );

    let out = run(&["models", "calibrate", "--embedder", "mobilenetv2-embedder"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let file = dir
        .path()
        .join("mobilenetv2-embedder/mobilenetv2-embedder.person-mean.json");
    let calibration: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(calibration["mean"].as_array().unwrap().len(), 1280);
    assert!(
        calibration["crops"].as_u64().unwrap() >= 50,
        "{calibration}"
    );
    assert!(calibration["source"]
        .as_str()
        .unwrap()
        .contains("from 30 s"));
    // Generic image features of people share a strong common direction:
    // that is what centring takes off.
    let norm = calibration["mean"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap().powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(norm > 0.5 && norm < 1.0, "|mean| {norm}");

    let again = run(&["models", "calibrate", "--embedder", "mobilenetv2-embedder"]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is calibrated"));
    let out = run(&["replay", "--fps", "1", vtest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!visit_events(&out).is_empty());
}

#[test]
fn a_corrupt_model_stops_replay_with_the_fix() {
    // A private cache holding a damaged copy of the detector.
    let dir = private_cache(&["onnxruntime", "centernet"]);
    let onnx = dir.path().join("centernet/centernet.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&onnx, bytes).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["models", "verify", "centernet"])
        .env("STREAMER_MODELS", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("centernet.onnx")
            && stderr.contains("streamer models fetch --force centernet"),
        "{stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["replay", vtest().to_str().unwrap()])
        .env("STREAMER_MODELS", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("streamer models fetch --force centernet")
    );
}

#[test]
fn two_cameras_seeing_the_same_people_share_visits() {
    // The same footage as two cameras: every person is on both at once, so
    // visits must join across cameras rather than double.
    identical_cameras_open_the_visits_of_one(&["--fps", "1"]);
}

#[test]
fn two_identical_cameras_at_the_live_rate_with_the_live_embedder_share_visits() {
    // As live cameras run by default: 5 fps, upright crops with block 16.
    // At this rate people walking in are held at the frame's edge and
    // often settle on a doubtful box; both cameras must settle into one
    // visit.
    identical_cameras_open_the_visits_of_one(&[
        "--fps",
        "5",
        "--embedder",
        "mobilenetv2-embedder-128x256-block16",
    ]);
}

/// Replays vtest as one camera and as two cameras showing the same frames
/// (`options` go to both runs): the two must open exactly the visits of the
/// one, each seen on both cameras.
fn identical_cameras_open_the_visits_of_one(options: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("porch.avi"), dir.path().join("gate.avi"));
    std::os::unix::fs::symlink(vtest(), &a).unwrap();
    std::os::unix::fs::symlink(vtest(), &b).unwrap();
    let replay = |inputs: &[&Path]| {
        let mut args = vec!["replay"];
        args.extend(options);
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        streamer(&args)
    };
    let out = replay(&[&a, &b]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let frames = lines(&out);
    // Interleaved by time: porch and gate alternate.
    assert_eq!(frames[0]["pts_ms"], 0);
    assert_eq!(frames[1]["pts_ms"], 0);
    assert_ne!(frames[0]["camera"], frames[1]["camera"]);

    let events = visit_events(&out);
    let kinds = |k: &str| events.iter().filter(|e| e["type"] == k).count();
    let opened = kinds("new");
    assert!(opened > 0, "{stderr}");
    assert_eq!(
        kinds("end"),
        opened,
        "every visit ends by the end of the replay"
    );
    // Identical pixels on a second camera never make a new person: exactly
    // the visits of the footage on one camera, each seen on both.
    let single = replay(&[&a]);
    assert!(single.status.success());
    let alone = visit_events(&single)
        .iter()
        .filter(|e| e["type"] == "new")
        .count();
    println!(
        "{options:?}: visits opened: {alone} on one camera, {opened} on two identical cameras"
    );
    assert_eq!(opened, alone, "{stderr}");
    for e in events.iter().filter(|e| e["type"] == "end") {
        assert_eq!(e["cameras"].as_array().map(Vec::len), Some(2), "{e}");
    }
    for e in &events {
        assert!(e["visit_id"].as_str().unwrap().starts_with("v-"), "{e}");
    }
    assert!(stderr.contains("cross-camera joins"), "{stderr}");
    println!("{stderr}");
}

#[test]
fn one_input_split_into_overlapping_cameras_shares_visits_between_them() {
    // The identity fixture is also a split manifest: vtest cut into a west
    // and an east camera that overlap by 192 px.
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/identity/vtest-two-cameras.json");
    let out = streamer(&[
        "replay",
        "--fps",
        "1",
        "--split",
        manifest.to_str().unwrap(),
        vtest().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let frames = lines(&out);
    let on = |camera: &str| frames.iter().filter(|f| f["camera"] == camera).count();
    assert!(on("west") > 10, "{stderr}");
    assert_eq!(on("west"), on("east"));
    assert_eq!(frames.len(), on("west") + on("east"));
    let joined = visit_events(&out)
        .into_iter()
        .filter(|e| {
            e["cameras"] == serde_json::json!(["west", "east"])
                || e["cameras"] == serde_json::json!(["east", "west"])
        })
        .count();
    assert!(joined > 0, "no visit seen by both cameras\n{stderr}");

    // Only one input can be split, and a rectangle must fit it.
    let out = streamer(&[
        "replay",
        "--split",
        manifest.to_str().unwrap(),
        vtest().to_str().unwrap(),
        vtest().to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--split cuts exactly one input"));
    let dir = tempfile::tempdir().unwrap();
    let wide = dir.path().join("wide.toml");
    std::fs::write(&wide, "[[cameras]]\nname = \"far\"\nx = 700\nwidth = 200\n").unwrap();
    let out = streamer(&[
        "replay",
        "--split",
        wide.to_str().unwrap(),
        vtest().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("camera far: 200x576 at (700, 0) does not fit the 768x576 input"),
        "{stderr}"
    );
}

#[test]
fn replay_alerts_print_one_line_per_stage_without_a_broker() {
    let vtest = vtest();
    let out = streamer(&[
        "replay",
        "--alerts",
        "--no-json",
        "--llm",
        "none",
        "--fps",
        "0.5",
        vtest.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "--no-json prints no JSON lines");
    let stage_one: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("(stage one, rules)"))
        .collect();
    let stage_two = stderr
        .lines()
        .filter(|l| l.contains("(stage two, "))
        .count();
    assert!(!stage_one.is_empty(), "{stderr}");
    assert_eq!(
        stage_one.len(),
        stage_two,
        "every alert gets its stage two\n{stderr}"
    );
    assert!(
        stage_one[0].starts_with("[00:"),
        "footage time first: {}",
        stage_one[0]
    );
    assert!(stage_one[0].contains(" vtest "), "{}", stage_one[0]);
}

#[test]
fn alerts_without_identity_are_refused_instead_of_silently_never_sent() {
    let out = streamer(&[
        "replay",
        "--no-identity",
        "--alerts",
        vtest().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--no-identity turns visits off"),
        "{stderr}"
    );
}

#[test]
fn replay_takes_its_settings_from_the_run_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[models]\nllm = \"none\"\n\n[identity]\nsimilarity_threshold = 0.4\n",
    )
    .unwrap();
    let vtest = vtest();
    let out = streamer(&[
        "replay",
        "--config",
        good.to_str().unwrap(),
        "--alerts",
        "--fps",
        "0.5",
        vtest.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stage two by rules only"),
        "llm = none came from the file: {stderr}"
    );
    assert!(!visit_events(&out).is_empty(), "{stderr}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[identity]\nsimilarity = 0.4\n").unwrap();
    let out = streamer(&[
        "replay",
        "--config",
        bad.to_str().unwrap(),
        vtest.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("identity.similarity: unknown field"),
        "{stderr}"
    );
}
