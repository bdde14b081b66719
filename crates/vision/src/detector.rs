use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::{TensorRef, ValueType};
use streamer_core::layout::{DetectorLayout, DetectorOutput, ImageInput, TensorOrder};
use streamer_core::{labels, BBox, Detection, Frame};

use crate::preprocess::{fill_tensor, Transform};
use crate::{nms, OrtRuntime, VisionError};

/// At most this many candidates enter NMS (highest scores first), so a low
/// threshold on a raw YOLO head cannot make NMS quadratic in 8400 anchors.
const MAX_NMS_CANDIDATES: usize = 1000;

/// An object detector: one ONNX session plus the layout that says how to
/// feed it and read it.
pub struct Detector {
    session: Session,
    layout: DetectorLayout,
    labels: Vec<String>,
    input_name: String,
    output_name: String,
    input: Vec<f32>,
    path: PathBuf,
}

/// A copy of the detector's output tensor, for callers that time the
/// stages separately (see [`Detector::infer`]).
pub struct RawOutput {
    pub shape: Vec<i64>,
    pub data: Vec<f32>,
}

/// Time spent in each part of one [`Detector::detect_timed`] call.
#[derive(Clone, Copy, Debug, Default)]
pub struct DetectorTimings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

impl DetectorTimings {
    pub fn total(&self) -> Duration {
        self.preprocess + self.inference + self.postprocess
    }
}

impl Detector {
    /// Loads the ONNX model at `path` and checks its input against `layout`.
    pub fn load(
        runtime: &OrtRuntime,
        path: &Path,
        layout: DetectorLayout,
        threads: usize,
    ) -> Result<Self, VisionError> {
        let session = runtime.session(path, threads)?;

        let layout_err = |message: String| VisionError::Layout {
            path: path.to_path_buf(),
            message,
        };
        let input = match &layout.input.name {
            Some(name) => session.inputs().iter().find(|i| i.name() == name),
            None => session.inputs().first(),
        }
        .ok_or_else(|| {
            layout_err(format!(
                "no input named {:?}; the model has {:?}",
                layout.input.name,
                session
                    .inputs()
                    .iter()
                    .map(|i| i.name())
                    .collect::<Vec<_>>()
            ))
        })?;
        check_image_input(input.dtype(), &layout.input).map_err(layout_err)?;
        let input_name = input.name().to_string();

        let output = match &layout.output_name {
            Some(name) => session.outputs().iter().find(|o| o.name() == name),
            None => session.outputs().first(),
        }
        .ok_or_else(|| layout_err(format!("no output named {:?}", layout.output_name)))?;
        let output_name = output.name().to_string();

        Ok(Self {
            labels: labels::resolve(&layout.labels),
            session,
            layout,
            input_name,
            output_name,
            input: Vec::new(),
            path: path.to_path_buf(),
        })
    }

    pub fn layout(&self) -> &DetectorLayout {
        &self.layout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the layout's score threshold (e.g. from the command line).
    pub fn set_score_threshold(&mut self, threshold: f32) {
        self.layout.score_threshold = threshold;
    }

    /// Detects once on a blank picture of the model's input size, so that
    /// the runtime's buffers are allocated (and its first, slow run is
    /// spent) at load rather than on a camera's first frame.
    pub fn warm_up(&mut self) -> Result<(), VisionError> {
        let (w, h) = (
            self.layout.input.width.max(1),
            self.layout.input.height.max(1),
        );
        let frame = Frame::new(
            std::sync::Arc::from("warm-up"),
            0,
            std::time::Duration::ZERO,
            w,
            h,
            vec![128; w as usize * h as usize * 3],
        );
        self.detect(&frame).map(|_| ())
    }

    /// Runs the whole stage on one frame.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Detection>, VisionError> {
        self.detect_timed(frame).map(|(d, _)| d)
    }

    /// Runs the whole stage on one frame and reports where the time went.
    pub fn detect_timed(
        &mut self,
        frame: &Frame,
    ) -> Result<(Vec<Detection>, DetectorTimings), VisionError> {
        let start = Instant::now();
        let transform = self.prepare(frame);
        let prepared = Instant::now();

        let mut inferred = prepared;
        let (layout, labels) = (&self.layout, &self.labels);
        let detections = run_session(
            &mut self.session,
            &self.input_name,
            &self.output_name,
            input_shape(layout),
            &self.input,
            |shape, data| {
                inferred = Instant::now();
                decode(
                    layout,
                    labels,
                    shape,
                    data,
                    &transform,
                    frame.width,
                    frame.height,
                )
            },
        )?;
        let done = Instant::now();
        Ok((
            detections,
            DetectorTimings {
                preprocess: prepared - start,
                inference: inferred - prepared,
                postprocess: done - inferred,
            },
        ))
    }

    /// Preprocessing alone: fills the input tensor from `frame`.
    pub fn prepare(&mut self, frame: &Frame) -> Transform {
        fill_tensor(
            &frame.rgb,
            frame.width,
            frame.height,
            &self.layout.input,
            &mut self.input,
        )
    }

    /// Inference alone, on the input left by [`Detector::prepare`].
    pub fn infer(&mut self) -> Result<RawOutput, VisionError> {
        run_session(
            &mut self.session,
            &self.input_name,
            &self.output_name,
            input_shape(&self.layout),
            &self.input,
            |shape, data| {
                Ok(RawOutput {
                    shape: shape.to_vec(),
                    data: data.to_vec(),
                })
            },
        )
    }

    /// Postprocessing alone: turns an output tensor into detections in the
    /// coordinates of a `frame_w x frame_h` frame.
    pub fn decode(
        &self,
        raw: &RawOutput,
        transform: &Transform,
        frame_w: u32,
        frame_h: u32,
    ) -> Result<Vec<Detection>, VisionError> {
        decode(
            &self.layout,
            &self.labels,
            &raw.shape,
            &raw.data,
            transform,
            frame_w,
            frame_h,
        )
    }
}

/// Runs the session on `input` and hands the named float output to `read`
/// while it is still borrowed from ONNX Runtime (no copy).
pub(crate) fn run_session<R, const D: usize>(
    session: &mut Session,
    input_name: &str,
    output_name: &str,
    shape: [usize; D],
    input: &[f32],
    read: impl FnOnce(&[i64], &[f32]) -> Result<R, VisionError>,
) -> Result<R, VisionError> {
    let tensor = TensorRef::from_array_view((shape, input))?;
    let outputs = session.run(ort::inputs![input_name => tensor])?;
    let (shape, data) = outputs[output_name].try_extract_tensor::<f32>()?;
    read(shape, data)
}

/// The input tensor's shape for a layout.
fn input_shape(layout: &DetectorLayout) -> [usize; 4] {
    let (w, h) = (layout.input.width as usize, layout.input.height as usize);
    match layout.input.order {
        TensorOrder::Nhwc => [1, h, w, 3],
        TensorOrder::Nchw => [1, 3, h, w],
    }
}

/// Checks that the model's input is a float image tensor of the size and
/// axis order the layout promises (dynamic axes accept anything). Returns
/// whether the batch axis is dynamic.
pub(crate) fn check_image_input(dtype: &ValueType, input: &ImageInput) -> Result<bool, String> {
    let ValueType::Tensor { ty, shape, .. } = dtype else {
        return Err(format!("input is not a tensor: {dtype:?}"));
    };
    if *ty != ort::value::TensorElementType::Float32 {
        return Err(format!("input element type is {ty:?}, expected float32"));
    }
    let (w, h) = (input.width as i64, input.height as i64);
    let expected = match input.order {
        TensorOrder::Nhwc => [1, h, w, 3],
        TensorOrder::Nchw => [1, 3, h, w],
    };
    let fits = shape.len() == 4
        && shape
            .iter()
            .zip(expected)
            .all(|(&dim, want)| dim < 0 || dim == want);
    if fits {
        Ok(shape[0] < 0)
    } else {
        Err(format!(
            "input shape is {:?}, the layout says {:?} ({:?})",
            &shape[..],
            expected,
            input.order
        ))
    }
}

/// Turns a detector output tensor into frame-space detections after score
/// filtering, clamping and per-class NMS.
fn decode(
    layout: &DetectorLayout,
    labels: &[String],
    shape: &[i64],
    data: &[f32],
    transform: &Transform,
    frame_w: u32,
    frame_h: u32,
) -> Result<Vec<Detection>, VisionError> {
    let mut candidates = match layout.output {
        DetectorOutput::Decoded => decoded_rows(shape, data, layout.score_threshold)?,
        DetectorOutput::YoloRaw => {
            yolo_raw_anchors(shape, data, labels.len(), layout.score_threshold)?
        }
    };
    if candidates.len() > MAX_NMS_CANDIDATES {
        candidates.select_nth_unstable_by(MAX_NMS_CANDIDATES, |a, b| b.1.total_cmp(&a.1));
        candidates.truncate(MAX_NMS_CANDIDATES);
    }
    let (fw, fh) = (frame_w as f32, frame_h as f32);
    let detections = candidates
        .into_iter()
        .filter_map(|(bbox, score, class_id)| {
            let bbox = transform.to_frame(bbox).clamp(fw, fh);
            (bbox.area() > 0.0).then(|| Detection {
                label: labels
                    .get(class_id as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("class{class_id}")),
                class_id,
                score,
                bbox,
            })
        })
        .collect();
    Ok(nms::per_class(detections, layout.nms_iou))
}

type Candidate = (BBox, f32, u32);

/// `[1, N, 6]` (or `[N, 6]`) rows of `x1, y1, x2, y2, score, class`.
fn decoded_rows(
    shape: &[i64],
    data: &[f32],
    threshold: f32,
) -> Result<Vec<Candidate>, VisionError> {
    let row_len = *shape.last().unwrap_or(&0);
    if row_len != 6 || shape.len() < 2 || !data.len().is_multiple_of(6) {
        return Err(VisionError::Output(format!(
            "decoded layout expects [1, N, 6], got {shape:?}"
        )));
    }
    Ok(data
        .chunks_exact(6)
        .filter(|r| r[4] >= threshold && r[4].is_finite())
        .map(|r| {
            (
                BBox::new(r[0], r[1], r[2], r[3]),
                r[4],
                r[5].round().max(0.0) as u32,
            )
        })
        .collect())
}

/// `[1, 4 + C, A]` (channels first, Ultralytics' default) or `[1, A, 4 + C]`:
/// per anchor `cx, cy, w, h` then one score per class.
fn yolo_raw_anchors(
    shape: &[i64],
    data: &[f32],
    classes: usize,
    threshold: f32,
) -> Result<Vec<Candidate>, VisionError> {
    let channels = 4 + classes;
    let (anchors, channels_first) = match shape {
        [1, c, a] if *c as usize == channels => (*a as usize, true),
        [1, a, c] if *c as usize == channels => (*a as usize, false),
        _ => {
            return Err(VisionError::Output(format!(
                "raw YOLO layout with {classes} classes expects [1, {channels}, A], got {shape:?}"
            )))
        }
    };
    let at = |channel: usize, anchor: usize| {
        if channels_first {
            data[channel * anchors + anchor]
        } else {
            data[anchor * channels + channel]
        }
    };
    let mut out = Vec::new();
    for a in 0..anchors {
        let (mut best, mut best_class) = (f32::NEG_INFINITY, 0);
        for c in 0..classes {
            let s = at(4 + c, a);
            if s > best {
                best = s;
                best_class = c;
            }
        }
        if best >= threshold && best.is_finite() {
            let bbox = BBox::from_center(at(0, a), at(1, a), at(2, a), at(3, a));
            out.push((bbox, best, best_class as u32));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamer_core::layout::{ImageInput, Resize};

    fn layout(output: DetectorOutput, labels: &str) -> DetectorLayout {
        DetectorLayout {
            input: ImageInput {
                name: None,
                order: TensorOrder::Nchw,
                width: 640,
                height: 640,
                resize: Resize::Letterbox,
                scale: 1.0 / 255.0,
                mean: [0.0; 3],
                std: [1.0; 3],
            },
            output,
            output_name: None,
            labels: labels.into(),
            score_threshold: 0.3,
            nms_iou: 0.5,
        }
    }

    #[test]
    fn decoded_rows_are_thresholded_mapped_clamped_and_deduplicated() {
        let l = layout(DetectorOutput::Decoded, "coco80");
        let t = Transform::fit(1280, 720, &l.input); // scale 0.5, pad_y 140
        #[rustfmt::skip]
        let data = [
            100.0, 240.0, 300.0, 440.0, 0.9, 0.0,  // person
            102.0, 242.0, 302.0, 442.0, 0.8, 0.0,  // duplicate of it
            -50.0, 140.0, 20.0, 200.0, 0.6, 2.0,   // car hanging off the left edge
            0.0, 0.0, 10.0, 10.0, 0.1, 0.0,        // below threshold
        ];
        let labels = labels::resolve(&l.labels);
        let out = decode(&l, &labels, &[1, 4, 6], &data, &t, 1280, 720).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].label, "person");
        assert_eq!(out[0].bbox, BBox::new(200.0, 200.0, 600.0, 600.0));
        assert_eq!(out[1].label, "car");
        assert_eq!(out[1].bbox, BBox::new(0.0, 0.0, 40.0, 120.0));
    }

    #[test]
    fn raw_yolo_picks_best_class_per_anchor_in_either_orientation() {
        let l = layout(DetectorOutput::YoloRaw, "person,car");
        let t = Transform::fit(640, 640, &l.input);
        // Three anchors: person at (100,100), car at (300,300), nothing.
        let anchors = [
            [100.0, 100.0, 20.0, 40.0, 0.9, 0.1],
            [300.0, 300.0, 50.0, 50.0, 0.2, 0.7],
            [500.0, 500.0, 10.0, 10.0, 0.1, 0.2],
        ];
        let channels_first: Vec<f32> = (0..6)
            .flat_map(|c| anchors.iter().map(move |a| a[c]))
            .collect();
        let anchors_first: Vec<f32> = anchors.iter().flatten().copied().collect();
        let labels = labels::resolve(&l.labels);
        for (shape, data) in [([1, 6, 3], channels_first), ([1, 3, 6], anchors_first)] {
            let out = decode(&l, &labels, &shape, &data, &t, 640, 640).unwrap();
            assert_eq!(out.len(), 2, "shape {shape:?}");
            assert_eq!((out[0].label.as_str(), out[0].score), ("person", 0.9));
            assert_eq!(out[0].bbox, BBox::new(90.0, 80.0, 110.0, 120.0));
            assert_eq!((out[1].label.as_str(), out[1].score), ("car", 0.7));
        }
    }

    #[test]
    fn wrong_output_shapes_are_errors_not_panics() {
        let l = layout(DetectorOutput::YoloRaw, "coco80");
        let t = Transform::fit(640, 640, &l.input);
        let labels = labels::resolve(&l.labels);
        assert!(decode(&l, &labels, &[1, 10, 5], &[0.0; 50], &t, 640, 640).is_err());
        let l = layout(DetectorOutput::Decoded, "coco80");
        assert!(decode(&l, &labels, &[1, 5, 5], &[0.0; 25], &t, 640, 640).is_err());
    }
}
