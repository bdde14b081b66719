//! Fetching from a publisher URL (a real HTTP server on 127.0.0.1 that drops
//! the first connection half-way) and verification failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::{Digest, Sha256};
use streamer_models::{FetchOptions, FetchOutcome, Manifest, ModelCache, ModelError};

/// Serves `payload`; the first plain GET is cut off after half the body.
/// Returns the base URL and the `Range` headers seen (None for no header).
fn flaky_server(payload: Vec<u8>, connections: usize) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/model.bin", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().take(connections).enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut range = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').parse::<usize>().unwrap());
                }
            }
            log.lock()
                .unwrap()
                .push(range.map(|r| format!("bytes={r}-")));
            let len = payload.len();
            match range {
                Some(start) => {
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{len}\r\nConnection: close\r\n\r\n",
                        len - start,
                        len - 1
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&payload[start..]).unwrap();
                }
                None => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    let cut = if i == 0 { len / 2 } else { len };
                    stream.write_all(&payload[..cut]).unwrap();
                }
            }
            let _ = stream.flush();
            // Drain anything left so the close is clean.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = reader.read(&mut [0u8; 1]);
        }
    });
    (url, seen)
}

fn manifest(url: &str, sha256: Option<&str>) -> Manifest {
    let pin = sha256
        .map(|s| format!("sha256 = \"{s}\"\n"))
        .unwrap_or_default();
    let text = format!(
        r#"
[[model]]
name = "remote"
kind = "llm"
role = "production"
description = "served by the test"
license = "test"
file = "remote.gguf"
{pin}source = {{ type = "url", url = "{url}" }}
"#
    );
    Manifest::parse(&text, "test manifest").unwrap()
}

fn payload() -> Vec<u8> {
    (0..600_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

#[test]
fn interrupted_download_resumes_and_records_its_checksum() {
    let data = payload();
    let expected = hex::encode(Sha256::digest(&data));
    let (url, seen) = flaky_server(data.clone(), 2);
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), manifest(&url, None));

    let outcome = cache.fetch("remote", FetchOptions::default()).unwrap();
    let FetchOutcome::Fetched {
        path,
        sha256,
        recorded,
    } = outcome
    else {
        panic!("expected a download, got {outcome:?}");
    };
    assert!(recorded, "no checksum was pinned, so this one is recorded");
    assert_eq!(sha256, expected);
    assert_eq!(std::fs::read(&path).unwrap(), data);
    let ranges = seen.lock().unwrap().clone();
    assert_eq!(
        ranges,
        vec![None, Some(format!("bytes={}-", data.len() / 2))]
    );
    assert_eq!(
        cache.record(cache.entry("remote").unwrap()).unwrap().sha256,
        expected
    );

    // A second fetch finds the verified file and does not download.
    assert!(matches!(
        cache.fetch("remote", FetchOptions::default()).unwrap(),
        FetchOutcome::Present(_)
    ));

    // Damage the file: verification names it and the command that fixes it.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = cache.verify("remote").unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("streamer models fetch --force remote"),
        "{msg}"
    );
    // `require` notices the change too (size/mtime differ, so it re-hashes).
    assert!(cache.require("remote").is_err());
}

#[test]
fn a_pinned_checksum_rejects_a_wrong_download_and_keeps_nothing() {
    let (url, _) = flaky_server(payload(), 2);
    let dir = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let cache = ModelCache::new(dir.path(), manifest(&url, Some(&wrong)));
    let err = cache.fetch("remote", FetchOptions::default()).unwrap_err();
    assert!(matches!(err, ModelError::Checksum { .. }), "{err}");
    assert!(!cache.path(cache.entry("remote").unwrap()).exists());
}

#[test]
fn a_missing_model_names_the_file_and_the_fetch_command() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModelCache::new(dir.path(), manifest("http://127.0.0.1:9/x", None));
    let err = cache.require("remote").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Missing { .. }));
    assert!(
        msg.contains("remote.gguf") && msg.contains("streamer models fetch remote"),
        "{msg}"
    );
}

#[test]
fn builtin_registry_models_verify_against_their_pins() {
    // The cache the setup filled (`make models`): pinned files must match.
    let cache = ModelCache::from_env();
    for name in [
        "onnxruntime",
        "smollm2-135m",
        "qwen2.5-coder-0.5b",
        "vtest",
        "mobilenetv2-embedder",
        "centernet",
        "centernet-416x320",
    ] {
        cache
            .verify(name)
            .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"));
    }
}
