//! The edge between live sources and detection: one slot per camera that
//! keeps only the freshest frame ("freshest" handoff). A source never waits
//! for detection; a frame that is replaced before detection takes it is
//! counted as dropped. Detection takes frames round-robin over the cameras,
//! so a busy camera cannot starve a quiet one.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use streamer_core::Frame;

/// Freshest-frame slots, one per camera, with round-robin taking.
#[derive(Debug)]
pub struct FreshestSlots {
    slots: Mutex<Slots>,
    ready: Condvar,
}

#[derive(Debug)]
struct Slots {
    frames: Vec<Option<Frame>>,
    next: usize,
}

impl FreshestSlots {
    /// Slots for `cameras` cameras.
    pub fn new(cameras: usize) -> Self {
        Self {
            slots: Mutex::new(Slots {
                frames: (0..cameras).map(|_| None).collect(),
                next: 0,
            }),
            ready: Condvar::new(),
        }
    }

    /// Puts camera `index`'s newest frame; true if it replaced one that was
    /// never taken (a dropped frame).
    pub fn put(&self, index: usize, frame: Frame) -> bool {
        let mut s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let dropped = s.frames[index].replace(frame).is_some();
        drop(s);
        self.ready.notify_one();
        dropped
    }

    /// The waiting frame of the next camera in turn that has one, waiting
    /// up to `timeout` for any; `None` if none came.
    pub fn take(&self, timeout: Duration) -> Option<Frame> {
        let guard = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let (mut s, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |s| s.frames.iter().all(Option::is_none))
            .unwrap_or_else(|e| e.into_inner());
        let n = s.frames.len();
        let start = s.next;
        for k in 0..n {
            let i = (start + k) % n;
            if let Some(frame) = s.frames[i].take() {
                s.next = (i + 1) % n;
                return Some(frame);
            }
        }
        None
    }

    /// Frames waiting now (at most one per camera).
    pub fn waiting(&self) -> usize {
        let s = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        s.frames.iter().filter(|f| f.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(camera: &str, seq: u64) -> Frame {
        Frame::new(Arc::from(camera), seq, Duration::ZERO, 1, 1, vec![0; 3])
    }

    #[test]
    fn keeps_the_freshest_and_counts_the_rest() {
        let slots = FreshestSlots::new(1);
        assert!(!slots.put(0, frame("a", 0)));
        assert!(slots.put(0, frame("a", 1)));
        assert!(slots.put(0, frame("a", 2)));
        assert_eq!(slots.take(Duration::ZERO).unwrap().seq, 2);
        assert!(slots.take(Duration::from_millis(1)).is_none());
    }

    #[test]
    fn a_busy_camera_does_not_starve_a_quiet_one() {
        let slots = FreshestSlots::new(3);
        let mut served = Vec::new();
        for round in 0..4 {
            // Camera 0 always has a frame, camera 2 only every other round.
            slots.put(0, frame("busy", round));
            if round % 2 == 0 {
                slots.put(2, frame("quiet", round));
            }
            while let Some(f) = slots.take(Duration::ZERO) {
                served.push(f.camera.to_string());
            }
        }
        assert_eq!(served.iter().filter(|c| *c == "quiet").count(), 2);
        assert_eq!(served.iter().filter(|c| *c == "busy").count(), 4);
        assert_eq!(slots.waiting(), 0);
    }

    #[test]
    fn take_wakes_when_a_frame_arrives() {
        let slots = Arc::new(FreshestSlots::new(2));
        let s = Arc::clone(&slots);
        let t = std::thread::spawn(move || s.take(Duration::from_secs(30)));
        slots.put(1, frame("b", 7));
        assert_eq!(t.join().unwrap().unwrap().seq, 7);
    }
}
