//! Person embeddings: crop each box (with a margin), resize and normalise
//! it as the model's manifest entry says, run the crops as one batch and
//! return L2-normalised vectors that compare by cosine (a dot product).

use std::path::{Path, PathBuf};

use ort::session::Session;
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

        Ok(Self {
            session,
            layout: layout.clone(),
            input_name,
            output_name,
            dynamic_batch,
            margin: DEFAULT_MARGIN,
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
                out.extend(data.chunks_exact(dim).map(normalised));
                Ok(())
            },
        )
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
}
