//! Live cameras: an RTSP URL (`pipelines/rtsp.pipeline`) or a raw GStreamer
//! source description (`pipelines/gst-source.pipeline`), decoded at the
//! camera's detect fps, keeping only the freshest frame.
//!
//! Pictures come out as the decoder makes them (planar YUV 4:2:0,
//! [`Picture`]): a motion gate can read their luma plane, and only the
//! pictures it passes are converted to RGB ([`LiveSource::to_frame`]). On
//! a camera that shows an empty driveway most of the day, that spares the
//! colour conversion of most frames.
//!
//! A [`LiveSource`] is one connection attempt: it never reconnects by
//! itself. Supervision (stall detection, restarts with backoff) belongs to
//! whoever owns it, which tears it down and opens a new one.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
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
    /// YUV to RGB, made for the pictures' format when the first one is
    /// converted (and again if the camera changes resolution).
    converter: Option<gst_video::VideoConverter>,
}

/// One decoded picture of a live camera, before colour conversion: planar
/// YUV 4:2:0 (I420), whose first plane is the picture in grey.
pub struct Picture {
    frame: gst_video::VideoFrame<gst_video::video_frame::Readable>,
    camera: Arc<str>,
    seq: u64,
    pts: Duration,
}

impl Picture {
    pub fn width(&self) -> u32 {
        self.frame.width()
    }

    pub fn height(&self) -> u32 {
        self.frame.height()
    }

    /// Wall-clock time the picture was taken from the pipeline (since the
    /// Unix epoch), as its [`Frame`] will carry.
    pub fn pts(&self) -> Duration {
        self.pts
    }

    pub fn camera(&self) -> &Arc<str> {
        &self.camera
    }

    /// The luma plane and its row stride in bytes.
    pub fn luma(&self) -> (&[u8], usize) {
        let data = self.frame.plane_data(0).unwrap_or_default();
        (data, self.frame.plane_stride()[0] as usize)
    }

    /// Whether luma spans 16-235 (video range, as cameras send) rather than
    /// 0-255.
    pub fn limited_range(&self) -> bool {
        self.frame.info().colorimetry().range() != gst_video::VideoColorRange::Range0_255
    }
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
            converter: None,
        })
    }

    /// The next picture, waiting at most `timeout`; `Ok(None)` if none
    /// came. Pictures are stamped with the wall clock (time since the Unix
    /// epoch), so every camera shares one time axis. End of stream is
    /// `Err(IngestError::EndOfStream)`.
    pub fn next_picture_within(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Picture>, IngestError> {
        let Some(sample) = self.pipeline.pull_sample_within(timeout)? else {
            return Ok(None);
        };
        let format_err = |message: String| self.pipeline.format_error(message);
        let info = sample
            .caps()
            .ok_or_else(|| format_err("sample without caps".into()))
            .and_then(|caps| {
                gst_video::VideoInfo::from_caps(caps).map_err(|e| format_err(e.to_string()))
            })?;
        if info.format() != gst_video::VideoFormat::I420 {
            return Err(format_err(format!(
                "expected I420 pictures, got {:?}",
                info.format()
            )));
        }
        let buffer = sample
            .buffer_owned()
            .ok_or_else(|| format_err("sample without buffer".into()))?;
        let frame = gst_video::VideoFrame::from_buffer_readable(buffer, &info)
            .map_err(|_| format_err("the picture could not be mapped".into()))?;
        let pts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let picture = Picture {
            frame,
            camera: self.camera.clone(),
            seq: self.seq,
            pts,
        };
        self.seq += 1;
        Ok(Some(picture))
    }

    /// The next frame in RGB, waiting at most `timeout`: the next picture,
    /// converted.
    pub fn next_frame_within(&mut self, timeout: Duration) -> Result<Option<Frame>, IngestError> {
        match self.next_picture_within(timeout)? {
            Some(picture) => self.to_frame(&picture).map(Some),
            None => Ok(None),
        }
    }

    /// `picture` converted to packed RGB (with the colour matrix its caps
    /// name, as GStreamer's `videoconvert` would).
    pub fn to_frame(&mut self, picture: &Picture) -> Result<Frame, IngestError> {
        let format_err = |message: String| self.pipeline.format_error(message);
        let input = picture.frame.info();
        let fits = self.converter.as_ref().is_some_and(|c| {
            let made_for = c.in_info();
            made_for.width() == input.width()
                && made_for.height() == input.height()
                && made_for.colorimetry() == input.colorimetry()
        });
        if !fits {
            let output = gst_video::VideoInfo::builder(
                gst_video::VideoFormat::Rgb,
                input.width(),
                input.height(),
            )
            .fps(input.fps())
            .interlace_mode(input.interlace_mode())
            // Full-range RGB, keeping the input's transfer and primaries:
            // as `videoconvert` negotiates it, so the colours are only
            // re-matrixed, not re-graded.
            .colorimetry(&gst_video::VideoColorimetry::new(
                gst_video::VideoColorRange::Range0_255,
                gst_video::VideoColorMatrix::Rgb,
                input.colorimetry().transfer(),
                input.colorimetry().primaries(),
            ))
            .build()
            .map_err(|e| format_err(e.to_string()))?;
            self.converter = Some(
                gst_video::VideoConverter::new(input, &output, None)
                    .map_err(|e| format_err(e.to_string()))?,
            );
        }
        let converter = self.converter.as_ref().expect("made above");
        let info = converter.out_info();
        // The converter writes straight into the frame's own memory (Rust's
        // allocator), not into a GStreamer buffer that would be copied out
        // and freed: a megabyte-sized buffer a picture, freed on the C
        // heap by many camera threads, left glibc's arenas holding ever
        // more free memory over a long run.
        let mut buffer = gst::Buffer::from_mut_slice(vec![0u8; info.size()]);
        {
            let buffer = buffer.get_mut().expect("a new buffer is writable");
            let mut out = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info)
                .map_err(|e| format_err(e.to_string()))?;
            converter.frame_ref(&picture.frame.as_video_frame_ref(), &mut out);
        }
        let mut rgb: Vec<u8> = buffer
            .try_into_inner()
            .map_err(|(_, e)| format_err(e.to_string()))?;
        // Rows may be padded (to 4 bytes): close the gaps.
        let (row, height) = (input.width() as usize * 3, input.height() as usize);
        let stride = info.stride()[0] as usize;
        if stride != row {
            for y in 1..height {
                rgb.copy_within(y * stride..y * stride + row, y * row);
            }
        }
        rgb.truncate(row * height);
        Ok(Frame::new(
            picture.camera.clone(),
            picture.seq,
            picture.pts,
            input.width(),
            input.height(),
            rgb,
        ))
    }

    /// The camera name frames are tagged with.
    pub fn camera(&self) -> &Arc<str> {
        &self.camera
    }
}
