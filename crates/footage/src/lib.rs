//! Footage of a camera that is idle most of the time, made on the spot
//! from vtest (the OpenCV sample of people crossing a plaza), so nothing
//! large is committed and every run sees the same pictures.
//!
//! The per-pixel median of vtest's frames is the plaza with nobody in it.
//! An idle stretch is that empty scene with fresh sensor noise on every
//! frame; real vtest segments (with people) are spliced in between. A
//! simulated IR switch (the picture turns grey and changes brightness and
//! contrast at once, as a camera's night mode does) can start inside an
//! idle stretch and lasts until the next real segment. The result is
//! encoded as H.264 in MP4, the way a camera's stream would be, with a
//! label file saying where people are, so misses can be counted.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gstreamer::prelude::*;
use serde::{Deserialize, Serialize};
use streamer_core::Frame;
use streamer_ingest::{Fps, IngestError};

/// What can go wrong making footage.
#[derive(Debug, thiserror::Error)]
pub enum FootageError {
    /// vtest could not be read.
    #[error("reading {}: {source}", .path.display())]
    Source {
        /// The input video.
        path: PathBuf,
        /// What ingest said.
        source: IngestError,
    },
    /// A real segment asks for time the video does not have.
    #[error("the plan needs vtest up to {needed_s:.1} s but it has {has_s:.1} s")]
    TooShort {
        /// End of the latest real segment.
        needed_s: f64,
        /// Length of the video at the plan's fps.
        has_s: f64,
    },
    /// The encoder pipeline failed.
    #[error("encoding the footage: {0}")]
    Encode(String),
    /// The label file could not be written.
    #[error("writing {}: {source}", .path.display())]
    Labels {
        /// The label file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One stretch of the footage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Piece {
    /// The empty scene with sensor noise; with `ir_after_s`, the IR switch
    /// happens that far into the stretch.
    Idle {
        /// Length in seconds.
        seconds: f64,
        /// When the simulated IR switch happens, from the stretch's start.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ir_after_s: Option<f64>,
    },
    /// Real vtest frames from `from_s`.
    Real {
        /// Start in vtest, seconds.
        from_s: f64,
        /// Length in seconds.
        seconds: f64,
    },
}

/// Where a stretch lies in the made footage, in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The piece this stretch came from.
    pub piece: Piece,
    /// First frame's time.
    pub start_ms: u64,
    /// Time just after the last frame.
    pub end_ms: u64,
    /// Whether people can be in it (real vtest frames).
    pub people: bool,
    /// The IR switch's time, for an idle stretch that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ir_switch_ms: Option<u64>,
}

/// What was made: the video and its labels (also written beside it as
/// `<video>.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Footage {
    /// The MP4 file.
    pub video: PathBuf,
    /// Frames per second of the video.
    pub fps: u32,
    /// Frame size.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Frames in all.
    pub frames: u64,
    /// The stretches, in order.
    pub labels: Vec<Label>,
}

impl Footage {
    /// The label of the stretch holding time `ms`.
    pub fn label_at(&self, ms: u64) -> Option<&Label> {
        self.labels
            .iter()
            .find(|l| (l.start_ms..l.end_ms).contains(&ms))
    }

    /// Share of the footage (0–1) with nobody in it.
    pub fn idle_share(&self) -> f64 {
        let total = self.labels.last().map_or(0, |l| l.end_ms).max(1);
        let idle: u64 = self
            .labels
            .iter()
            .filter(|l| !l.people)
            .map(|l| l.end_ms - l.start_ms)
            .sum();
        idle as f64 / total as f64
    }
}

/// The standard plan: 96 s, 83 % of it idle, two real segments and an
/// IR switch in the middle of the longest idle stretch.
pub fn standard_plan() -> Vec<Piece> {
    vec![
        Piece::Idle {
            seconds: 20.0,
            ir_after_s: None,
        },
        Piece::Real {
            from_s: 10.0,
            seconds: 8.0,
        },
        Piece::Idle {
            seconds: 40.0,
            ir_after_s: Some(15.0),
        },
        Piece::Real {
            from_s: 40.0,
            seconds: 8.0,
        },
        Piece::Idle {
            seconds: 20.0,
            ir_after_s: None,
        },
    ]
}

/// The plan started `offset_s` seconds in, the part before moved to the
/// end: several cameras showing the same kind of day, each at another
/// moment of it (so people do not arrive everywhere at once).
pub fn rotate(plan: &[Piece], offset_s: f64) -> Vec<Piece> {
    let total: f64 = plan.iter().map(Piece::seconds).sum();
    if total <= 0.0 {
        return plan.to_vec();
    }
    let offset = offset_s.rem_euclid(total);
    let (mut head, mut tail) = (Vec::new(), Vec::new());
    let mut start = 0.0;
    for piece in plan {
        let end = start + piece.seconds();
        if end <= offset {
            tail.push(piece.clone());
        } else if start >= offset {
            head.push(piece.clone());
        } else {
            let (before, after) = piece.split(offset - start);
            tail.push(before);
            head.push(after);
        }
        start = end;
    }
    head.extend(tail);
    head
}

impl Piece {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        match self {
            Piece::Idle { seconds, .. } | Piece::Real { seconds, .. } => *seconds,
        }
    }

    /// The piece cut `at` seconds in. An IR switch stays where it was in
    /// time: before the cut it is in the first part and the second part is
    /// IR from its start; after the cut it moves to the second part.
    fn split(&self, at: f64) -> (Piece, Piece) {
        match self {
            Piece::Real { from_s, seconds } => (
                Piece::Real {
                    from_s: *from_s,
                    seconds: at,
                },
                Piece::Real {
                    from_s: from_s + at,
                    seconds: seconds - at,
                },
            ),
            Piece::Idle {
                seconds,
                ir_after_s,
            } => {
                let (first_ir, second_ir) = match ir_after_s {
                    Some(ir) if *ir < at => (Some(*ir), Some(0.0)),
                    Some(ir) => (None, Some(ir - at)),
                    None => (None, None),
                };
                (
                    Piece::Idle {
                        seconds: at,
                        ir_after_s: first_ir,
                    },
                    Piece::Idle {
                        seconds: seconds - at,
                        ir_after_s: second_ir,
                    },
                )
            }
        }
    }
}

/// Makes `plan` from `vtest` at `fps` into `out` (an `.mp4`), with its
/// labels in `out` + `.json`.
pub fn make(vtest: &Path, fps: u32, plan: &[Piece], out: &Path) -> Result<Footage, FootageError> {
    let frames = decode(vtest, fps)?;
    let has_s = frames.len() as f64 / f64::from(fps);
    let needed_s = plan
        .iter()
        .filter_map(|p| match p {
            Piece::Real { from_s, seconds } => Some(from_s + seconds),
            Piece::Idle { .. } => None,
        })
        .fold(0.0, f64::max);
    if frames.is_empty() || needed_s > has_s {
        return Err(FootageError::TooShort { needed_s, has_s });
    }
    let (width, height) = (frames[0].width, frames[0].height);
    let empty = median(&frames);

    let mut encoder = Encoder::start(out, width, height, fps)?;
    let mut noise = Noise(0x5eed_cafe_f00d_u64);
    let mut labels = Vec::new();
    let mut n = 0u64;
    let ms = |n: u64| n * 1000 / u64::from(fps);
    for piece in plan {
        let start = n;
        let mut ir_switch_ms = None;
        match piece {
            Piece::Idle {
                seconds,
                ir_after_s,
            } => {
                let count = (seconds * f64::from(fps)).round() as u64;
                let ir_from = ir_after_s.map(|s| start + (s * f64::from(fps)).round() as u64);
                ir_switch_ms = ir_from.map(ms);
                for i in start..start + count {
                    let mut rgb = empty.clone();
                    noise.add_to(&mut rgb);
                    if ir_from.is_some_and(|f| i >= f) {
                        infrared(&mut rgb);
                    }
                    encoder.push(&rgb, ms(i))?;
                    n += 1;
                }
            }
            Piece::Real { from_s, seconds } => {
                let first = (from_s * f64::from(fps)).round() as usize;
                let count = (seconds * f64::from(fps)).round() as usize;
                for frame in &frames[first..first + count] {
                    encoder.push(&frame.rgb, ms(n))?;
                    n += 1;
                }
            }
        }
        labels.push(Label {
            piece: piece.clone(),
            start_ms: ms(start),
            end_ms: ms(n),
            people: matches!(piece, Piece::Real { .. }),
            ir_switch_ms,
        });
    }
    encoder.finish()?;
    let footage = Footage {
        video: out.to_path_buf(),
        fps,
        width,
        height,
        frames: n,
        labels,
    };
    let label_path = labels_path(out);
    let json = serde_json::to_vec_pretty(&footage).expect("labels serialise");
    std::fs::write(&label_path, json).map_err(|source| FootageError::Labels {
        path: label_path,
        source,
    })?;
    Ok(footage)
}

/// Every frame of `vtest` at `fps`.
fn decode(vtest: &Path, fps: u32) -> Result<Vec<Frame>, FootageError> {
    let source = |source| FootageError::Source {
        path: vtest.to_path_buf(),
        source,
    };
    streamer_ingest::frames(
        streamer_ingest::open(vtest, Arc::from("vtest"), Fps { num: fps, den: 1 })
            .map_err(source)?,
    )
    .collect::<Result<_, _>>()
    .map_err(source)
}

/// The empty scene of `vtest`: the per-pixel median of its frames decoded
/// at `fps`, as `(width, height, RGB bytes)`.
pub fn empty_scene(vtest: &Path, fps: u32) -> Result<(u32, u32, Vec<u8>), FootageError> {
    let frames = decode(vtest, fps)?;
    let Some(first) = frames.first() else {
        return Err(FootageError::TooShort {
            needed_s: 1.0,
            has_s: 0.0,
        });
    };
    Ok((first.width, first.height, median(&frames)))
}

/// Where [`make`] writes the labels of `video`.
pub fn labels_path(video: &Path) -> PathBuf {
    let mut name = video.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Per-pixel, per-channel median of every fourth frame: the scene with the
/// passers-by taken out.
fn median(frames: &[Frame]) -> Vec<u8> {
    let samples: Vec<&[u8]> = frames.iter().step_by(4).map(|f| f.rgb.as_slice()).collect();
    let mut values = vec![0u8; samples.len()];
    let mid = samples.len() / 2;
    (0..samples[0].len())
        .map(|i| {
            for (v, s) in values.iter_mut().zip(&samples) {
                *v = s[i];
            }
            *values.select_nth_unstable(mid).1
        })
        .collect()
}

/// Night mode: grey, brighter, flatter.
fn infrared(rgb: &mut [u8]) {
    for px in rgb.chunks_exact_mut(3) {
        let luma = (77 * u32::from(px[0]) + 150 * u32::from(px[1]) + 29 * u32::from(px[2])) >> 8;
        let v = (luma * 6 / 10 + 80).min(255) as u8;
        px.fill(v);
    }
}

/// Sensor noise: roughly Gaussian, sigma about 2.5 grey levels, from a
/// fixed seed (xorshift; the sum of four uniforms).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn add_to(&mut self, rgb: &mut [u8]) {
        for v in rgb {
            let r = self.next();
            // Four uniforms in 0..=8, centred: variance 4 * 80/12 ≈ 6.7.
            let sum: i32 = (0..4).map(|k| ((r >> (k * 8)) % 9) as i32).sum::<i32>() - 16;
            *v = (i32::from(*v) + sum).clamp(0, 255) as u8;
        }
    }
}

/// appsrc → x264enc → mp4mux → file.
struct Encoder {
    pipeline: gstreamer::Pipeline,
    src: gstreamer_app::AppSrc,
}

impl Encoder {
    fn start(out: &Path, width: u32, height: u32, fps: u32) -> Result<Self, FootageError> {
        let err = |e: &dyn std::fmt::Display| FootageError::Encode(e.to_string());
        gstreamer::init().map_err(|e| err(&e))?;
        // Short GOPs: a client joining a looped stream decodes at once.
        let description = format!(
            "appsrc name=src format=time caps=video/x-raw,format=RGB,width={width},height={height},framerate={fps}/1 \
             ! videoconvert ! x264enc speed-preset=ultrafast key-int-max={gop} \
             ! video/x-h264,profile=constrained-baseline ! mp4mux ! filesink name=sink",
            gop = fps * 2
        );
        let pipeline = gstreamer::parse::launch(&description)
            .map_err(|e| err(&e))?
            .downcast::<gstreamer::Pipeline>()
            .map_err(|_| err(&"not a pipeline"))?;
        let sink = pipeline.by_name("sink").ok_or_else(|| err(&"no sink"))?;
        sink.set_property("location", out.to_string_lossy().as_ref());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gstreamer_app::AppSrc>().ok())
            .ok_or_else(|| err(&"no appsrc"))?;
        src.set_property("block", true);
        pipeline
            .set_state(gstreamer::State::Playing)
            .map_err(|e| err(&e))?;
        Ok(Self { pipeline, src })
    }

    fn push(&mut self, rgb: &[u8], pts_ms: u64) -> Result<(), FootageError> {
        let mut buffer = gstreamer::Buffer::from_slice(rgb.to_vec());
        {
            let b = buffer.get_mut().expect("a new buffer is writable");
            b.set_pts(gstreamer::ClockTime::from_mseconds(pts_ms));
        }
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| FootageError::Encode(format!("pushing a frame: {e:?}")))
    }

    fn finish(self) -> Result<(), FootageError> {
        let err = |e: String| FootageError::Encode(e);
        self.src
            .end_of_stream()
            .map_err(|e| err(format!("{e:?}")))?;
        let bus = self.pipeline.bus().ok_or_else(|| err("no bus".into()))?;
        let result = match bus.timed_pop_filtered(
            gstreamer::ClockTime::NONE,
            &[gstreamer::MessageType::Eos, gstreamer::MessageType::Error],
        ) {
            Some(msg) => match msg.view() {
                gstreamer::MessageView::Error(e) => Err(err(e.error().to_string())),
                _ => Ok(()),
            },
            None => Err(err("the encoder stopped without a message".into())),
        };
        let _ = self.pipeline.set_state(gstreamer::State::Null);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_plan_keeps_its_length_and_its_people() {
        let plan = standard_plan();
        let rotated = rotate(&plan, 50.0);
        let total = |p: &[Piece]| p.iter().map(Piece::seconds).sum::<f64>();
        assert_eq!(total(&rotated), total(&plan));
        let real = |p: &[Piece]| {
            p.iter()
                .filter(|p| matches!(p, Piece::Real { .. }))
                .map(Piece::seconds)
                .sum::<f64>()
        };
        assert_eq!(real(&rotated), real(&plan));
        // 50 s in is 22 s into the IR stretch (IR from 15 s): it starts in IR.
        assert_eq!(
            rotated[0],
            Piece::Idle {
                seconds: 18.0,
                ir_after_s: Some(0.0)
            }
        );
        assert_eq!(rotate(&plan, 0.0), plan);
        assert_eq!(rotate(&plan, 96.0), plan);
    }
}
