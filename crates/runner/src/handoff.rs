//! The edge between live sources and detection: one slot per camera that
//! keeps only the freshest frame ("freshest" handoff). A source never waits
//! for detection; a frame that is replaced before detection takes it is
//! counted as dropped. Detection takes frames round-robin over the cameras,
//! so a busy camera cannot starve a quiet one. With several inference
//! workers, a camera whose frame is still in the stages is passed over
//! until that frame is done, so each camera's frames stay in order.

use std::ops::Deref;
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
    /// A frame of this camera is in the stages now: its next one waits, so
    /// that a camera's frames reach identity in order even with several
    /// inference workers.
    in_flight: Vec<bool>,
    next: usize,
}

impl Slots {
    fn ready(&self, i: usize) -> bool {
        self.frames[i].is_some() && !self.in_flight[i]
    }
}

/// A frame taken from its slot; its camera's next frame can be taken once
/// this is dropped.
#[derive(Debug)]
pub struct Taken<'a> {
    frame: Frame,
    index: usize,
    slots: &'a FreshestSlots,
}

impl Taken<'_> {
    /// The camera's slot.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Deref for Taken<'_> {
    type Target = Frame;
    fn deref(&self) -> &Frame {
        &self.frame
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.in_flight[self.index] = false;
        let waiting = s.frames[self.index].is_some();
        drop(s);
        if waiting {
            self.slots.ready.notify_one();
        }
    }
}

impl FreshestSlots {
    /// Slots for `cameras` cameras.
    pub fn new(cameras: usize) -> Self {
        Self {
            slots: Mutex::new(Slots {
                frames: (0..cameras).map(|_| None).collect(),
                in_flight: vec![false; cameras],
                next: 0,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts camera `index`'s newest frame; true if it replaced one that was
    /// never taken (a dropped frame).
    pub fn put(&self, index: usize, frame: Frame) -> bool {
        let mut s = self.lock();
        let dropped = s.frames[index].replace(frame).is_some();
        let ready = s.ready(index);
        drop(s);
        if ready {
            self.ready.notify_one();
        }
        dropped
    }

    /// The waiting frame of the next camera in turn that has one and none
    /// in flight, waiting up to `timeout` for any; `None` if none came.
    pub fn take(&self, timeout: Duration) -> Option<Taken<'_>> {
        let guard = self.lock();
        let (mut s, _) = self
            .ready
            .wait_timeout_while(guard, timeout, |s| !(0..s.frames.len()).any(|i| s.ready(i)))
            .unwrap_or_else(|e| e.into_inner());
        let n = s.frames.len();
        let start = s.next;
        let i = (0..n).map(|k| (start + k) % n).find(|&i| s.ready(i))?;
        let frame = s.frames[i].take()?;
        s.in_flight[i] = true;
        s.next = (i + 1) % n;
        Some(Taken {
            frame,
            index: i,
            slots: self,
        })
    }

    /// Frames waiting now (at most one per camera).
    pub fn waiting(&self) -> usize {
        self.lock().frames.iter().filter(|f| f.is_some()).count()
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
        let t = std::thread::spawn(move || s.take(Duration::from_secs(30)).map(|f| f.seq));
        slots.put(1, frame("b", 7));
        assert_eq!(t.join().unwrap(), Some(7));
    }

    #[test]
    fn a_camera_with_a_frame_in_flight_waits_for_it() {
        let slots = FreshestSlots::new(2);
        slots.put(0, frame("a", 0));
        let first = slots.take(Duration::ZERO).unwrap();
        slots.put(0, frame("a", 1));
        slots.put(1, frame("b", 0));
        // Another worker gets camera b, not camera a's next frame.
        let second = slots.take(Duration::ZERO).unwrap();
        assert_eq!(&*second.camera, "b");
        assert!(slots.take(Duration::ZERO).is_none());
        assert_eq!(slots.waiting(), 1);
        drop(first);
        assert_eq!(slots.take(Duration::ZERO).unwrap().seq, 1);
    }

    #[test]
    fn a_waiting_worker_wakes_when_the_frame_in_flight_is_done() {
        let slots = Arc::new(FreshestSlots::new(1));
        slots.put(0, frame("a", 0));
        let first = slots.take(Duration::ZERO).unwrap();
        slots.put(0, frame("a", 1));
        let s = Arc::clone(&slots);
        let t = std::thread::spawn(move || s.take(Duration::from_secs(30)).map(|f| f.seq));
        drop(first);
        assert_eq!(t.join().unwrap(), Some(1));
    }
}
