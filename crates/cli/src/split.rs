//! `streamer replay --split`: virtual cameras cut from one wide input, so a
//! single recording can stand in for several cameras with overlapping views
//! (how `fixtures/identity/` builds its two-camera replay from vtest).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use streamer_core::Frame;

/// The cameras to cut. Other top-level keys are ignored, so an identity
/// fixture doubles as its own replay manifest.
#[derive(Debug, Deserialize)]
pub struct SplitManifest {
    pub cameras: Vec<VirtualCamera>,
}

/// One rectangle of the input, in pixels.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualCamera {
    pub name: String,
    pub x: u32,
    #[serde(default)]
    pub y: u32,
    pub width: u32,
    /// Default: from `y` to the bottom of the input.
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(skip)]
    tag: Option<Arc<str>>,
}

impl SplitManifest {
    /// Reads a JSON (`.json`) or TOML manifest and checks it.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --split {}", path.display()))?;
        let mut manifest: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(anyhow::Error::from)
        } else {
            toml::from_str(&text).map_err(anyhow::Error::from)
        }
        .with_context(|| {
            format!(
                "--split {}: expected `cameras`, a list of {{ name, x, y, width, height }}",
                path.display()
            )
        })?;
        manifest
            .check()
            .with_context(|| format!("--split {}", path.display()))?;
        for camera in &mut manifest.cameras {
            camera.tag = Some(Arc::from(camera.name.as_str()));
        }
        Ok(manifest)
    }

    fn check(&self) -> Result<()> {
        if self.cameras.is_empty() {
            bail!("`cameras` is empty: list at least one {{ name, x, width }}");
        }
        let mut names = HashSet::new();
        for (i, c) in self.cameras.iter().enumerate() {
            if c.name.trim().is_empty() {
                bail!("cameras[{i}].name is empty: give each virtual camera a name");
            }
            if !names.insert(c.name.as_str()) {
                bail!(
                    "cameras[{i}].name {:?} is used twice: names must be unique",
                    c.name
                );
            }
            if c.width == 0 || c.height == Some(0) {
                bail!(
                    "cameras[{i}] ({}): width and height must be at least 1",
                    c.name
                );
            }
        }
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.cameras.iter().map(|c| c.name.as_str())
    }

    /// One frame per virtual camera; an error if a rectangle does not fit.
    pub fn cut(&self, frame: &Frame) -> Result<Vec<Frame>> {
        self.cameras
            .iter()
            .map(|c| {
                let height = c.height.unwrap_or(frame.height.saturating_sub(c.y));
                let tag = c.tag.clone().unwrap_or_else(|| Arc::from(c.name.as_str()));
                frame
                    .region(tag, c.x, c.y, c.width, height)
                    .with_context(|| {
                        format!(
                            "--split camera {}: {}x{} at ({}, {}) does not fit the {}x{} input",
                            c.name, c.width, height, c.x, c.y, frame.width, frame.height
                        )
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn manifest(text: &str, ext: &str) -> Result<SplitManifest> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("split.{ext}"));
        std::fs::write(&path, text).unwrap();
        SplitManifest::load(&path)
    }

    #[test]
    fn the_identity_fixture_is_a_split_manifest() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/identity/vtest-two-cameras.json");
        let split = SplitManifest::load(&path).unwrap();
        assert_eq!(split.names().collect::<Vec<_>>(), ["west", "east"]);
        let frame = Frame::new(
            Arc::from("vtest"),
            0,
            Duration::ZERO,
            768,
            576,
            vec![0; 768 * 576 * 3],
        );
        let cut = split.cut(&frame).unwrap();
        assert_eq!(
            (&*cut[1].camera, cut[1].width, cut[1].height),
            ("east", 480, 576)
        );
    }

    #[test]
    fn mistakes_name_the_camera_and_the_fix() {
        let twice = manifest(
            "[[cameras]]\nname = \"a\"\nx = 0\nwidth = 2\n[[cameras]]\nname = \"a\"\nx = 2\nwidth = 2\n",
            "toml",
        );
        assert!(format!("{:#}", twice.unwrap_err()).contains("cameras[1].name \"a\" is used twice"));
        let typo = manifest("[[cameras]]\nname = \"a\"\nx = 0\nwidht = 2\n", "toml");
        assert!(format!("{:#}", typo.unwrap_err()).contains("widht"));
        let wide = manifest("[[cameras]]\nname = \"a\"\nx = 3\nwidth = 2\n", "toml").unwrap();
        let frame = Frame::new(Arc::from("in"), 0, Duration::ZERO, 4, 1, vec![0; 12]);
        let err = format!("{:#}", wide.cut(&frame).unwrap_err());
        assert!(
            err.contains("camera a: 2x1 at (3, 0) does not fit the 4x1 input"),
            "{err}"
        );
    }
}
