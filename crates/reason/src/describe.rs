//! Turning a camera frame into a sentence for the triage step.
//!
//! With a vision-language model the frame itself is described. Without one,
//! the detector's labels and box positions are turned into facts and the
//! language model words them; the description then says that it comes from
//! detector labels, so nobody mistakes it for something a model saw.

use std::collections::BTreeMap;

use serde::Serialize;
use streamer_core::Detection;

use crate::{
    CancelToken, ChatBackend, ChatMessage, ChatRequest, ImageInput, ReasonError, Sampling, Timing,
};

/// What the describer is told about one moment on one camera.
#[derive(Clone, Debug)]
pub struct Scene {
    pub camera: String,
    /// Local time as people read it, e.g. "Tue 2026-11-17 23:41".
    pub time: String,
    /// The frame, when there is one to show a vision model.
    pub image: Option<ImageInput>,
    /// Frame size in pixels, for placing boxes.
    pub width: u32,
    pub height: u32,
    pub detections: Vec<Detection>,
}

/// Where a description came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DescriptionSource {
    /// A vision-language model looked at the frame.
    VisionModel,
    /// The language model worded the detector's labels; nothing saw the frame.
    DetectorLabels,
}

#[derive(Clone, Debug, Serialize)]
pub struct Description {
    pub text: String,
    pub source: DescriptionSource,
    #[serde(skip)]
    pub timing: Timing,
}

/// Prefix of every description built from detector labels.
pub const LABELS_NOTE: &str = "[from detector labels, no vision model]";

const VLM_PROMPT: &str = "You are the eyes of a home security system. Describe this \
camera frame in one or two plain sentences: how many people, what they are doing and \
carrying, vehicles, animals, and anything unusual (open doors, tools, masks, smoke). \
Say only what is visible.";

const LABELS_PROMPT: &str = "You write one-sentence descriptions of security camera \
detections. Use only the facts given; do not invent clothing, actions or objects. \
Reply with the sentence only.";

/// Describes scenes with a backend: by looking when it can see, from the
/// detector's labels when it cannot.
pub struct Describer<'a> {
    backend: &'a dyn ChatBackend,
    max_tokens: u32,
    deadline: Option<std::time::Instant>,
    cancel: Option<CancelToken>,
}

impl<'a> Describer<'a> {
    pub fn new(backend: &'a dyn ChatBackend) -> Self {
        Self {
            backend,
            max_tokens: 96,
            deadline: None,
            cancel: None,
        }
    }

    /// Gives up with [`ReasonError::DeadlineExpired`] at `deadline`.
    pub fn with_deadline(mut self, deadline: std::time::Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Gives up with [`ReasonError::Cancelled`] once `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = Some(cancel);
        self
    }

    pub fn describe(&self, scene: &Scene) -> Result<Description, ReasonError> {
        match (&scene.image, self.backend.sees_images()) {
            (Some(image), true) => self.look(scene, image),
            _ => self.word_labels(scene),
        }
    }

    fn look(&self, scene: &Scene, image: &ImageInput) -> Result<Description, ReasonError> {
        let reply = self.backend.chat(
            &ChatRequest {
                messages: vec![
                    ChatMessage::system(VLM_PROMPT),
                    ChatMessage::user(format!("Camera: {}. Time: {}.", scene.camera, scene.time)),
                ],
                sampling: Sampling::greedy(self.max_tokens),
                images: vec![image.clone()],
                deadline: self.deadline,
                cancel: self.cancel.clone(),
                ..ChatRequest::default()
            },
            &mut |_| {},
        )?;
        Ok(Description {
            text: one_paragraph(&reply.content),
            source: DescriptionSource::VisionModel,
            timing: reply.timing,
        })
    }

    fn word_labels(&self, scene: &Scene) -> Result<Description, ReasonError> {
        let facts = label_facts(scene);
        let reply = self.backend.chat(
            &ChatRequest {
                messages: vec![
                    ChatMessage::system(LABELS_PROMPT),
                    ChatMessage::user(format!(
                        "Camera: {}. Time: {}. Detections: {facts}",
                        scene.camera, scene.time
                    )),
                ],
                sampling: Sampling::greedy(self.max_tokens),
                deadline: self.deadline,
                cancel: self.cancel.clone(),
                ..ChatRequest::default()
            },
            &mut |_| {},
        )?;
        let worded = one_paragraph(&reply.content);
        // A model that says nothing still leaves the facts.
        let text = if worded.is_empty() { facts } else { worded };
        Ok(Description {
            text: format!("{LABELS_NOTE} {text}"),
            source: DescriptionSource::DetectorLabels,
            timing: reply.timing,
        })
    }
}

/// The detector's output as short facts: counts per label, then where each
/// person is ("left, near") with the detector's confidence.
pub fn label_facts(scene: &Scene) -> String {
    if scene.detections.is_empty() {
        return "nothing detected.".into();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &scene.detections {
        *counts.entry(d.label.as_str()).or_default() += 1;
    }
    let counted: Vec<String> = counts
        .iter()
        .map(|(label, n)| match n {
            1 => format!("1 {label}"),
            n => format!("{n} {}", plural(label)),
        })
        .collect();
    let placed: Vec<String> = scene
        .detections
        .iter()
        .filter(|d| d.is_person())
        .map(|d| {
            format!(
                "person {} ({:.0}% sure)",
                placement(d, scene.width, scene.height),
                d.score * 100.0
            )
        })
        .collect();
    let mut facts = format!("{}.", counted.join(", "));
    if !placed.is_empty() {
        facts.push_str(&format!(" {}.", placed.join("; ")));
    }
    facts
}

fn plural(label: &str) -> String {
    match label {
        "person" => "people".into(),
        "bus" => "buses".into(),
        "sheep" => "sheep".into(),
        l if l.ends_with('s') => l.into(),
        l => format!("{l}s"),
    }
}

/// "left, near": horizontal third of the box centre, and distance from how
/// much of the frame height the box fills.
fn placement(d: &Detection, width: u32, height: u32) -> String {
    let cx = (d.bbox.x1 + d.bbox.x2) / 2.0 / width.max(1) as f32;
    let side = if cx < 1.0 / 3.0 {
        "left"
    } else if cx < 2.0 / 3.0 {
        "centre"
    } else {
        "right"
    };
    let fill = d.bbox.height() / height.max(1) as f32;
    let distance = if fill > 0.5 {
        "close to the camera"
    } else if fill > 0.2 {
        "mid-distance"
    } else {
        "far away"
    };
    format!("at {side}, {distance}")
}

fn one_paragraph(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamer_core::BBox;

    fn det(label: &str, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score: 0.87,
            bbox: BBox::new(x1, y1, x2, y2),
        }
    }

    #[test]
    fn facts_count_labels_and_place_people() {
        let scene = Scene {
            camera: "driveway".into(),
            time: "Tue 23:41".into(),
            image: None,
            width: 900,
            height: 600,
            detections: vec![
                det("person", 10.0, 100.0, 110.0, 500.0),
                det("person", 700.0, 300.0, 740.0, 380.0),
                det("car", 300.0, 200.0, 600.0, 400.0),
            ],
        };
        assert_eq!(
            label_facts(&scene),
            "1 car, 2 people. person at left, close to the camera (87% sure); \
             person at right, far away (87% sure)."
        );
        let empty = Scene {
            detections: vec![],
            ..scene
        };
        assert_eq!(label_facts(&empty), "nothing detected.");
    }
}
