//! How a model wants its image input and how to read its output.
//!
//! These descriptions live in the model manifest (`models/manifest.toml`) and
//! in user configs for models streamer does not ship, so a new export is a
//! few lines of TOML rather than new code.

use serde::{Deserialize, Serialize};

/// Order of the axes of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorOrder {
    /// `[batch, height, width, channels]` (TensorFlow exports).
    Nhwc,
    /// `[batch, channels, height, width]` (PyTorch exports).
    Nchw,
}

/// How a frame is fitted to the model's input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resize {
    /// Scale each axis independently to fill the input (distorts aspect).
    #[default]
    Stretch,
    /// Scale uniformly to fit and pad the rest with grey (Ultralytics style).
    Letterbox,
}

/// The image input of a vision model. A pixel value `v` (0–255) becomes
/// `(v * scale - mean[c]) / std[c]`, in RGB channel order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// Input tensor name; the model's first input when absent.
    #[serde(default)]
    pub name: Option<String>,
    pub order: TensorOrder,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub resize: Resize,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default = "zeros")]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
}

/// The two detector output layouts found in the wild.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorOutput {
    /// `[1, N, 6]` rows of `x1, y1, x2, y2, score, class` in input pixels:
    /// CenterNet and end-to-end YOLOv10/YOLO26 exports.
    Decoded,
    /// `[1, 4 + C, A]`: per anchor `cx, cy, w, h` then `C` class scores, in
    /// input pixels, before NMS: Ultralytics YOLOv8/YOLO11 exports.
    YoloRaw,
}

/// Everything needed to run an object detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorLayout {
    pub input: ImageInput,
    pub output: DetectorOutput,
    /// Output tensor name; the model's first output when absent.
    #[serde(default)]
    pub output_name: Option<String>,
    /// Label set: `coco80` or a comma-separated list of class names.
    #[serde(default = "coco80")]
    pub labels: String,
    /// Detections scoring below this are dropped.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// Boxes of one class overlapping more than this are merged by NMS.
    #[serde(default = "default_nms_iou")]
    pub nms_iou: f32,
}

/// Everything needed to run an image embedder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderLayout {
    pub input: ImageInput,
    #[serde(default)]
    pub output_name: Option<String>,
    /// Length of one embedding vector.
    pub dim: usize,
    /// A file next to the model holding the mean embedding of person crops
    /// (written by `streamer models calibrate`). When set, each embedding
    /// has this mean taken off before it is normalised: generic image
    /// features of people all point into one narrow cone, and centring
    /// spreads them so that cosine similarity tells people apart.
    #[serde(default)]
    pub centre: Option<String>,
    /// How much clothing colour weighs against the model's features, from 0
    /// (features alone) to 1. Above 0, each vector is the model's centred
    /// features scaled by √(1 − w) followed by the box's centred colour
    /// signature scaled by √w, so cosine similarity is
    /// `(1 − w) · features + w · colour`. Needs a `centre` calibration
    /// (which also holds the mean colour signature). A generic ImageNet
    /// model gains from it; a re-identification model would not.
    #[serde(default)]
    pub colour_weight: f32,
}

fn one() -> f32 {
    1.0
}
fn zeros() -> [f32; 3] {
    [0.0; 3]
}
fn ones() -> [f32; 3] {
    [1.0; 3]
}
fn coco80() -> String {
    "coco80".into()
}
fn default_score_threshold() -> f32 {
    0.3
}
fn default_nms_iou() -> f32 {
    0.5
}
