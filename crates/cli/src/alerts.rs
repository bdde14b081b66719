//! Alerts during `streamer replay --alerts` / `--mqtt`: every new visit goes
//! to the alert pipeline (stage one at once, stage two described and triaged
//! by the LLM), each alert is printed as one readable line, and the run
//! reports how long the first alert and its update took from the frame that
//! first showed a person. Without `--mqtt` the terminal is the only channel.

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;
use streamer_alerts::{Alert, AlertPipeline, AlertReceipt, AlertsConfig, Stage};
use streamer_core::Detection;
use streamer_models::ModelCache;
use streamer_reason::{ChatBackend, LlmRuntime};
use streamer_runner::Clock;

use crate::replay::ReplayArgs;
use crate::runtime;

pub struct Alerts {
    pipeline: Arc<AlertPipeline>,
    /// Frame timestamps to local time: footage start + pts.
    clock: Clock,
    runtime: Option<Arc<LlmRuntime>>,
    deadline: Duration,
    first_person: Option<Instant>,
    first_alert: Option<(String, Duration, Duration)>,
    stage_two: Option<JoinHandle<Option<(Alert, Duration)>>>,
    /// Threads printing the other alerts' stage two.
    printers: Vec<JoinHandle<Option<(Alert, Duration)>>>,
    sent: usize,
    /// Alert lines are printed around the progress bar.
    bar: ProgressBar,
    /// The outbox of a run without a broker (deleted at exit).
    _scratch: Option<tempfile::TempDir>,
}

impl Alerts {
    pub fn start(cache: &ModelCache, args: &ReplayArgs, bar: ProgressBar) -> Result<Self> {
        let mut config = match &args.alerts_config {
            None if args.file_alerts.is_some() => args.file_alerts.clone().expect("checked"),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                AlertsConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => AlertsConfig::default(),
        };
        if let Some(broker) = &args.mqtt {
            let (host, port) = parse_broker(broker)?;
            config.mqtt.host = host;
            config.mqtt.port = port;
        }
        // `--alerts` alone: the terminal is the only channel.
        let terminal_only =
            args.mqtt.is_none() && args.alerts_config.is_none() && args.file_alerts.is_none();
        let scratch = if terminal_only {
            let dir = tempfile::tempdir().context("creating a scratch outbox")?;
            config.outbox_dir = dir.path().to_path_buf();
            Some(dir)
        } else {
            None
        };
        let runtime = runtime::llm(
            cache,
            &args.llm,
            args.llm_threads,
            0,
            streamer_reason::RuntimeOptions::default().max_served_wait,
        )?;
        let backend = runtime.clone().map(|r| r as Arc<dyn ChatBackend>);
        let by = backend
            .as_ref()
            .map_or("rules only".to_string(), |b| b.describe());
        if terminal_only {
            eprintln!("alerts: printed here (no broker), stage two by {by}");
        } else {
            eprintln!(
                "alerts: MQTT {}:{}, stage two by {by}",
                config.mqtt.host, config.mqtt.port
            );
        }
        let deadline = Duration::from_millis(config.triage.deadline_ms);
        let start = match &args.start {
            Some(text) => chrono::DateTime::parse_from_rfc3339(text).with_context(|| {
                format!("--start {text}: not an RFC 3339 time such as 2026-11-20T23:30:00+01:00")
            })?,
            None => chrono::Local::now().fixed_offset(),
        };
        Ok(Self {
            clock: Clock::Footage { start },
            pipeline: Arc::new(if terminal_only {
                AlertPipeline::start_without_broker(&config, backend)?
            } else {
                AlertPipeline::start(&config, backend)?
            }),
            runtime,
            deadline,
            first_person: None,
            first_alert: None,
            stage_two: None,
            printers: Vec::new(),
            sent: 0,
            bar,
            _scratch: scratch,
        })
    }

    /// The alerts stage, for the stage graph.
    pub fn pipeline(&self) -> Arc<AlertPipeline> {
        Arc::clone(&self.pipeline)
    }

    /// Footage time to local time, for the stage graph.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    pub fn camera_connected(&self, camera: &str) {
        self.pipeline.set_connected(camera, true);
    }

    /// Prints each alert as it opens and (from a thread) its stage two,
    /// and records when the first person and the first alert came.
    /// `decoded_at`: when the frame left the decoder.
    pub fn observe(
        &mut self,
        pts: Duration,
        detections: &[Detection],
        receipts: Vec<AlertReceipt>,
        decoded_at: Instant,
    ) {
        if detections.iter().any(|d| d.is_person()) && self.first_person.is_none() {
            self.first_person = Some(decoded_at);
        }
        for receipt in receipts {
            self.sent += 1;
            let line = alert_line(pts, &receipt.initial, "stage one, rules");
            self.bar.suspend(|| eprintln!("{line}"));
            let from = self.first_person.unwrap_or(decoded_at);
            let first = self.first_alert.is_none();
            if first {
                // Stage one counts once the broker has acknowledged it.
                self.pipeline.wait_delivered(Duration::from_secs(5));
                self.first_alert = Some((
                    receipt.id().to_string(),
                    receipt.stage_one_latency,
                    from.elapsed(),
                ));
            }
            let wait = self.deadline + Duration::from_secs(10);
            let bar = self.bar.clone();
            let handle = thread::spawn(move || {
                let alert = receipt.wait_stage_two(wait)?;
                let source = match alert.stage {
                    Stage::Fallback => format!(
                        "stage two, fallback: {}",
                        alert.fallback_reason.as_deref().unwrap_or("rules")
                    ),
                    _ => "stage two, model".to_string(),
                };
                let line = alert_line(pts, &alert, &source);
                bar.suspend(|| eprintln!("{line}"));
                Some((alert, from.elapsed()))
            });
            if first {
                self.stage_two = Some(handle);
            } else {
                self.printers.push(handle);
            }
        }
    }

    pub fn finish(mut self) -> Result<()> {
        let update = self.stage_two.take().and_then(|h| h.join().ok().flatten());
        for printer in self.printers.drain(..) {
            let _ = printer.join();
        }
        let left = match Arc::try_unwrap(self.pipeline) {
            Ok(pipeline) => pipeline.shutdown(Duration::from_secs(10)),
            Err(shared) => shared.pending(),
        };
        // Shutting the pipeline down ends its model calls; if it is still
        // shared and could not be, end them here before the process exits.
        if let Some(runtime) = self.runtime {
            runtime.close_and_wait(Duration::from_secs(10));
        }
        eprintln!(
            "  alerts              {} sent ({left} left in the outbox)",
            self.sent
        );
        if let Some((id, journaled, stage_one)) = &self.first_alert {
            eprintln!(
                "  first alert         {id}: stage one {:.0} ms after the first frame with a person (in the outbox after {:.1} ms, acknowledged by the broker)",
                stage_one.as_secs_f64() * 1000.0,
                journaled.as_secs_f64() * 1000.0
            );
            match update {
                Some((alert, after)) => eprintln!(
                    "                      stage two ({:?}, urgency {}) {:.1} s after it: {}",
                    alert.stage,
                    alert.urgency,
                    after.as_secs_f64(),
                    alert.message
                ),
                None => eprintln!("                      stage two did not arrive in time"),
            }
        }
        Ok(())
    }
}

/// One readable line: footage time, camera, visit, urgency, message, and
/// where the verdict came from.
fn alert_line(pts: Duration, alert: &Alert, source: &str) -> String {
    let s = pts.as_secs();
    format!(
        "[{:02}:{:02}.{}] {:<10} {}  {:<10} {}  ({source})",
        s / 60,
        s % 60,
        pts.subsec_millis() / 100,
        alert.camera,
        alert.visit_id,
        alert.urgency.to_string(),
        alert.message
    )
}

/// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address (port 1883).
pub fn parse_broker(broker: &str) -> Result<(String, u16)> {
    if let Some(rest) = broker.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .with_context(|| format!("--mqtt {broker}: `[` without `]`"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p
                .parse()
                .with_context(|| format!("--mqtt {broker}: port is not a number"))?,
            None if tail.is_empty() => 1883,
            None => anyhow::bail!("--mqtt {broker}: expected `:PORT` after `]`"),
        };
        return Ok((host.to_string(), port));
    }
    if broker.matches(':').count() > 1 {
        // A bare IPv6 address: no port.
        return Ok((broker.to_string(), 1883));
    }
    match broker.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .with_context(|| format!("--mqtt {broker}: port is not a number"))?,
        )),
        None => Ok((broker.to_string(), 1883)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_broker;

    #[test]
    fn broker_addresses_split_at_the_right_colon() {
        assert_eq!(
            parse_broker("127.0.0.1").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_broker("nas.lan:1884").unwrap(),
            ("nas.lan".into(), 1884)
        );
        assert_eq!(parse_broker("[::1]:1885").unwrap(), ("::1".into(), 1885));
        assert_eq!(parse_broker("[fe80::2]").unwrap(), ("fe80::2".into(), 1883));
        assert_eq!(parse_broker("fe80::2").unwrap(), ("fe80::2".into(), 1883));
        assert!(parse_broker("host:port").is_err());
    }
}
