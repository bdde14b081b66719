//! The service files are valid: systemd's own verifier accepts the unit, and
//! the LaunchAgent parses as a property list with the keys launchd needs.

use std::process::Command;

fn missing(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is missing under CI (scripts/install-system-deps.sh installs it)");
    }
    eprintln!("skipped: {what} is missing");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Ok(out) = Command::new("systemd-analyze")
        .args(["verify", "systemd/streamer.service"])
        .output()
    else {
        return missing("systemd-analyze (Debian package systemd)");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The binary is not installed here; everything else must be clean.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.contains("/usr/local/bin/streamer"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "systemd-analyze verify:\n{stderr}");
    let unit = std::fs::read_to_string("systemd/streamer.service").unwrap();
    for key in [
        "DynamicUser=yes",
        "StateDirectory=",
        "CacheDirectory=",
        "EnvironmentFile=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(key), "unit lacks {key}");
    }
}

#[test]
fn the_launch_agent_is_a_property_list_with_the_expected_keys() {
    let script = r#"
import plistlib, sys
with open("launchd/com.example.streamer.plist", "rb") as f:
    p = plistlib.load(f)
for key in ("Label", "ProgramArguments", "KeepAlive", "StandardOutPath", "StandardErrorPath", "RunAtLoad"):
    assert key in p, key
assert p["ProgramArguments"][1:3] == ["run", "--config"], p["ProgramArguments"]
print("ok")
"#;
    let Ok(out) = Command::new("python3").args(["-c", script]).output() else {
        return missing("python3");
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
