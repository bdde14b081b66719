//! Real GStreamer pipelines over files the tests generate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use streamer_ingest::{frames, open, Fps, IngestError};

/// Encodes `frames` frames of a test pattern at 10 fps into an H.264 MP4.
fn make_clip(path: &Path, frames: u32, width: u32, height: u32) {
    gst::init().unwrap();
    let launch = format!(
        "videotestsrc num-buffers={frames} pattern=smpte \
         ! video/x-raw,format=I420,width={width},height={height},framerate=10/1 \
         ! x264enc speed-preset=ultrafast key-int-max=10 ! h264parse ! mp4mux \
         ! filesink location={}",
        path.display()
    );
    let pipeline = gst::parse::launch(&launch).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoder finished");
    assert!(
        matches!(msg.view(), gst::MessageView::Eos(_)),
        "encoding failed: {msg:?}"
    );
    pipeline.set_state(gst::State::Null).unwrap();
}

fn fps(v: f64) -> Fps {
    Fps::from_f64(v).unwrap()
}

#[test]
fn video_is_sampled_to_the_configured_rate_with_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 50, 320, 240); // 5 s at 10 fps

    let sampled: Vec<_> = frames(open(&clip, Arc::from("cam"), fps(2.0)).unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sampled.len(), 10, "5 s sampled at 2 fps");
    for (i, f) in sampled.iter().enumerate() {
        assert_eq!(f.seq, i as u64);
        assert_eq!(f.pts, Duration::from_millis(500 * i as u64));
        assert_eq!((f.width, f.height, f.rgb.len()), (320, 240, 320 * 240 * 3));
        assert_eq!(&*f.camera, "cam");
    }

    let all: Vec<_> = frames(open(&clip, Arc::from("cam"), fps(10.0)).unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(all.len(), 50);
    assert_eq!(all[49].pts, Duration::from_millis(4900));
}

#[test]
fn odd_widths_are_unpadded_into_tight_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("odd.mp4");
    // 322 px * 3 bytes is not a multiple of 4: GStreamer pads each row.
    make_clip(&clip, 5, 322, 240);
    let f = open(&clip, Arc::from("cam"), fps(10.0))
        .unwrap()
        .next_frame()
        .unwrap();
    assert_eq!(f.rgb.len(), 322 * 240 * 3);
    // SMPTE bars: the top-left bar is light grey, the first row's last
    // pixels are blue-ish; both must be where packed RGB puts them.
    let px = |x: usize, y: usize| &f.rgb[(y * 322 + x) * 3..(y * 322 + x) * 3 + 3];
    assert!(px(2, 2).iter().all(|&c| c > 150), "{:?}", px(2, 2));
    let right = px(319, 2);
    assert!(right[2] > 150 && right[1] < 100, "{right:?}");
}

#[test]
fn image_folder_yields_images_in_name_order_at_the_sampling_rate() {
    let dir = tempfile::tempdir().unwrap();
    let colours = [
        ("a.png", [255, 0, 0], 64),
        ("b.jpg", [0, 0, 255], 48),
        ("c.png", [0, 255, 0], 32),
    ];
    for (name, rgb, size) in colours {
        image::RgbImage::from_pixel(size, size, image::Rgb(rgb))
            .save(dir.path().join(name))
            .unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();

    let got: Vec<_> = frames(open(dir.path(), Arc::from("folder"), fps(2.0)).unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got.len(), 3);
    for (i, (f, (_, rgb, size))) in got.iter().zip(colours).enumerate() {
        assert_eq!(f.pts, Duration::from_millis(500 * i as u64));
        assert_eq!((f.width, f.height), (size, size));
        let centre = ((size / 2 * size + size / 2) * 3) as usize;
        let px = &f.rgb[centre..centre + 3];
        for c in 0..3 {
            assert!(
                (px[c] as i32 - rgb[c] as i32).abs() < 8,
                "{:?} vs {rgb:?}",
                px
            );
        }
    }
}

#[test]
fn unreadable_inputs_are_typed_errors_with_gstreamer_messages() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("nope.mp4");
    let err = open(&missing, Arc::from("c"), fps(1.0)).err().unwrap();
    assert!(matches!(err, IngestError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains("nope.mp4"));

    let garbage = dir.path().join("garbage.mp4");
    std::fs::write(&garbage, vec![0x5a; 64 * 1024]).unwrap();
    let result = open(&garbage, Arc::from("c"), fps(1.0)).and_then(|mut s| s.next_frame());
    match result {
        Err(IngestError::Pipeline { message, input, .. }) => {
            assert!(input.contains("garbage.mp4"));
            assert!(!message.is_empty());
        }
        other => panic!("expected a GStreamer error, got {other:?}"),
    }

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = open(&empty, Arc::from("c"), fps(1.0)).err().unwrap();
    assert!(matches!(err, IngestError::EmptyFolder { .. }), "{err}");

    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(broken.join("x.jpg"), b"definitely not a jpeg").unwrap();
    let mut source = open(&broken, Arc::from("c"), fps(1.0)).unwrap();
    let err = source.next_frame().unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Pipeline { .. } | IngestError::Unreadable { .. }
        ),
        "{err}"
    );
}

#[test]
fn live_pictures_wider_than_max_width_are_scaled_down_with_their_aspect() {
    use streamer_ingest::{LiveInput, LiveSettings, LiveSource};
    let open_at = |width: u32, height: u32, max_width: u32| {
        let input = LiveInput::GstSource(format!(
            "videotestsrc is-live=true ! video/x-raw,width={width},height={height},framerate=10/1"
        ));
        let settings = LiveSettings {
            max_width,
            ..LiveSettings::default()
        };
        let mut source = LiveSource::open(&input, Arc::from("pattern"), &settings).unwrap();
        let frame = source
            .next_frame_within(Duration::from_secs(60))
            .unwrap()
            .expect("a frame within a minute");
        (frame.width, frame.height, frame.rgb.len())
    };
    assert_eq!(open_at(1920, 1080, 1280), (1280, 720, 1280 * 720 * 3));
    assert_eq!(open_at(640, 480, 1280), (640, 480, 640 * 480 * 3));
}

#[test]
fn live_pictures_convert_to_the_rgb_that_gstreamer_makes_of_them() {
    // 322 pixels: RGB rows of 966 bytes, padded to 968 in GStreamer's
    // buffers, so the gaps must be closed.
    for (width, height) in [(320, 240), (322, 180)] {
        live_picture_converts_like_videoconvert(width, height);
    }
}

fn live_picture_converts_like_videoconvert(width: u32, height: u32) {
    use streamer_ingest::{LiveInput, LiveSettings, LiveSource};
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    make_clip(&clip, 10, width, height);
    // The file source converts with GStreamer's videoconvert; the live
    // source hands over the decoder's YUV 4:2:0 picture (as cameras send
    // it) and converts it itself.
    let reference: Vec<_> = frames(open(&clip, Arc::from("file"), fps(10.0)).unwrap())
        .collect::<Result<_, _>>()
        .unwrap();
    let input = LiveInput::GstSource(format!("filesrc location={}", clip.display()));
    let settings = LiveSettings {
        fps: Fps { num: 10, den: 1 },
        ..LiveSettings::default()
    };
    let mut source = LiveSource::open(&input, Arc::from("live"), &settings).unwrap();
    let picture = source
        .next_picture_within(Duration::from_secs(60))
        .unwrap()
        .expect("a picture within a minute");
    assert_eq!((picture.width(), picture.height()), (width, height));
    let (w, h) = (width as usize, height as usize);
    let (luma, stride) = picture.luma();
    assert!(stride >= w && luma.len() >= stride * (h - 1) + w);
    assert!(picture.limited_range(), "H.264 from x264 is video range");
    let frame = source.to_frame(&picture).unwrap();
    assert_eq!((frame.width, frame.height), (width, height));
    assert_eq!(frame.rgb.len(), w * h * 3);
    assert_eq!((frame.seq, frame.pts), (0, picture.pts()));
    // The appsink keeps only the freshest picture, so this may be any of
    // the clip's frames: the closest of them is compared.
    let worst = reference
        .iter()
        .map(|r| {
            let diffs = frame.rgb.iter().zip(&r.rgb).map(|(a, b)| a.abs_diff(*b));
            diffs.max().unwrap()
        })
        .min()
        .unwrap();
    assert!(
        worst <= 1,
        "{width}x{height}: a channel differs by {worst} from videoconvert's"
    );
    // The bars are really there: SMPTE's first bar is light grey, its
    // third cyan (no red).
    let at = |x: usize| &frame.rgb[((h / 2) * w + x) * 3..][..3];
    assert!(at(10).iter().all(|c| *c > 150), "{:?}", at(10));
    assert!(at(2 * w / 7 + 10)[0] < 60, "{:?}", at(2 * w / 7 + 10));
}
