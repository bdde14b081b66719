//! Replay: files and image folders through the same [`StageGraph`] as live
//! cameras. Each input decodes on its own thread behind a bounded channel
//! of two frames that blocks rather than drops (replay wants every sampled
//! frame: the "lossless" handoff), and frames are taken in timestamp order
//! across inputs, as if the cameras ran side by side, as fast as decoding
//! allows. Frame times are the footage's own (pts), mapped to local time by
//! the graph's [`Clock`](crate::Clock).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use streamer_core::Frame;
use streamer_identity::VisitEvent;
use streamer_ingest::{Fps, IngestError};

use crate::graph::{FrameOutcome, StageError, StageGraph};

/// One input: a video file or an image folder, as one camera.
#[derive(Clone, Debug)]
pub struct ReplayInput {
    /// The file or folder.
    pub path: PathBuf,
    /// The camera its frames are tagged with.
    pub camera: Arc<str>,
}

/// Cuts a decoded frame into the frames of virtual cameras (`replay
/// --split`); the error is shown as it is.
pub type Cut = Box<dyn Fn(&Frame) -> Result<Vec<Frame>, String>>;

/// How a frame came out of its decoder.
#[derive(Clone, Copy, Debug)]
pub struct Decoded {
    /// Time spent decoding it.
    pub decode_time: Duration,
    /// When it left the decoder.
    pub decoded_at: Instant,
}

/// Told about every frame and visit, in order, on the calling thread.
pub trait ReplayObserver {
    /// A frame went through the stages (the observer may take the alert
    /// receipts out of `outcome`). An error stops the replay.
    fn frame(
        &mut self,
        frame: &Frame,
        decoded: &Decoded,
        outcome: &mut FrameOutcome,
    ) -> Result<(), String>;
    /// Visits that ended with the footage.
    fn visits(&mut self, events: &[VisitEvent]) -> Result<(), String>;
}

/// What stops a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// An input cannot be opened or decoded.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A stage failed on a frame.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Cutting into virtual cameras, or writing the output, failed.
    #[error("{0}")]
    Output(String),
    /// A decoder thread could not start.
    #[error("cannot start a decoder thread: {0}")]
    Thread(String),
}

/// Replays inputs through a stage graph.
pub struct ReplayRunner {
    inputs: Vec<ReplayInput>,
    fps: Fps,
    cut: Option<Cut>,
}

impl std::fmt::Debug for ReplayRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayRunner")
            .field("inputs", &self.inputs)
            .field("fps", &self.fps)
            .finish_non_exhaustive()
    }
}

type Item = Result<(Frame, Decoded), IngestError>;

impl ReplayRunner {
    /// Inputs sampled at `fps`, optionally cut into virtual cameras.
    pub fn new(inputs: Vec<ReplayInput>, fps: Fps, cut: Option<Cut>) -> Self {
        Self { inputs, fps, cut }
    }

    /// Opens every input (an unreadable one is an error before any frame),
    /// then runs all frames through `graph`, reporting each to `observer`.
    pub fn run(
        self,
        graph: &mut StageGraph,
        observer: &mut dyn ReplayObserver,
    ) -> Result<(), ReplayError> {
        let mut sources = Vec::new();
        for input in &self.inputs {
            sources.push(spawn_decoder(input, self.fps)?.peekable());
        }
        let mut last_ms = 0;
        loop {
            // The input whose next frame is earliest; errors first, so they
            // are never hidden behind another input's frames.
            let next = sources
                .iter_mut()
                .enumerate()
                .filter_map(|(i, s)| match s.peek() {
                    Some(Ok((f, _))) => Some((f.pts, i)),
                    Some(Err(_)) => Some((Duration::ZERO, i)),
                    None => None,
                })
                .min();
            let Some((_, i)) = next else { break };
            let (decoded, info) = sources[i].next().expect("peeked")?;
            let frames = match &self.cut {
                Some(cut) => cut(&decoded).map_err(ReplayError::Output)?,
                None => vec![decoded],
            };
            for frame in frames {
                last_ms = last_ms.max(frame.pts_ms());
                let mut outcome = graph.process(&frame)?;
                observer
                    .frame(&frame, &info, &mut outcome)
                    .map_err(ReplayError::Output)?;
            }
        }
        let ended = graph.finish(last_ms);
        observer.visits(&ended).map_err(ReplayError::Output)
    }
}

/// Decodes on its own thread so decoding overlaps the stages; the bound of
/// two keeps memory flat and blocks the decoder rather than dropping.
fn spawn_decoder(input: &ReplayInput, fps: Fps) -> Result<impl Iterator<Item = Item>, ReplayError> {
    let mut source = streamer_ingest::open(&input.path, input.camera.clone(), fps)?;
    let (tx, rx) = crossbeam_channel::bounded::<Item>(2);
    thread::Builder::new()
        .name("replay-source".into())
        .spawn(move || loop {
            let t = Instant::now();
            let item = source.next_frame().map(|f| {
                let decoded = Decoded {
                    decode_time: t.elapsed(),
                    decoded_at: Instant::now(),
                };
                (f, decoded)
            });
            let end = item.is_err();
            if tx.send(item).is_err() || end {
                break;
            }
        })
        .map_err(|e| ReplayError::Thread(e.to_string()))?;
    Ok(rx.into_iter().map_while(|item| match item {
        Err(IngestError::EndOfStream) => None,
        other => Some(other),
    }))
}
