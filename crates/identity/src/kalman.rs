//! A constant-velocity Kalman filter over a person box, as SORT-family
//! trackers use: it predicts where a track's box is now, so a person
//! walking on is matched to where they should be, not where they were, and
//! a track survives frames in which the detector missed them.
//!
//! The box is four independent coordinates (centre x, centre y, width,
//! height), each with a position and a velocity. Independence makes every
//! covariance a 2×2 matrix, solved in closed form. Noise scales with the
//! box's height, so near and far people are treated alike. Times are in
//! milliseconds on the caller's clock; the filter has none of its own.

use streamer_core::BBox;

/// Noise of the motion model and of the detector, relative to box height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MotionNoise {
    /// Standard deviation of a measured centre, per unit of box height.
    pub measured_position: f32,
    /// Standard deviation of a measured width or height, per unit of box
    /// height.
    pub measured_size: f32,
    /// How fast a person may change velocity: acceleration standard
    /// deviation, box heights per second squared.
    pub acceleration: f32,
    /// The same for width and height (boxes change size slowly).
    pub size_acceleration: f32,
}

impl Default for MotionNoise {
    fn default() -> Self {
        Self {
            measured_position: 0.05,
            measured_size: 0.08,
            acceleration: 1.0,
            size_acceleration: 0.3,
        }
    }
}

/// One coordinate: position, velocity (per second) and their covariance.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    x: f32,
    v: f32,
    /// Covariance `[[pp, pv], [pv, vv]]`.
    pp: f32,
    pv: f32,
    vv: f32,
}

impl Axis {
    fn new(x: f32, position_sd: f32, velocity_sd: f32) -> Self {
        Self {
            x,
            v: 0.0,
            pp: position_sd * position_sd,
            pv: 0.0,
            vv: velocity_sd * velocity_sd,
        }
    }

    /// The state `dt` seconds on, under white-noise acceleration of
    /// standard deviation `accel`.
    fn predicted(&self, dt: f32, accel: f32) -> Self {
        let q = accel * accel;
        let (dt2, dt3, dt4) = (dt * dt, dt * dt * dt, dt * dt * dt * dt);
        Self {
            x: self.x + self.v * dt,
            v: self.v,
            pp: self.pp + 2.0 * dt * self.pv + dt2 * self.vv + q * dt4 / 4.0,
            pv: self.pv + dt * self.vv + q * dt3 / 2.0,
            vv: self.vv + q * dt2,
        }
    }

    /// Folds in a measurement `z` of the position with variance `r`.
    fn corrected(&self, z: f32, r: f32) -> Self {
        let s = self.pp + r;
        let (kp, kv) = (self.pp / s, self.pv / s);
        let innovation = z - self.x;
        Self {
            x: self.x + kp * innovation,
            v: self.v + kv * innovation,
            pp: (1.0 - kp) * self.pp,
            pv: (1.0 - kp) * self.pv,
            vv: self.vv - kv * self.pv,
        }
    }
}

/// A person box's motion: where it is, how fast it moves, how sure.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxFilter {
    /// Centre x, centre y, width, height.
    axes: [Axis; 4],
    time_ms: u64,
    noise: MotionNoise,
}

impl BoxFilter {
    /// A filter at a first sighting: its box, still, with unknown velocity.
    pub fn new(bbox: &BBox, time_ms: u64, noise: MotionNoise) -> Self {
        let h = bbox.height().max(1.0);
        let (cx, cy) = centre(bbox);
        // A first box says nothing about velocity: allow a brisk walk
        // (about one body height per second) either way.
        let pos = noise.measured_position * h;
        let size = noise.measured_size * h;
        Self {
            axes: [
                Axis::new(cx, pos, h),
                Axis::new(cy, pos, h),
                Axis::new(bbox.width(), size, 0.3 * h),
                Axis::new(bbox.height(), size, 0.3 * h),
            ],
            time_ms,
            noise,
        }
    }

    /// When the filter last took a box.
    pub fn time_ms(&self) -> u64 {
        self.time_ms
    }

    /// The box expected at `time_ms` (no earlier than the last update).
    pub fn predict(&self, time_ms: u64) -> BBox {
        to_box(&self.axes_at(time_ms))
    }

    /// Velocity of the box centre, pixels per second.
    pub fn velocity(&self) -> (f32, f32) {
        (self.axes[0].v, self.axes[1].v)
    }

    /// Takes the box measured at `time_ms`.
    pub fn update(&mut self, bbox: &BBox, time_ms: u64) {
        let predicted = self.axes_at(time_ms);
        let h = predicted[3].x.max(bbox.height()).max(1.0);
        let (cx, cy) = centre(bbox);
        let pos = (self.noise.measured_position * h).powi(2);
        let size = (self.noise.measured_size * h).powi(2);
        self.axes = [
            predicted[0].corrected(cx, pos),
            predicted[1].corrected(cy, pos),
            predicted[2].corrected(bbox.width(), size),
            predicted[3].corrected(bbox.height(), size),
        ];
        self.time_ms = self.time_ms.max(time_ms);
    }

    fn axes_at(&self, time_ms: u64) -> [Axis; 4] {
        let dt = time_ms.saturating_sub(self.time_ms) as f32 / 1000.0;
        let h = self.axes[3].x.max(1.0);
        let accel = self.noise.acceleration * h;
        let size_accel = self.noise.size_acceleration * h;
        [
            self.axes[0].predicted(dt, accel),
            self.axes[1].predicted(dt, accel),
            self.axes[2].predicted(dt, size_accel),
            self.axes[3].predicted(dt, size_accel),
        ]
    }
}

fn centre(b: &BBox) -> (f32, f32) {
    ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0)
}

fn to_box(axes: &[Axis; 4]) -> BBox {
    let (cx, cy) = (axes[0].x, axes[1].x);
    let (w, h) = (axes[2].x.max(1.0), axes[3].x.max(1.0));
    BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(x: f32) -> BBox {
        BBox::new(x, 100.0, x + 40.0, 200.0)
    }

    #[test]
    fn a_walking_person_is_predicted_ahead_after_a_few_boxes() {
        // 50 px/s to the right, boxes every 200 ms.
        let mut f = BoxFilter::new(&person(0.0), 0, MotionNoise::default());
        for k in 1..=10u64 {
            f.update(&person(10.0 * k as f32), k * 200);
        }
        let (vx, vy) = f.velocity();
        assert!((vx - 50.0).abs() < 5.0, "vx {vx}");
        assert!(vy.abs() < 2.0, "vy {vy}");
        // A second on, without boxes: about 50 px further.
        let ahead = f.predict(3_000);
        assert!((ahead.x1 - 150.0).abs() < 8.0, "{ahead:?}");
        assert!((ahead.width() - 40.0).abs() < 2.0);
    }

    #[test]
    fn a_still_person_stays_put_and_a_stopping_one_slows_down() {
        let mut still = BoxFilter::new(&person(100.0), 0, MotionNoise::default());
        for k in 1..=10u64 {
            still.update(&person(100.0), k * 200);
        }
        assert!(still.velocity().0.abs() < 0.5);
        assert_eq!(still.predict(2_000).x1.round(), 100.0);

        let mut stopping = BoxFilter::new(&person(0.0), 0, MotionNoise::default());
        for k in 1..=10u64 {
            stopping.update(&person(10.0 * k as f32), k * 200);
        }
        for k in 11..=25u64 {
            stopping.update(&person(100.0), k * 200);
        }
        assert!(
            stopping.velocity().0.abs() < 5.0,
            "{:?}",
            stopping.velocity()
        );
    }

    #[test]
    fn prediction_does_not_change_the_filter() {
        let mut f = BoxFilter::new(&person(0.0), 0, MotionNoise::default());
        f.update(&person(10.0), 200);
        let copy = f.clone();
        let _ = f.predict(5_000);
        assert_eq!(f, copy);
        assert_eq!(f.time_ms(), 200);
    }

    #[test]
    fn uncertainty_grows_while_coasting_and_shrinks_with_boxes() {
        let f = BoxFilter::new(&person(0.0), 0, MotionNoise::default());
        let soon = f.axes_at(200)[0].pp;
        let later = f.axes_at(2_000)[0].pp;
        assert!(later > soon);
        let mut g = f.clone();
        g.update(&person(0.0), 200);
        assert!(g.axes[0].pp < soon);
    }
}
