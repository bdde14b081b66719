//! Building pipelines from the templates in `pipelines/` and pulling RGB
//! frames out of their appsink.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::AppSink;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use streamer_core::redact_urls;

use crate::{Fps, IngestError};

pub(crate) const FILE_TEMPLATE: (&str, &str) = (
    "file.pipeline",
    include_str!("../../../pipelines/file.pipeline"),
);
pub(crate) const IMAGE_TEMPLATE: (&str, &str) = (
    "image.pipeline",
    include_str!("../../../pipelines/image.pipeline"),
);
pub(crate) const RTSP_TEMPLATE: (&str, &str) = (
    "rtsp.pipeline",
    include_str!("../../../pipelines/rtsp.pipeline"),
);
pub(crate) const GST_SOURCE_TEMPLATE: (&str, &str) = (
    "gst-source.pipeline",
    include_str!("../../../pipelines/gst-source.pipeline"),
);

/// How long one pull waits before checking the bus again.
const PULL_SLICE: Duration = Duration::from_millis(100);

/// Initialises GStreamer once per process.
pub(crate) fn init() -> Result<(), IngestError> {
    gst::init().map_err(|e| IngestError::Init(e.to_string()))
}

/// A running pipeline with an appsink named `sink` and a source named `src`.
pub(crate) struct Pipeline {
    pipeline: gst::Pipeline,
    sink: AppSink,
    bus: gst::Bus,
    input: String,
}

impl Pipeline {
    /// Parses `template` (with `{fps}` filled in), sets `src`'s `property`
    /// to `value` and starts playing.
    pub(crate) fn launch(
        template: (&'static str, &str),
        fps: Option<Fps>,
        property: &str,
        value: &str,
    ) -> Result<Self, IngestError> {
        let fps = fps.map(|f| format!("{}/{}", f.num, f.den));
        let vars: Vec<(&str, &str)> = fps.iter().map(|f| ("fps", f.as_str())).collect();
        Self::launch_with(template, &vars, Some((property, value)), value)
    }

    /// Parses `template` with each `{name}` in `vars` filled in, sets the
    /// `src` element's property (if given) and starts playing. `input`
    /// names the input in errors; it is redacted (no passwords) before it is
    /// stored.
    pub(crate) fn launch_with(
        template: (&'static str, &str),
        vars: &[(&str, &str)],
        src_property: Option<(&str, &str)>,
        input: &str,
    ) -> Result<Self, IngestError> {
        init()?;
        let (name, text) = template;
        let bad = |message: String| IngestError::Template {
            template: name,
            message: redact_urls(&message),
        };
        let mut launch: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join(" ");
        for (key, value) in vars {
            launch = launch.replace(&format!("{{{key}}}"), value);
        }
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| bad(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| bad("not a pipeline".into()))?;
        if let Some((property, value)) = src_property {
            let src = pipeline
                .by_name("src")
                .ok_or_else(|| bad("no element named src".into()))?;
            src.set_property(property, value);
        }
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<AppSink>().ok())
            .ok_or_else(|| bad("no appsink named sink".into()))?;
        let bus = pipeline.bus().expect("a pipeline has a bus");
        let this = Self {
            pipeline,
            sink,
            bus,
            input: redact_urls(input),
        };
        if this.pipeline.set_state(gst::State::Playing).is_err() {
            // The bus says why (e.g. file not found).
            return Err(this.bus_error().unwrap_or_else(|| IngestError::Pipeline {
                input: this.input.clone(),
                element: name.into(),
                message: "pipeline refused to start".into(),
                debug: None,
            }));
        }
        Ok(this)
    }

    /// The next decoded sample, waiting at most `timeout`: `Ok(None)` when
    /// none came in time (the caller decides whether that is a stall).
    pub(crate) fn pull_sample_within(
        &self,
        timeout: Duration,
    ) -> Result<Option<gst::Sample>, IngestError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(err) = self.bus_error() {
                return Err(err);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let slice = left.min(PULL_SLICE);
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_nseconds(slice.as_nanos() as u64))
            {
                return Ok(Some(sample));
            }
            if self.sink.is_eos() {
                return Err(self.bus_error().unwrap_or(IngestError::EndOfStream));
            }
            if left.is_zero() {
                return Ok(None);
            }
        }
    }

    /// The next decoded sample as `(pts, width, height, packed RGB)`.
    pub(crate) fn pull(&self) -> Result<(Option<Duration>, u32, u32, Vec<u8>), IngestError> {
        loop {
            if let Some(err) = self.bus_error() {
                return Err(err);
            }
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_nseconds(PULL_SLICE.as_nanos() as u64))
            {
                return self.unpack(&sample);
            }
            if self.sink.is_eos() {
                return Err(self.bus_error().unwrap_or(IngestError::EndOfStream));
            }
        }
    }

    fn unpack(
        &self,
        sample: &gst::Sample,
    ) -> Result<(Option<Duration>, u32, u32, Vec<u8>), IngestError> {
        let format_err = |message: String| self.format_error(message);
        let caps = sample
            .caps()
            .ok_or_else(|| format_err("sample without caps".into()))?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format_err(e.to_string()))?;
        let buffer = sample
            .buffer()
            .ok_or_else(|| format_err("sample without buffer".into()))?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|e| format_err(e.to_string()))?;
        let rgb = packed_rgb(&frame).map_err(format_err)?;
        let pts = buffer.pts().map(|t| Duration::from_nanos(t.nseconds()));
        Ok((pts, info.width(), info.height(), rgb))
    }

    /// An error about the decoded pictures of this pipeline's input.
    pub(crate) fn format_error(&self, message: String) -> IngestError {
        IngestError::Format {
            input: self.input.clone(),
            message,
        }
    }

    /// The first error message waiting on the bus, if any.
    fn bus_error(&self) -> Option<IngestError> {
        while let Some(msg) = self.bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = msg.view() {
                return Some(IngestError::Pipeline {
                    input: self.input.clone(),
                    element: err
                        .src()
                        .map(|s| s.name().to_string())
                        .unwrap_or_else(|| "pipeline".into()),
                    message: redact_urls(&err.error().to_string()),
                    debug: err.debug().map(|d| redact_urls(&d)),
                });
            }
        }
        None
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The picture of an RGB `frame` copied out tightly packed (its rows may
/// be padded to 4 bytes).
fn packed_rgb<T>(frame: &gst_video::VideoFrameRef<T>) -> Result<Vec<u8>, String> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let row = w * 3;
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).map_err(|e| e.to_string())?;
    let mut rgb = Vec::with_capacity(row * h);
    for y in 0..h {
        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(rgb)
}
