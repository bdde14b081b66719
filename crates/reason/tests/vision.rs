//! The image path (`mtmd`): a projector GGUF the test writes (random weights,
//! sized to the text model) paired with the real SmolLM2-135M from the model
//! cache. The words are meaningless; the point is that every step of the
//! image path runs: bitmap, CLIP encoder, projector, text model, sampling.

use std::path::PathBuf;
use std::sync::OnceLock;

use streamer_models::ModelCache;
use streamer_reason::{
    image_marker, ChatMessage, GenerateRequest, ImageInput, LlmRuntime, ReasonError,
    RuntimeOptions, Sampling, SyntheticProjector,
};

fn cached(name: &str) -> PathBuf {
    ModelCache::from_env()
        .require(name)
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"))
}

fn projector_dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
}

fn projector(text_width: u32) -> PathBuf {
    let path = projector_dir()
        .path()
        .join(format!("mmproj-{text_width}.gguf"));
    if !path.exists() {
        SyntheticProjector::for_text_width(text_width)
            .write(&path)
            .unwrap();
    }
    path
}

fn options(projector: Option<PathBuf>) -> RuntimeOptions {
    RuntimeOptions {
        context: 1024,
        threads: Some(2),
        batch: 256,
        projector,
        ..RuntimeOptions::default()
    }
}

fn vlm() -> &'static LlmRuntime {
    static RT: OnceLock<LlmRuntime> = OnceLock::new();
    RT.get_or_init(|| {
        LlmRuntime::load(&cached("smollm2-135m"), options(Some(projector(576)))).unwrap()
    })
}

/// A 64x48 frame: a bright square on a dark background.
fn frame() -> ImageInput {
    let (width, height) = (64u32, 48u32);
    let mut pixels = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let lit = (16..40).contains(&x) && (12..36).contains(&y);
            pixels.extend(if lit { [230, 200, 40] } else { [20, 20, 30] });
        }
    }
    ImageInput::Rgb {
        width,
        height,
        pixels,
    }
}

fn describe(images: Vec<ImageInput>) -> Result<streamer_reason::Completion, ReasonError> {
    vlm().generate(
        GenerateRequest {
            messages: vec![ChatMessage::user("Describe this camera frame.")],
            sampling: Sampling::greedy(12),
            grammar: None,
            images,
            ..Default::default()
        },
        |_| {},
    )
}

#[test]
fn a_frame_goes_through_the_projector_and_text_comes_back() {
    assert!(vlm().info().vision);
    let done = describe(vec![frame()]).unwrap();
    assert!(!done.text.trim().is_empty(), "{done:?}");
    assert!(done.timing.completion_tokens > 0);
    // The 16 image tokens are part of the prompt the model read.
    let text_only = vlm()
        .chat(
            vec![ChatMessage::user("Describe this camera frame.")],
            Sampling::greedy(1),
        )
        .unwrap();
    assert!(
        done.timing.prompt_tokens >= text_only.timing.prompt_tokens + 16,
        "image prompt {} tokens, text prompt {}",
        done.timing.prompt_tokens,
        text_only.timing.prompt_tokens
    );
}

#[test]
fn an_image_file_is_decoded_and_placed_at_its_marker() {
    let ImageInput::Rgb {
        width,
        height,
        pixels,
    } = frame()
    else {
        unreachable!()
    };
    let path = projector_dir().path().join("frame.png");
    image::save_buffer(&path, &pixels, width, height, image::ColorType::Rgb8).unwrap();
    let done = vlm()
        .generate(
            GenerateRequest {
                messages: vec![ChatMessage::user(format!(
                    "Camera: porch.\n{}\nWhat is in the picture?",
                    image_marker()
                ))],
                sampling: Sampling::greedy(8),
                grammar: None,
                images: vec![ImageInput::File(path)],
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
    assert!(done.timing.completion_tokens > 0);
}

#[test]
fn different_images_lead_to_different_answers() {
    // At weight scale 0.2 the image embeddings are large enough to steer
    // the text model: a dark frame and a bright one give different replies.
    let flat = |v: u8| ImageInput::Rgb {
        width: 56,
        height: 56,
        pixels: vec![v; 56 * 56 * 3],
    };
    let dark = describe(vec![flat(0)]).unwrap().text;
    let bright = describe(vec![flat(255)]).unwrap().text;
    assert_ne!(dark, bright);
}

#[test]
fn bad_image_inputs_are_errors_not_crashes() {
    let short = ImageInput::Rgb {
        width: 10,
        height: 10,
        pixels: vec![0; 12],
    };
    assert!(matches!(describe(vec![short]), Err(ReasonError::Image(_))));
    let missing = ImageInput::File("/nonexistent/frame.jpg".into());
    assert!(matches!(
        describe(vec![missing]),
        Err(ReasonError::Image(_))
    ));
    let garbage = ImageInput::Encoded(b"not an image".to_vec());
    assert!(matches!(
        describe(vec![garbage]),
        Err(ReasonError::Image(_))
    ));
    // The runtime still works afterwards.
    assert!(describe(vec![frame()]).is_ok());
}

#[test]
fn a_text_model_without_projector_refuses_images() {
    static RT: OnceLock<LlmRuntime> = OnceLock::new();
    let text = RT.get_or_init(|| LlmRuntime::load(&cached("smollm2-135m"), options(None)).unwrap());
    assert!(!text.info().vision);
    let err = text
        .generate(
            GenerateRequest {
                messages: vec![ChatMessage::user("What is this?")],
                sampling: Sampling::greedy(4),
                grammar: None,
                images: vec![frame()],
                ..Default::default()
            },
            |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, ReasonError::NoVision), "{err}");
}

#[test]
fn a_projector_for_another_model_width_is_a_clear_error() {
    // A projector sized for Qwen (896) does not fit SmolLM2 (576).
    let err = LlmRuntime::load(&cached("smollm2-135m"), options(Some(projector(896))))
        .err()
        .expect("mismatched projector must not load");
    assert!(matches!(err, ReasonError::Load { .. }), "{err}");
    assert!(err.to_string().contains("576"), "{err}");
}
