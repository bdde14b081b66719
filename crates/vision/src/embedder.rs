//! Person embeddings: crop each box (with a margin), resize and normalise
//! it as the model's manifest entry says, run the crops as one batch and
//! return L2-normalised vectors that compare by cosine (a dot product).

use std::path::{Path, PathBuf};

use ort::session::Session;
use serde::{Deserialize, Serialize};
use streamer_core::layout::{EmbedderLayout, TensorOrder};
use streamer_core::{BBox, Frame};

use crate::colour::{colour_signature, COLOUR_DIM};
use crate::detector::{check_image_input, run_session};
use crate::preprocess::{fill_crop, Crop};
use crate::{OrtRuntime, VisionError};

/// Context added around each box before cropping, as a fraction of the box's
/// width (left and right) and height (top and bottom).
pub const DEFAULT_MARGIN: f32 = 0.1;

/// Most crops sent to the model in one run by default; more boxes make more
/// runs. ONNX Runtime's arena keeps the memory of the largest run it has
/// seen, so the cap bounds memory, and [`Embedder::warm_up`] reaches that
/// bound at start. Measured with `cargo bench --bench embedder` (MobileNetV2
/// at 224 × 224, 2 cores): 6.7–6.9 ms a crop at 4, 16 and 32 crops a run
/// alike, but resident memory 221, 370 and 568 MiB after a full batch.
pub const MAX_BATCH: usize = 4;

/// Vectors whose norm is below this are left as they are (all zeros) rather
/// than blown up into noise.
const MIN_NORM: f32 = 1e-12;

/// An image embedder: one ONNX session plus the layout that says how to feed
/// it and how long its vectors are.
pub struct Embedder {
    session: Session,
    layout: EmbedderLayout,
    input_name: String,
    output_name: String,
    /// Whether the model accepts any batch size (otherwise one crop a run).
    dynamic_batch: bool,
    /// Most crops a run (see [`MAX_BATCH`]).
    max_batch: usize,
    margin: f32,
    /// Mean person embedding taken off before normalising (see
    /// [`EmbedderLayout::centre`]).
    centre: Option<Vec<f32>>,
    /// Clothing colour appended to the features (see
    /// [`EmbedderLayout::colour_weight`]).
    colour: Option<ColourCue>,
    input: Vec<f32>,
    path: PathBuf,
}

impl Embedder {
    /// Loads the ONNX model at `path` and checks its input and output
    /// against `layout`.
    pub fn load(
        runtime: &OrtRuntime,
        path: &Path,
        layout: &EmbedderLayout,
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
        .ok_or_else(|| layout_err(format!("no input named {:?}", layout.input.name)))?;
        let dynamic_batch = check_image_input(input.dtype(), &layout.input).map_err(layout_err)?;
        let input_name = input.name().to_string();

        let output = match &layout.output_name {
            Some(name) => session.outputs().iter().find(|o| o.name() == name),
            None => session.outputs().first(),
        }
        .ok_or_else(|| layout_err(format!("no output named {:?}", layout.output_name)))?;
        if let ort::value::ValueType::Tensor { shape, .. } = output.dtype() {
            let last = shape.last().copied().unwrap_or(-1);
            if last >= 0 && last as usize != layout.dim {
                return Err(layout_err(format!(
                    "output {:?} has {last} values per crop, the layout says dim = {}",
                    output.name(),
                    layout.dim
                )));
            }
        }
        let output_name = output.name().to_string();
        let calibration = match &layout.centre {
            Some(file) => {
                let at = calibration_path(path, file);
                Some((Calibration::read(&at, layout.dim)?, at))
            }
            None => None,
        };
        let colour = match &calibration {
            Some((c, at)) if layout.colour_weight > 0.0 => Some(ColourCue {
                weight: layout.colour_weight,
                mean: c
                    .colour_mean
                    .clone()
                    .ok_or_else(|| VisionError::Calibration {
                        path: at.clone(),
                        message: "it was measured without the mean colour signature that \
                              `colour_weight` needs"
                            .into(),
                    })?,
            }),
            _ => None,
        };
        let centre = calibration.map(|(c, _)| c.mean);

        Ok(Self {
            session,
            layout: layout.clone(),
            input_name,
            output_name,
            dynamic_batch,
            max_batch: MAX_BATCH,
            margin: DEFAULT_MARGIN,
            centre,
            colour,
            input: Vec::new(),
            path: path.to_path_buf(),
        })
    }

    /// Replaces the context margin around each box (a fraction of its size).
    pub fn with_margin(mut self, margin: f32) -> Self {
        self.margin = margin.max(0.0);
        self
    }

    pub fn margin(&self) -> f32 {
        self.margin
    }

    /// Replaces the most crops sent in one run (at least 1; a model with a
    /// fixed batch axis takes one a run whatever this says).
    pub fn with_max_batch(mut self, crops: usize) -> Self {
        self.max_batch = crops.max(1);
        self
    }

    /// Most crops sent in one run.
    pub fn max_batch(&self) -> usize {
        if self.dynamic_batch {
            self.max_batch
        } else {
            1
        }
    }

    /// Runs one full batch of blank crops, so that the runtime's buffers
    /// reach their largest size now, at load, rather than on the first
    /// crowded frame (a step in memory and a slow frame mid-stream).
    pub fn warm_up(&mut self) -> Result<(), VisionError> {
        let (w, h) = (self.layout.input.width, self.layout.input.height);
        let frame = Frame::new(
            std::sync::Arc::from("warm-up"),
            0,
            std::time::Duration::ZERO,
            w,
            h,
            vec![128; w as usize * h as usize * 3],
        );
        let whole = BBox::new(0.0, 0.0, w as f32, h as f32);
        let boxes = vec![whole; self.max_batch()];
        self.embed(&frame, &boxes).map(|_| ())
    }

    /// Length of each embedding: the model's features, plus the colour
    /// signature when it is appended.
    pub fn dim(&self) -> usize {
        self.layout.dim + if self.colour.is_some() { COLOUR_DIM } else { 0 }
    }

    /// How much clothing colour weighs in each embedding (0: not at all).
    pub fn colour_weight(&self) -> f32 {
        self.colour.as_ref().map_or(0.0, |c| c.weight)
    }

    /// Whether embeddings are centred on a calibrated person mean.
    pub fn is_centred(&self) -> bool {
        self.centre.is_some()
    }

    pub fn layout(&self) -> &EmbedderLayout {
        &self.layout
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One L2-normalised embedding per box, in the order of `boxes`. Boxes
    /// are in `frame` pixels; they are grown by the margin and clamped to the
    /// frame, so a box partly outside it still yields a vector.
    pub fn embed(&mut self, frame: &Frame, boxes: &[BBox]) -> Result<Vec<Vec<f32>>, VisionError> {
        let per_run = self.max_batch();
        let mut out = Vec::with_capacity(boxes.len());
        for chunk in boxes.chunks(per_run) {
            self.embed_batch(frame, chunk, &mut out)?;
        }
        if let Some(colour) = &self.colour {
            for (features, bbox) in out.iter_mut().zip(boxes) {
                colour.append(features, frame, bbox);
            }
        }
        Ok(out)
    }

    fn embed_batch(
        &mut self,
        frame: &Frame,
        boxes: &[BBox],
        out: &mut Vec<Vec<f32>>,
    ) -> Result<(), VisionError> {
        let input = &self.layout.input;
        let (w, h) = (input.width as usize, input.height as usize);
        let per_image = 3 * w * h;
        self.input.resize(per_image * boxes.len(), 0.0);
        for (bbox, slot) in boxes.iter().zip(self.input.chunks_exact_mut(per_image)) {
            let crop = Crop::around(*bbox, self.margin, frame.width, frame.height);
            fill_crop(&frame.rgb, frame.width, crop, input, slot);
        }
        let n = boxes.len();
        let shape = match input.order {
            TensorOrder::Nchw => [n, 3, h, w],
            TensorOrder::Nhwc => [n, h, w, 3],
        };
        let dim = self.layout.dim;
        let centre = &self.centre;
        run_session(
            &mut self.session,
            &self.input_name,
            &self.output_name,
            shape,
            &self.input,
            |shape, data| {
                if data.len() != n * dim {
                    return Err(VisionError::Output(format!(
                        "embedder output {shape:?} does not hold {n} vectors of {dim}"
                    )));
                }
                out.extend(data.chunks_exact(dim).map(|raw| {
                    let unit = normalised(raw);
                    match &centre {
                        Some(mean) => centred(&unit, mean),
                        None => unit,
                    }
                }));
                Ok(())
            },
        )
    }
}

/// The colour half of a fused embedding.
struct ColourCue {
    weight: f32,
    /// Mean colour signature of person boxes, from the calibration.
    mean: Vec<f32>,
}

impl ColourCue {
    /// Scales the unit `features` by √(1 − w) and appends the box's
    /// centred colour signature scaled by √w: a unit vector whose dot
    /// products weigh the two cues as `weight` says.
    fn append(&self, features: &mut Vec<f32>, frame: &Frame, bbox: &BBox) {
        let keep = (1.0 - self.weight).sqrt();
        features.iter_mut().for_each(|x| *x *= keep);
        let colour = centred(&colour_signature(frame, bbox), &self.mean);
        let add = self.weight.sqrt();
        features.extend(colour.iter().map(|x| x * add));
    }
}

/// `unit` minus `mean`, scaled to unit length.
pub fn centred(unit: &[f32], mean: &[f32]) -> Vec<f32> {
    let shifted: Vec<f32> = unit.iter().zip(mean).map(|(x, m)| x - m).collect();
    normalised(&shifted)
}

/// Where the calibration file `file` of the model at `model` lives: next to it.
pub fn calibration_path(model: &Path, file: &str) -> PathBuf {
    model.with_file_name(file)
}

/// The mean person embedding of one embedder, measured on footage by
/// `streamer models calibrate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// File name of the model it was measured with.
    pub model: String,
    /// That model file's sha256: a converter that changes the model makes
    /// `streamer models calibrate` measure again. Absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    /// What it was measured on (footage and time range).
    pub source: String,
    /// Person crops averaged.
    pub crops: usize,
    /// Mean of their L2-normalised embeddings.
    pub mean: Vec<f32>,
    /// Mean of their colour signatures (see [`crate::colour`]); absent in
    /// files written before colour was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour_mean: Option<Vec<f32>>,
}

impl Calibration {
    /// Reads and checks a calibration file for embeddings of `dim` values.
    pub fn read(path: &Path, dim: usize) -> Result<Self, VisionError> {
        let err = |message: String| VisionError::Calibration {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let calibration: Self =
            serde_json::from_str(&text).map_err(|e| err(format!("not a calibration file: {e}")))?;
        if calibration.mean.len() != dim {
            return Err(err(format!(
                "its mean has {} values, the embedder gives {dim}",
                calibration.mean.len()
            )));
        }
        if calibration.mean.iter().any(|x| !x.is_finite()) || calibration.crops == 0 {
            return Err(err("its mean is not a finite average of crops".into()));
        }
        if let Some(colour) = &calibration.colour_mean {
            if colour.len() != COLOUR_DIM || colour.iter().any(|x| !x.is_finite()) {
                return Err(err(format!(
                    "its colour mean is not {COLOUR_DIM} finite values"
                )));
            }
        }
        Ok(calibration)
    }

    /// Writes the file atomically (a temporary file, then a rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, path)
    }
}

/// `v` scaled to unit length (unchanged when it is all zeros).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm < MIN_NORM {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_vectors_have_unit_length_and_zeros_stay_zero() {
        let v = normalised(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalised(&[0.0, 0.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn centring_spreads_vectors_that_share_a_common_direction() {
        // Two unit vectors 0.9 alike, both leaning towards the mean.
        let a = normalised(&[1.0, 0.3, 0.0]);
        let b = normalised(&[1.0, 0.0, 0.3]);
        let mean = normalised(&[1.0, 0.15, 0.15]);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!(dot(&a, &b) > 0.9);
        let (ca, cb) = (centred(&a, &mean), centred(&b, &mean));
        assert!((dot(&ca, &ca) - 1.0).abs() < 1e-5);
        assert!(dot(&ca, &cb) < 0.0, "{}", dot(&ca, &cb));
    }

    #[test]
    fn colour_is_appended_with_its_weight_and_keeps_unit_length() {
        use std::sync::Arc;
        use std::time::Duration;
        // A 20×40 frame, red above and blue below.
        let rgb: Vec<u8> = (0..40)
            .flat_map(|y| {
                let px = if y < 20 { [200, 20, 20] } else { [20, 20, 200] };
                std::iter::repeat_n(px, 20).flatten()
            })
            .collect();
        let frame = Frame::new(Arc::from("cam"), 0, Duration::ZERO, 20, 40, rgb);
        let bbox = BBox::new(0.0, 0.0, 20.0, 40.0);
        let signature = colour_signature(&frame, &bbox);
        let cue = ColourCue {
            weight: 0.25,
            mean: vec![0.0; COLOUR_DIM],
        };
        let features = normalised(&[1.0, 2.0, 2.0]);
        let mut fused = features.clone();
        cue.append(&mut fused, &frame, &bbox);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert_eq!(fused.len(), 3 + COLOUR_DIM);
        assert!((dot(&fused, &fused) - 1.0).abs() < 1e-5);
        // Same colours, orthogonal features: the similarity is the weight.
        let mut other = vec![0.0, 1.0, -1.0];
        other = normalised(&other);
        assert!(dot(&features, &other).abs() < 1e-6);
        cue.append(&mut other, &frame, &bbox);
        assert!((dot(&fused, &other) - 0.25).abs() < 1e-5);
        assert!((dot(&fused[3..], &signature) / 0.5 - 1.0).abs() < 1e-5);
    }

    #[test]
    fn calibration_files_round_trip_and_bad_ones_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.person-mean.json");
        let calibration = Calibration {
            model: "m.onnx".into(),
            model_sha256: Some("ab".repeat(32)),
            source: "test".into(),
            crops: 2,
            mean: vec![0.5, 0.5],
            colour_mean: None,
        };
        calibration.write(&path).unwrap();
        assert_eq!(Calibration::read(&path, 2).unwrap(), calibration);
        let wrong = Calibration::read(&path, 3).unwrap_err().to_string();
        assert!(
            wrong.contains("2 values") && wrong.contains("streamer models calibrate"),
            "{wrong}"
        );
        let missing = Calibration::read(&dir.path().join("nope.json"), 2).unwrap_err();
        assert!(
            missing.to_string().contains("streamer models calibrate"),
            "{missing}"
        );
        std::fs::write(&path, "{}").unwrap();
        assert!(Calibration::read(&path, 2)
            .unwrap_err()
            .to_string()
            .contains("not a calibration file"));
    }
}
