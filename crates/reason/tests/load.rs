//! Loading real GGUF models from the model cache through llama.cpp.

use std::io::Write;

use streamer_models::ModelCache;
use streamer_reason::{LoadedModel, ReasonError};

fn cached(name: &str) -> std::path::PathBuf {
    ModelCache::from_env()
        .require(name)
        .unwrap_or_else(|e| panic!("{e}\n(run `make models` to fill the cache)"))
}

#[test]
fn the_test_and_default_llms_load_with_their_metadata() {
    let smol = LoadedModel::load(&cached("smollm2-135m")).unwrap().info();
    assert_eq!(smol.architecture.as_deref(), Some("llama"));
    assert_eq!(smol.embedding_width, 576);
    assert!(
        smol.parameters > 100_000_000 && smol.parameters < 200_000_000,
        "{smol:?}"
    );
    assert!(smol
        .chat_template
        .as_deref()
        .is_some_and(|t| t.contains("im_start")));

    let qwen = LoadedModel::load(&cached("qwen2.5-coder-0.5b"))
        .unwrap()
        .info();
    assert_eq!(qwen.architecture.as_deref(), Some("qwen2"));
    assert_eq!(qwen.embedding_width, 896);
}

#[test]
fn a_file_that_is_not_gguf_is_refused_with_the_fix() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"<html>404 not found</html>").unwrap();
    let err = LoadedModel::load(f.path()).err().unwrap();
    assert!(matches!(err, ReasonError::NotGguf { .. }), "{err}");
    assert!(
        err.to_string().contains("streamer models fetch --force"),
        "{err}"
    );
}

#[test]
fn a_truncated_gguf_is_an_error_not_a_crash() {
    let full = std::fs::read(cached("smollm2-135m")).unwrap();
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&full[..full.len() / 3]).unwrap();
    let err = LoadedModel::load(f.path()).err().unwrap();
    assert!(matches!(err, ReasonError::Load { .. }), "{err}");
}
