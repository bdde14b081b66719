//! Person embeddings: crop each box (with a margin), resize and normalise
//! it as the model's manifest entry says, run the crops as one batch and
//! return L2-normalised vectors that compare by cosine (a dot product).

use std::path::{Path, PathBuf};

use ort::session::Session;
use serde::{Deserialize, Serialize};
use streamer_core::layout::{EmbedderLayout, TensorOrder};
use streamer_core::{BBox, Frame};

use crate::detector::{check_image_input, run_session};
use crate::preprocess::{fill_crop, Crop};
use crate::{OrtRuntime, VisionError};

/// Context added around each box before cropping, as a fraction of the box's
/// width (left and right) and height (top and bottom).
pub const DEFAULT_MARGIN: f32 = 0.1;

/// Most crops sent to the model in one run; more boxes make more runs, so a
/// crowded frame cannot allocate an unbounded input tensor.
pub const MAX_BATCH: usize = 32;

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
    margin: f32,
    /// Mean person embedding taken off before normalising (see
    /// [`EmbedderLayout::centre`]).
    centre: Option<Vec<f32>>,
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
        let centre = match &layout.centre {
            Some(file) => Some(Calibration::read(&calibration_path(path, file), layout.dim)?.mean),
            None => None,
        };

        Ok(Self {
            session,
            layout: layout.clone(),
            input_name,
            output_name,
            dynamic_batch,
            margin: DEFAULT_MARGIN,
            centre,
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

    /// Length of each embedding.
    pub fn dim(&self) -> usize {
        self.layout.dim
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
        let per_run = if self.dynamic_batch { MAX_BATCH } else { 1 };
        let mut out = Vec::with_capacity(boxes.len());
        for chunk in boxes.chunks(per_run) {
            self.embed_batch(frame, chunk, &mut out)?;
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
    /// What it was measured on (footage and time range).
    pub source: String,
    /// Person crops averaged.
    pub crops: usize,
    /// Mean of their L2-normalised embeddings.
    pub mean: Vec<f32>,
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
    fn calibration_files_round_trip_and_bad_ones_name_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.person-mean.json");
        let calibration = Calibration {
            model: "m.onnx".into(),
            source: "test".into(),
            crops: 2,
            mean: vec![0.5, 0.5],
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
