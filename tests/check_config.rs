//! `streamer check-config`: the documented example is accepted, and each
//! broken config is refused (exit 2) with the key path of its problem.

use std::process::Command;

fn check(toml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamer.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .arg("check-config")
        .arg(&path)
        .env("CAM_PW", "hunter2-secret")
        .env_remove("MISSING_PW")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD_CAMERA: &str = "[cameras.porch]\nurl = \"rtsp://admin:${CAM_PW}@10.0.0.5/live\"\n";

#[test]
fn the_documented_example_is_accepted() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamer"))
        .args(["check-config", "examples/streamer.toml"])
        .env("FRONT_DOOR_PASSWORD", "s3cret-front")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("rtsp://viewer:***@192.168.1.20"),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-front"), "{stdout}");
}

#[test]
fn a_clean_config_prints_cameras_with_redacted_urls() {
    let (code, stdout, stderr) = check(GOOD_CAMERA);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("rtsp://admin:***@10.0.0.5/live"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2-secret"), "{stdout}");
}

#[test]
fn broken_configs_name_the_key_path() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key",
            format!("{GOOD_CAMERA}detect_fsp = 5\n"),
            "cameras.porch.detect_fsp: unknown field `detect_fsp`",
        ),
        (
            "wrong type",
            format!("{GOOD_CAMERA}detect_fps = \"fast\"\n"),
            "cameras.porch.detect_fps: invalid type",
        ),
        (
            "missing env var",
            "[cameras.porch]\nurl = \"rtsp://admin:${MISSING_PW}@10.0.0.5/live\"\n".into(),
            "cameras.porch.url: environment variable MISSING_PW is not set",
        ),
        (
            "bad URL scheme",
            "[cameras.porch]\nurl = \"http://admin:${CAM_PW}@10.0.0.5/live\"\n".into(),
            "cameras.porch.url: `http://admin:***@10.0.0.5/live` must start with rtsp://",
        ),
        (
            "duplicate camera (same Home Assistant id)",
            format!("{GOOD_CAMERA}[cameras.Porch]\nurl = \"rtsp://10.0.0.6/live\"\n"),
            "are the same camera to Home Assistant",
        ),
        (
            "fps out of range",
            format!("{GOOD_CAMERA}detect_fps = 120\n"),
            "cameras.porch.detect_fps: 120 is out of range",
        ),
        (
            "picture width too small to detect on",
            format!("{GOOD_CAMERA}max_width = 64\n"),
            "cameras.porch.max_width: 64 is out of range; use 160 to 7680",
        ),
        (
            "fps that rounds to zero",
            format!("{GOOD_CAMERA}detect_fps = 0.0004\n"),
            "cameras.porch.detect_fps: invalid source settings: sampling fps must be at least 0.001",
        ),
        (
            "unknown model",
            format!("{GOOD_CAMERA}[models]\ndetector = \"yolo-imaginary\"\n"),
            "models.detector: unknown model `yolo-imaginary`",
        ),
        (
            "bad listen address",
            format!("{GOOD_CAMERA}[http]\nlisten = \"localhost\"\n"),
            "http.listen: `localhost` is not HOST:PORT",
        ),
        (
            "served requests that never wait",
            format!("{GOOD_CAMERA}[http]\nserved_wait_s = 0\n"),
            "http.served_wait_s: 0 is out of range; use 1 to 3600 seconds",
        ),
        (
            "neither url nor gst_source",
            "[cameras.porch]\ndetect_fps = 5\n".into(),
            "cameras.porch: needs url",
        ),
        (
            "cooldown for a camera that does not exist",
            format!("{GOOD_CAMERA}[routing.camera_cooldown_secs]\nproch = 30\n"),
            "routing.camera_cooldown_secs.proch: no camera `proch`",
        ),
        (
            "quiet hours for a camera that does not exist",
            format!("{GOOD_CAMERA}[[routing.quiet_hours]]\ncameras = [\"gardn\"]\nstart = \"23:00\"\nend = \"06:00\"\n"),
            "routing.quiet_hours[0].cameras: no camera `gardn`",
        ),
        (
            "unknown time zone",
            format!("timezone = \"Europe/Berlln\"\n{GOOD_CAMERA}"),
            "timezone: `Europe/Berlln` is not an IANA time zone",
        ),
        (
            "motion mask point outside the picture",
            format!("{GOOD_CAMERA}[cameras.porch.motion]\nmask = [[[0, 0], [1.2, 0], [0, 1]]]\n"),
            "cameras.porch.motion.mask[0][1]: [1.2, 0] is outside the picture",
        ),
        (
            "unknown motion key",
            format!("{GOOD_CAMERA}[cameras.porch.motion]\nmin_aera = 0.01\n"),
            "cameras.porch.motion.min_aera: unknown field `min_aera`",
        ),
        (
            "detect_url that is not RTSP",
            format!("{GOOD_CAMERA}detect_url = \"http://10.0.0.5/sub\"\n"),
            "cameras.porch.detect_url: `http://10.0.0.5/sub` must start with rtsp://",
        ),
        (
            "zero LLM threads",
            format!("{GOOD_CAMERA}[models]\nllm_threads = 0\n"),
            "models.llm_threads: must be at least 1",
        ),
    ];
    for (what, toml, expected) in cases {
        let (code, _, stderr) = check(toml);
        assert_eq!(code, 2, "{what}: expected exit 2\n{stderr}");
        assert!(
            stderr.contains(expected),
            "{what}: expected `{expected}` in\n{stderr}"
        );
        assert!(
            !stderr.contains("hunter2-secret"),
            "{what}: password in\n{stderr}"
        );
    }
}
