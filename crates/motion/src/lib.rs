//! The motion gate: the cheap stage in front of detection.
//!
//! Each camera keeps a small greyscale copy of its scene's background (a
//! running average, about 160 cells across) and a per-cell noise level. A
//! frame is compared with it cell by cell: a cell has changed when it
//! differs from the background by more than its own noise allows (never
//! less than `threshold` grey levels), after the frame's overall
//! brightness and contrast have been normalised to the background's (so
//! auto exposure and IR switching read as no change). Cells under a mask
//! polygon are ignored. The
//! frame has motion when the changed cells cover at least `min_area` of
//! the watched ones.
//!
//! A cell that differs from the background but holds still from frame to
//! frame for a second is a static change, not motion (a bag put down, or
//! the bare floor where somebody stood long enough to be half learnt: a
//! "ghost"); it is taken into the background at once instead of keeping
//! the gate open while the running average catches up.
//!
//! A change across most of the picture at once (an IR cut filter
//! switching, a cloud, a light turned on) is not motion: the background is
//! reset to the new picture, so the gate closes again on the next frame.
//!
//! [`CameraGate`] adds the policy (and [`MotionGate`] keeps one per
//! camera, for a single thread serving several): the first frame of a camera is always
//! detected, a frame with motion is detected, and while a visit is open on
//! the camera a frame is re-checked every `detect_interval` even without
//! motion (a person standing still is re-confirmed and the visit stays
//! open). Everything is judged on the frame's own time, so the gate is
//! pure and replays the same way every time.
//!
//! The gate reads either an RGB [`Frame`] or a luma plane ([`GreyView`]):
//! a live camera's decoder makes YUV pictures, whose first plane already
//! is the picture in grey, so a frame the gate keeps from detection is
//! never converted to RGB at all.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use streamer_core::Frame;

/// Cells across the small greyscale copy (fewer when the frame is smaller).
const GRID_WIDTH: u32 = 160;
/// How fast the background follows cells that did not change.
const LEARN_STILL: f32 = 0.05;
/// How fast it follows changed cells (something that stops moving becomes
/// background in about 20 s at 5 fps).
const LEARN_MOVING: f32 = 0.01;
/// A cell's change counts when it exceeds this many times its noise level.
const NOISE_FACTOR: f32 = 3.0;
/// A cell that differs from the background but has not changed from frame
/// to frame for this long is a static change, not motion: something left
/// behind, or the empty floor where somebody stood while the background
/// learnt them (a "ghost"). It is taken into the background at once.
const STATIC_AFTER_MS: u64 = 1000;

/// What the gate reads of a picture: its size, its time and its grey
/// levels.
#[derive(Clone, Copy, Debug)]
pub enum GreyView<'a> {
    /// A packed RGB frame; its grey is luma with BT.601 weights.
    Rgb(&'a Frame),
    /// A plane of luma, such as the first plane of a decoder's YUV picture.
    Luma(LumaPlane<'a>),
}

impl<'a> From<&'a Frame> for GreyView<'a> {
    fn from(frame: &'a Frame) -> Self {
        GreyView::Rgb(frame)
    }
}

impl GreyView<'_> {
    fn size(&self) -> (u32, u32) {
        match self {
            GreyView::Rgb(frame) => (frame.width, frame.height),
            GreyView::Luma(plane) => (plane.width, plane.height),
        }
    }

    fn pts(&self) -> Duration {
        match self {
            GreyView::Rgb(frame) => frame.pts,
            GreyView::Luma(plane) => plane.pts,
        }
    }

    fn pts_ms(&self) -> u64 {
        self.pts().as_millis() as u64
    }
}

/// A plane of luma, one byte a pixel, rows `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct LumaPlane<'a> {
    data: &'a [u8],
    stride: usize,
    width: u32,
    height: u32,
    pts: Duration,
    limited_range: bool,
}

impl<'a> LumaPlane<'a> {
    /// `None` when `data` is too short for `height` rows of `width` pixels
    /// `stride` bytes apart, or the picture is empty. `limited_range`: luma
    /// spans 16-235 (video range, as cameras send it), and is stretched to
    /// 0-255 so that it reads like the luma of an RGB frame.
    pub fn new(
        data: &'a [u8],
        stride: usize,
        (width, height): (u32, u32),
        pts: Duration,
        limited_range: bool,
    ) -> Option<Self> {
        let fits = width > 0
            && height > 0
            && stride >= width as usize
            && data.len() >= stride * (height as usize - 1) + width as usize;
        fits.then_some(Self {
            data,
            stride,
            width,
            height,
            pts,
            limited_range,
        })
    }
}

/// One camera's motion settings (`[cameras.<name>.motion]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MotionConfig {
    /// Gate detection on motion; off detects every sampled frame.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Share of the watched picture (0–1) that must change.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Smallest grey-level change (0–255) a cell counts, whatever its noise.
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// Share of the watched picture (0–1) changing at once that is taken
    /// for a lighting change: the background resets instead.
    #[serde(default = "default_global_change")]
    pub global_change: f32,
    /// While a visit is open on the camera, detect at least this often
    /// without motion (seconds).
    #[serde(default = "default_detect_interval_s")]
    pub detect_interval_s: f64,
    /// Areas to ignore (a tree, a road, a timestamp overlay): polygons in
    /// normalised `[x, y]` coordinates, 0–1 from the top-left corner.
    #[serde(default)]
    pub mask: Vec<Vec<[f32; 2]>>,
}

fn default_enabled() -> bool {
    true
}
fn default_min_area() -> f32 {
    0.002
}
fn default_threshold() -> u8 {
    15
}
fn default_global_change() -> f32 {
    0.5
}
fn default_detect_interval_s() -> f64 {
    5.0
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            min_area: default_min_area(),
            threshold: default_threshold(),
            global_change: default_global_change(),
            detect_interval_s: default_detect_interval_s(),
            mask: Vec::new(),
        }
    }
}

impl MotionConfig {
    /// Problems with these settings, each prefixed with `prefix` (the key
    /// path of this section) and saying what would be accepted.
    pub fn problems(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.min_area > 0.0 && self.min_area < 1.0) {
            problems.push(format!(
                "{prefix}.min_area: {} is not a share of the picture; use a number between 0 and 1 such as 0.002",
                self.min_area
            ));
        }
        if !(self.global_change > self.min_area && self.global_change <= 1.0) {
            problems.push(format!(
                "{prefix}.global_change: {} must be above min_area and at most 1 (default 0.5)",
                self.global_change
            ));
        }
        if !(self.detect_interval_s.is_finite() && self.detect_interval_s > 0.0) {
            problems.push(format!(
                "{prefix}.detect_interval_s: {} must be a positive number of seconds",
                self.detect_interval_s
            ));
        }
        for (i, polygon) in self.mask.iter().enumerate() {
            if polygon.len() < 3 {
                problems.push(format!(
                    "{prefix}.mask[{i}]: a polygon needs at least 3 points, it has {}",
                    polygon.len()
                ));
            }
            for (j, [x, y]) in polygon.iter().enumerate() {
                if !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y) {
                    problems.push(format!(
                        "{prefix}.mask[{i}][{j}]: [{x}, {y}] is outside the picture; coordinates are 0-1 from the top-left corner"
                    ));
                }
            }
        }
        problems
    }

    fn detect_interval(&self) -> Duration {
        Duration::from_secs_f64(self.detect_interval_s.max(0.0))
    }
}

/// What the detector made of one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Motion {
    /// The camera's first frame (or first at a new size): it becomes the
    /// background.
    First,
    /// Changed cells cover `area` of the watched picture, at least
    /// `min_area`.
    Moving {
        /// Share of the watched picture that changed.
        area: f32,
    },
    /// Too little changed.
    Still {
        /// Share of the watched picture that changed.
        area: f32,
    },
    /// Most of the picture changed at once: the background was reset.
    LightingChange {
        /// Share of the watched picture that changed.
        area: f32,
    },
}

/// Background model of one camera.
#[derive(Debug)]
pub struct MotionDetector {
    config: MotionConfig,
    /// Frame size the grid was built for.
    frame_size: (u32, u32),
    grid: (u32, u32),
    /// Cells outside every mask polygon.
    watched: Vec<bool>,
    watched_count: usize,
    background: Vec<f32>,
    noise: Vec<f32>,
    grey: Vec<f32>,
    /// The previous frame's grey cells, and since when (frame time, ms)
    /// each cell has stayed as it was from frame to frame.
    previous: Vec<f32>,
    steady_since_ms: Vec<u64>,
    /// Per-frame scratch, kept to spare an allocation a frame.
    changed: Vec<bool>,
    diffs: Vec<f32>,
}

impl MotionDetector {
    /// A detector with no background yet.
    pub fn new(config: MotionConfig) -> Self {
        Self {
            config,
            frame_size: (0, 0),
            grid: (0, 0),
            watched: Vec::new(),
            watched_count: 0,
            background: Vec::new(),
            noise: Vec::new(),
            grey: Vec::new(),
            previous: Vec::new(),
            steady_since_ms: Vec::new(),
            changed: Vec::new(),
            diffs: Vec::new(),
        }
    }

    /// Compares `picture` with the background and learns from it.
    pub fn observe<'a>(&mut self, picture: impl Into<GreyView<'a>>) -> Motion {
        // The work is in a function of its own that is not generic, so that
        // it is compiled (and optimised) here, not in the caller's crate.
        self.observe_view(picture.into())
    }

    fn observe_view(&mut self, frame: GreyView<'_>) -> Motion {
        if self.frame_size != frame.size() || self.background.is_empty() {
            self.start(frame);
            return Motion::First;
        }
        small_grey(frame, self.grid, &mut self.grey);
        if self.watched_count == 0 {
            return Motion::Still { area: 0.0 };
        }
        // Brightness and contrast of the whole picture taken out (auto
        // exposure, IR switching): both sides are normalised to zero mean
        // and unit spread over the watched cells, and the difference is
        // read back in the background's grey levels.
        let (g_mean, g_spread) = mean_spread(&self.grey, &self.watched);
        let (b_mean, b_spread) = mean_spread(&self.background, &self.watched);
        let gain = b_spread / g_spread.max(1.0);
        let floor = f32::from(self.config.threshold);
        let now_ms = frame.pts_ms();
        let mut changed_cells = 0usize;
        let mut changed = std::mem::take(&mut self.changed);
        let mut diffs = std::mem::take(&mut self.diffs);
        changed.clear();
        changed.resize(self.grey.len(), false);
        diffs.clear();
        diffs.resize(self.grey.len(), 0.0);
        for (i, c) in changed.iter_mut().enumerate() {
            if !self.watched[i] {
                continue;
            }
            let expected = (self.grey[i] - g_mean) * gain + b_mean;
            let diff = expected - self.background[i];
            diffs[i] = diff;
            let allowed = floor.max(NOISE_FACTOR * self.noise[i]);
            if (self.grey[i] - self.previous[i]).abs() > allowed {
                self.steady_since_ms[i] = now_ms;
            }
            if diff.abs() > allowed {
                if now_ms.saturating_sub(self.steady_since_ms[i]) >= STATIC_AFTER_MS {
                    // A static change: background from now on.
                    self.background[i] = expected;
                    diffs[i] = 0.0;
                } else {
                    *c = true;
                    changed_cells += 1;
                }
            }
        }
        self.previous.copy_from_slice(&self.grey);
        let area = changed_cells as f32 / self.watched_count as f32;
        if area >= self.config.global_change {
            self.background.copy_from_slice(&self.grey);
            self.steady_since_ms.fill(now_ms);
            (self.changed, self.diffs) = (changed, diffs);
            return Motion::LightingChange { area };
        }
        // The background follows the picture as it is now (so a lasting
        // change of lighting is learnt), the noise level the normalised
        // difference.
        for (i, moving) in changed.iter().enumerate() {
            let rate = if *moving { LEARN_MOVING } else { LEARN_STILL };
            self.background[i] += rate * (self.grey[i] - self.background[i]);
            if !moving {
                self.noise[i] += LEARN_STILL * (diffs[i].abs() - self.noise[i]);
            }
        }
        (self.changed, self.diffs) = (changed, diffs);
        if area >= self.config.min_area {
            Motion::Moving { area }
        } else {
            Motion::Still { area }
        }
    }

    fn start(&mut self, frame: GreyView<'_>) {
        let (frame_width, frame_height) = frame.size();
        let width = GRID_WIDTH.min(frame_width.max(1));
        let height = ((u64::from(frame_height) * u64::from(width)) / u64::from(frame_width.max(1)))
            .clamp(1, u64::from(frame_height.max(1))) as u32;
        self.frame_size = (frame_width, frame_height);
        self.grid = (width, height);
        self.watched = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| {
                let point = [
                    (x as f32 + 0.5) / width as f32,
                    (y as f32 + 0.5) / height as f32,
                ];
                !self.config.mask.iter().any(|p| inside(point, p))
            })
            .collect();
        self.watched_count = self.watched.iter().filter(|w| **w).count();
        small_grey(frame, self.grid, &mut self.grey);
        self.background = self.grey.clone();
        self.previous = self.grey.clone();
        self.steady_since_ms = vec![frame.pts_ms(); self.grey.len()];
        self.noise = vec![f32::from(self.config.threshold) / NOISE_FACTOR; self.grey.len()];
    }
}

/// The picture as a `grid` of grey cells, each the mean luma of a 3x3
/// sample of its pixels.
fn small_grey(picture: GreyView<'_>, (gw, gh): (u32, u32), out: &mut Vec<f32>) {
    out.clear();
    let (w, h) = picture.size();
    let (w, h, gw, gh) = (w as usize, h as usize, gw as usize, gh as usize);
    // Where the samples fall, worked out once a frame rather than with two
    // divisions for each of the nine samples of each cell.
    let xs = (0..gw * 3).map(|i| (i * w / (gw * 3)).min(w - 1));
    let ys = (0..gh * 3).map(|i| (i * h / (gh * 3)).min(h - 1));
    match picture {
        GreyView::Rgb(frame) => {
            let columns: Vec<usize> = xs.map(|x| x * 3).collect();
            let rows: Vec<usize> = ys.map(|y| y * w * 3).collect();
            let luma = |line: &[u8], c: usize| {
                (77 * u32::from(line[c])
                    + 150 * u32::from(line[c + 1])
                    + 29 * u32::from(line[c + 2]))
                    >> 8
            };
            cell_means(&frame.rgb, (&rows, &columns), luma, |grey| grey, out);
        }
        GreyView::Luma(plane) => {
            let columns: Vec<usize> = xs.collect();
            let rows: Vec<usize> = ys.map(|y| y * plane.stride).collect();
            let stretch = |grey: f32| {
                if plane.limited_range {
                    ((grey - 16.0) * (255.0 / 219.0)).clamp(0.0, 255.0)
                } else {
                    grey
                }
            };
            cell_means(
                plane.data,
                (&rows, &columns),
                |line, c| u32::from(line[c]),
                stretch,
                out,
            );
        }
    }
}

/// Appends to `out` the mean of `sample` over each cell's three `rows` by
/// three `columns` (byte offsets), passed through `finish`.
fn cell_means(
    data: &[u8],
    (rows, columns): (&[usize], &[usize]),
    sample: impl Fn(&[u8], usize) -> u32,
    finish: impl Fn(f32) -> f32,
    out: &mut Vec<f32>,
) {
    let mut sums = vec![0u32; columns.len() / 3];
    for cell_rows in rows.chunks_exact(3) {
        sums.fill(0);
        for &row in cell_rows {
            let line = &data[row..];
            for (sum, cell_columns) in sums.iter_mut().zip(columns.chunks_exact(3)) {
                *sum += cell_columns.iter().map(|&c| sample(line, c)).sum::<u32>();
            }
        }
        out.extend(sums.iter().map(|&sum| finish(sum as f32 / 9.0)));
    }
}

/// Mean and standard deviation of the watched cells.
fn mean_spread(values: &[f32], watched: &[bool]) -> (f32, f32) {
    let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0usize);
    for (v, w) in values.iter().zip(watched) {
        if *w {
            sum += f64::from(*v);
            sq += f64::from(*v) * f64::from(*v);
            n += 1;
        }
    }
    let n = n.max(1) as f64;
    let mean = sum / n;
    let var = (sq / n - mean * mean).max(0.0);
    (mean as f32, var.sqrt() as f32)
}

/// Whether `point` lies inside `polygon` (even-odd rule).
fn inside([x, y]: [f32; 2], polygon: &[[f32; 2]]) -> bool {
    let mut inside = false;
    let mut j = polygon.len().wrapping_sub(1);
    for i in 0..polygon.len() {
        let ([xi, yi], [xj, yj]) = (polygon[i], polygon[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Why the gate let a frame through, or did not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GateDecision {
    /// Detect: something moved (or it is the camera's first frame).
    Motion(Motion),
    /// Detect: a visit is open and `detect_interval` has passed.
    Recheck,
    /// Skip detection.
    Closed(Motion),
}

impl GateDecision {
    /// Whether the frame goes on to detection.
    pub fn passes(&self) -> bool {
        !matches!(self, GateDecision::Closed(_))
    }

    /// A short name for logs and JSON lines.
    pub fn as_str(&self) -> &'static str {
        match self {
            GateDecision::Motion(Motion::First) => "first",
            GateDecision::Motion(_) => "motion",
            GateDecision::Recheck => "recheck",
            GateDecision::Closed(Motion::LightingChange { .. }) => "lighting",
            GateDecision::Closed(_) => "still",
        }
    }
}

/// What the gate did on one camera so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GateCounts {
    /// Frames sent on to detection.
    pub passed: u64,
    /// Frames skipped.
    pub gated_out: u64,
    /// Background resets after a lighting change.
    pub lighting_resets: u64,
}

/// The gate of one camera: its background and the re-check policy.
#[derive(Debug)]
pub struct CameraGate {
    detector: MotionDetector,
    interval: Duration,
    last_detect: Option<Duration>,
    counts: GateCounts,
}

impl CameraGate {
    /// A gate with no background yet. With `enabled = false` it passes
    /// every frame.
    pub fn new(config: MotionConfig) -> Self {
        Self {
            interval: config.detect_interval(),
            detector: MotionDetector::new(config),
            last_detect: None,
            counts: GateCounts::default(),
        }
    }

    /// Decides whether `picture` is detected. `visit_open`: someone was
    /// seen on this camera recently (the periodic re-check applies).
    pub fn judge<'a>(
        &mut self,
        picture: impl Into<GreyView<'a>>,
        visit_open: bool,
    ) -> GateDecision {
        // Not generic below, for the reason given at `observe`.
        self.judge_view(picture.into(), visit_open)
    }

    fn judge_view(&mut self, frame: GreyView<'_>, visit_open: bool) -> GateDecision {
        let pts = frame.pts();
        let decision = if !self.detector.config.enabled {
            GateDecision::Motion(Motion::Moving { area: 1.0 })
        } else {
            match self.detector.observe_view(frame) {
                m @ (Motion::First | Motion::Moving { .. }) => GateDecision::Motion(m),
                m => {
                    let due = self
                        .last_detect
                        .is_none_or(|t| pts.saturating_sub(t) >= self.interval);
                    if visit_open && due {
                        GateDecision::Recheck
                    } else {
                        GateDecision::Closed(m)
                    }
                }
            }
        };
        if decision.passes() {
            self.counts.passed += 1;
            self.last_detect = Some(pts);
        } else {
            self.counts.gated_out += 1;
        }
        if matches!(
            decision,
            GateDecision::Closed(Motion::LightingChange { .. })
        ) {
            self.counts.lighting_resets += 1;
        }
        decision
    }

    /// What the gate did so far.
    pub fn counts(&self) -> GateCounts {
        self.counts
    }
}

/// The gate for all cameras: per-camera settings, one background each.
pub struct MotionGate {
    default: MotionConfig,
    per_camera: BTreeMap<String, MotionConfig>,
    cameras: BTreeMap<String, CameraGate>,
}

impl std::fmt::Debug for MotionGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MotionGate")
            .field("cameras", &self.cameras.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl MotionGate {
    /// `default` for cameras not in `per_camera`. A camera whose settings
    /// have `enabled = false` passes every frame.
    pub fn new(default: MotionConfig, per_camera: BTreeMap<String, MotionConfig>) -> Self {
        Self {
            default,
            per_camera,
            cameras: BTreeMap::new(),
        }
    }

    /// Decides whether `frame` is detected. `visit_open`: someone was seen
    /// on this camera recently (the periodic re-check applies).
    pub fn judge(&mut self, frame: &Frame, visit_open: bool) -> GateDecision {
        let (default, per_camera) = (&self.default, &self.per_camera);
        self.cameras
            .entry(frame.camera.to_string())
            .or_insert_with(|| {
                CameraGate::new(per_camera.get(&*frame.camera).unwrap_or(default).clone())
            })
            .judge(frame, visit_open)
    }

    /// The counts of one camera (zero before its first frame).
    pub fn counts(&self, camera: &str) -> GateCounts {
        self.cameras
            .get(camera)
            .map(CameraGate::counts)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// `len` bytes of deterministic noise from `seed`.
    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn small_grey_averages_nine_samples_a_cell() {
        // An odd-sized noisy colour frame, each cell worked out the plain
        // way: nine samples spread over the cell, luma averaged.
        let (w, h, gw, gh) = (203usize, 117usize, 40usize, 23usize);
        let rgb = noise(w * h * 3, 99);
        let frame = Frame::new(Arc::from("cam"), 0, Duration::ZERO, w as u32, h as u32, rgb);
        let mut grey = Vec::new();
        small_grey(GreyView::Rgb(&frame), (gw as u32, gh as u32), &mut grey);
        assert_eq!(grey.len(), gw * gh);
        for (cell, value) in grey.iter().enumerate() {
            let (cx, cy) = (cell % gw, cell / gw);
            let mut sum = 0u32;
            for sy in 0..3 {
                for sx in 0..3 {
                    let y = ((cy * 3 + sy) * h / (gh * 3)).min(h - 1);
                    let x = ((cx * 3 + sx) * w / (gw * 3)).min(w - 1);
                    let p = &frame.rgb[(y * w + x) * 3..][..3];
                    let [r, g, b] = [p[0], p[1], p[2]].map(u32::from);
                    sum += (77 * r + 150 * g + 29 * b) >> 8;
                }
            }
            assert_eq!(*value, sum as f32 / 9.0, "cell {cx},{cy}");
        }
    }

    #[test]
    fn a_video_range_luma_plane_reads_like_the_rgb_it_was_made_from() {
        // The Y plane a decoder would make of a noisy colour frame (BT.601,
        // video range 16-235, rows padded), against the frame itself.
        let (w, h, stride) = (203usize, 117usize, 208usize);
        let rgb = noise(w * h * 3, 7);
        let mut luma = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                let p = &rgb[(y * w + x) * 3..][..3];
                let [r, g, b] = [p[0], p[1], p[2]].map(f32::from);
                luma[y * stride + x] =
                    (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round() as u8;
            }
        }
        let frame = Frame::new(Arc::from("cam"), 0, Duration::ZERO, w as u32, h as u32, rgb);
        let plane = LumaPlane::new(&luma, stride, (w as u32, h as u32), Duration::ZERO, true)
            .expect("the plane fits");
        let (mut from_rgb, mut from_luma) = (Vec::new(), Vec::new());
        small_grey(GreyView::Rgb(&frame), (40, 23), &mut from_rgb);
        small_grey(GreyView::Luma(plane), (40, 23), &mut from_luma);
        assert_eq!(from_rgb.len(), from_luma.len());
        for (cell, (a, b)) in from_rgb.iter().zip(&from_luma).enumerate() {
            assert!(
                (a - b).abs() < 1.5,
                "cell {cell}: {a} from RGB, {b} from luma"
            );
        }
        // A plane too short for its rows is refused, not read past its end.
        assert!(LumaPlane::new(
            &luma[..stride * (h - 1)],
            stride,
            (w as u32, h as u32),
            Duration::ZERO,
            true
        )
        .is_none());
        assert!(LumaPlane::new(&luma, w - 1, (w as u32, h as u32), Duration::ZERO, true).is_none());
    }

    /// A mid-grey scene with a deterministic speckle of noise, and a dark
    /// block (a "person") where asked.
    fn scene(seq: u64, person_at: Option<(u32, u32)>, brightness: i32) -> Frame {
        let (w, h) = (320u32, 240u32);
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let noise = ((x * 7 + y * 13 + seq as u32 * 31) % 5) as i32 - 2;
                let mut v = 120 + (x as i32 / 8) + noise + brightness;
                if let Some((px, py)) = person_at {
                    if (px..px + 20).contains(&x) && (py..py + 50).contains(&y) {
                        v = 30 + brightness;
                    }
                }
                let v = v.clamp(0, 255) as u8;
                rgb.extend_from_slice(&[v, v, v]);
            }
        }
        Frame::new(
            Arc::from("cam"),
            seq,
            Duration::from_millis(seq * 200),
            w,
            h,
            rgb,
        )
    }

    #[test]
    fn an_empty_scene_stays_still_and_a_person_moves_it() {
        let mut d = MotionDetector::new(MotionConfig::default());
        assert_eq!(d.observe(&scene(0, None, 0)), Motion::First);
        for seq in 1..20 {
            assert!(matches!(
                d.observe(&scene(seq, None, 0)),
                Motion::Still { .. }
            ));
        }
        match d.observe(&scene(20, Some((100, 100)), 0)) {
            Motion::Moving { area } => assert!(area > 0.01, "{area}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_static_change_closes_the_gate_after_a_second_and_movement_keeps_it_open() {
        let mut d = MotionDetector::new(MotionConfig::default());
        d.observe(&scene(0, None, 0));
        // A block appears and stays (a bag put down): motion for about a
        // second (frames every 200 ms), then still.
        let moving: Vec<u64> = (1..20)
            .filter(|&seq| {
                matches!(
                    d.observe(&scene(seq, Some((100, 100)), 0)),
                    Motion::Moving { .. }
                )
            })
            .collect();
        assert_eq!(moving, [1, 2, 3, 4, 5], "{moving:?}");
        // Taken away again: the bare floor is a ghost for a second too.
        let ghost: Vec<u64> = (20..40)
            .filter(|&seq| matches!(d.observe(&scene(seq, None, 0)), Motion::Moving { .. }))
            .collect();
        assert_eq!(ghost, [20, 21, 22, 23, 24], "{ghost:?}");
        // A block that keeps moving is motion on every frame.
        for seq in 40..60 {
            let x = 20 + (seq as u32 - 40) * 12;
            assert!(
                matches!(
                    d.observe(&scene(seq, Some((x, 100)), 0)),
                    Motion::Moving { .. }
                ),
                "frame {seq}"
            );
        }
    }

    #[test]
    fn exposure_changes_are_not_motion_and_a_new_picture_resets() {
        let mut d = MotionDetector::new(MotionConfig::default());
        d.observe(&scene(0, None, 0));
        // Brightness and contrast (IR night mode: grey, brighter, flatter)
        // are normalised away.
        assert!(matches!(
            d.observe(&scene(1, None, 40)),
            Motion::Still { .. }
        ));
        let mut night = scene(2, None, 0);
        for v in night.rgb.iter_mut() {
            *v = (u32::from(*v) * 6 / 10 + 80) as u8;
        }
        assert!(matches!(d.observe(&night), Motion::Still { .. }));
        // Most of the picture changing otherwise (the light now falls the
        // other way) resets the background: one frame, then still again.
        let mut turned = scene(3, None, 0);
        for (i, v) in turned.rgb.iter_mut().enumerate() {
            let x = (i / 3) % 320;
            *v = (200 - x / 2) as u8;
        }
        assert!(matches!(d.observe(&turned), Motion::LightingChange { .. }));
        let mut again = turned.clone();
        again.seq = 4;
        assert!(matches!(d.observe(&again), Motion::Still { .. }));
    }

    #[test]
    fn motion_under_a_mask_is_ignored() {
        let config = MotionConfig {
            mask: vec![vec![[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]],
            ..MotionConfig::default()
        };
        let mut d = MotionDetector::new(config);
        d.observe(&scene(0, None, 0));
        assert!(matches!(
            d.observe(&scene(1, Some((40, 100)), 0)),
            Motion::Still { .. }
        ));
        assert!(matches!(
            d.observe(&scene(2, Some((240, 100)), 0)),
            Motion::Moving { .. }
        ));
    }

    #[test]
    fn an_open_visit_is_rechecked_every_interval_without_motion() {
        let mut gate = MotionGate::new(MotionConfig::default(), BTreeMap::new());
        // Frames every 200 ms; the default interval is 5 s.
        let passed: Vec<u64> = (0..60)
            .filter(|&seq| gate.judge(&scene(seq, None, 0), true).passes())
            .collect();
        assert_eq!(passed, [0, 25, 50]);
        let counts = gate.counts("cam");
        assert_eq!((counts.passed, counts.gated_out), (3, 57));
        // Without an open visit only the first frame passes.
        let mut gate = MotionGate::new(MotionConfig::default(), BTreeMap::new());
        let passed = (0..60)
            .filter(|&seq| gate.judge(&scene(seq, None, 0), false).passes())
            .count();
        assert_eq!(passed, 1);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let config = MotionConfig {
            min_area: 0.0,
            mask: vec![vec![[0.1, 0.1], [1.5, 0.2]]],
            ..MotionConfig::default()
        };
        let problems = config.problems("cameras.porch.motion");
        assert!(problems
            .iter()
            .any(|p| p.starts_with("cameras.porch.motion.min_area:")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("cameras.porch.motion.mask[0]:")));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("cameras.porch.motion.mask[0][1]:")));
    }
}
