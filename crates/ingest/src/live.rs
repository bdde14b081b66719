//! Live cameras: an RTSP URL (`pipelines/rtsp.pipeline`) or a raw GStreamer
//! source description (`pipelines/gst-source.pipeline`), decoded to RGB at
//! the camera's detect fps, keeping only the freshest frame.
//!
//! A [`LiveSource`] is one connection attempt: it never reconnects by
//! itself. Supervision (stall detection, restarts with backoff) belongs to
//! whoever owns it, which tears it down and opens a new one.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use streamer_core::{redact_urls, Frame};

use crate::pipeline::{Pipeline, GST_SOURCE_TEMPLATE, RTSP_TEMPLATE};
use crate::{Fps, IngestError};

/// How RTSP media travels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// RTP interleaved in the RTSP TCP connection: works through NAT and
    /// firewalls, never loses packets (the default).
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, loses packets under load.
    Udp,
    /// Let the camera and GStreamer negotiate (UDP first, then TCP).
    Auto,
}

impl Transport {
    fn protocols(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Auto => "udp+udp-mcast+tcp",
        }
    }
}

/// Where a live camera's video comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum LiveInput {
    /// An `rtsp://` or `rtsps://` URL, credentials included.
    Rtsp(String),
    /// A GStreamer source description ending in encoded or raw video, e.g.
    /// `v4l2src device=/dev/video0`.
    GstSource(String),
}

impl LiveInput {
    /// The input as it may be shown: passwords replaced by `***`.
    pub fn redacted(&self) -> String {
        match self {
            LiveInput::Rtsp(url) => redact_urls(url),
            LiveInput::GstSource(text) => redact_urls(text),
        }
    }
}

/// Never prints credentials.
impl fmt::Debug for LiveInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveInput::Rtsp(_) => write!(f, "Rtsp({})", self.redacted()),
            LiveInput::GstSource(_) => write!(f, "GstSource({})", self.redacted()),
        }
    }
}

/// [`LiveSettings::max_width`] unless configured.
pub const DEFAULT_MAX_WIDTH: u32 = 1280;

/// Per-camera settings of the live pipeline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveSettings {
    /// Frames per second handed to detection (`videorate` drops the rest).
    pub fps: Fps,
    /// RTSP transport.
    pub transport: Transport,
    /// rtspsrc's jitter buffer, in ms (0 keeps the freshest picture).
    pub latency_ms: u32,
    /// How long rtspsrc waits for the server or for packets before it gives
    /// up with an error.
    pub network_timeout: Duration,
    /// Wider pictures are scaled down to this width (aspect kept) before
    /// colour conversion: the detector works at well under 1280 pixels, and
    /// converting a 4K picture to RGB costs more than detecting on it.
    pub max_width: u32,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            fps: Fps { num: 5, den: 1 },
            transport: Transport::Tcp,
            latency_ms: 0,
            network_timeout: Duration::from_secs(10),
            max_width: DEFAULT_MAX_WIDTH,
        }
    }
}

/// One running connection to a live camera.
pub struct LiveSource {
    pipeline: Pipeline,
    camera: Arc<str>,
    seq: u64,
}

impl LiveSource {
    /// Builds the camera's pipeline and starts it. Connecting happens in
    /// the background: a camera that does not answer shows up as an error
    /// (or no frames) from [`next_frame_within`](Self::next_frame_within).
    pub fn open(
        input: &LiveInput,
        camera: Arc<str>,
        settings: &LiveSettings,
    ) -> Result<Self, IngestError> {
        let fps = format!("{}/{}", settings.fps.num, settings.fps.den);
        let max_width = settings.max_width.max(1).to_string();
        let pipeline = match input {
            LiveInput::Rtsp(url) => {
                if !(url.starts_with("rtsp://") || url.starts_with("rtsps://")) {
                    return Err(IngestError::Config(format!(
                        "camera {camera}: `{}` is not an rtsp:// or rtsps:// URL",
                        redact_urls(url)
                    )));
                }
                let latency = settings.latency_ms.to_string();
                let timeout = settings.network_timeout.as_micros().max(1).to_string();
                Pipeline::launch_with(
                    RTSP_TEMPLATE,
                    &[
                        ("fps", &fps),
                        ("protocols", settings.transport.protocols()),
                        ("latency_ms", &latency),
                        ("timeout_us", &timeout),
                        ("max_width", &max_width),
                    ],
                    Some(("location", url)),
                    url,
                )?
            }
            LiveInput::GstSource(text) => Pipeline::launch_with(
                GST_SOURCE_TEMPLATE,
                &[("fps", &fps), ("max_width", &max_width), ("source", text)],
                None,
                text,
            )?,
        };
        Ok(Self {
            pipeline,
            camera,
            seq: 0,
        })
    }

    /// The next frame, waiting at most `timeout`; `Ok(None)` if none came.
    /// Frames are stamped with the wall clock (time since the Unix epoch),
    /// so every camera shares one time axis. End of stream is
    /// `Err(IngestError::EndOfStream)`.
    pub fn next_frame_within(&mut self, timeout: Duration) -> Result<Option<Frame>, IngestError> {
        let Some((_pts, width, height, rgb)) = self.pipeline.pull_within(timeout)? else {
            return Ok(None);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let frame = Frame::new(self.camera.clone(), self.seq, now, width, height, rgb);
        self.seq += 1;
        Ok(Some(frame))
    }

    /// The camera name frames are tagged with.
    pub fn camera(&self) -> &Arc<str> {
        &self.camera
    }
}
