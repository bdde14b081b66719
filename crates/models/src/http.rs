//! Resumable HTTP(S) downloads for publisher-hosted models.
//!
//! A download goes to `<dest>.part`. If the connection drops, the next
//! attempt (in this run or a later one) asks for the rest with a `Range`
//! header and appends; a server that ignores ranges gets a fresh start.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::ModelError;

/// How many times a dropped connection is resumed before giving up.
const ATTEMPTS: u32 = 5;

/// Result of a finished download.
#[derive(Debug, Clone, PartialEq)]
pub struct Downloaded {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Bytes that were already on disk from an earlier, interrupted attempt.
    pub resumed_from: u64,
}

/// Downloads `url` to `dest`, resuming a partial `<dest>.part` if present.
/// `progress` is called with (bytes so far, total if known).
pub fn download(
    url: &str,
    dest: &Path,
    progress: &mut dyn FnMut(u64, Option<u64>),
) -> Result<Downloaded, ModelError> {
    let part = part_path(dest);
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    }
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("streamer/", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let http_err = |message: String| ModelError::Http {
        url: url.to_string(),
        message,
    };

    let initial = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let offset = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut request = agent.get(url);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                last_error = e.to_string();
                tracing::warn!(url, attempt, error = %e, "download attempt failed");
                std::thread::sleep(backoff(attempt));
                continue;
            }
        };
        let status = response.status().as_u16();
        let (append, total) = match status {
            206 => (true, content_range_total(&response)),
            200 => (false, content_length(&response)),
            // The part file already holds the whole resource.
            416 if offset > 0 => break,
            _ => return Err(http_err(format!("server answered HTTP {status}"))),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part)
            .map_err(ModelError::io(&part))?;
        let mut written = if append { offset } else { 0 };
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 256 * 1024];
        let result: Result<(), String> = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    file.write_all(&buf[..n]).map_err(ModelError::io(&part))?;
                    written += n as u64;
                    progress(written, total);
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        file.flush().map_err(ModelError::io(&part))?;
        match result {
            Ok(()) if total.is_none_or(|t| written >= t) => break,
            Ok(()) => last_error = format!("connection closed at {written} of {total:?} bytes"),
            Err(e) => last_error = e,
        }
        tracing::warn!(url, attempt, bytes = written, error = %last_error, "download interrupted; resuming");
        std::thread::sleep(backoff(attempt));
        if attempt == ATTEMPTS {
            return Err(http_err(format!(
                "gave up after {ATTEMPTS} attempts ({last_error}); run the same command again to resume from {written} bytes"
            )));
        }
    }
    if !part.exists() {
        return Err(http_err(last_error));
    }

    let sha256 = crate::sha256_file(&part)?;
    let size = fs::metadata(&part).map_err(ModelError::io(&part))?.len();
    fs::rename(&part, dest).map_err(ModelError::io(dest))?;
    Ok(Downloaded {
        path: dest.to_path_buf(),
        sha256,
        size,
        resumed_from: initial,
    })
}

pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt))
}

fn content_length(r: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    r.headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Total size from `Content-Range: bytes a-b/total`.
fn content_range_total(r: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let value = r.headers().get("content-range")?.to_str().ok()?;
    value.rsplit('/').next()?.trim().parse().ok()
}
