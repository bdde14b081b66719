//! Runs the project's model converters (Python scripts in `models/convert/`,
//! compiled into the binary) inside a private virtual environment with pinned
//! requirements, created on first use outside the clone.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::registry::{python, run};
use crate::ModelError;

const REQUIREMENTS: &str = include_str!("../../../models/convert/requirements.txt");

/// A converter: its script and the flag that takes its main input file.
struct Converter {
    name: &'static str,
    script: &'static str,
    input_flag: &'static str,
}

const CONVERTERS: &[Converter] = &[
    Converter {
        name: "centernet_tfjs",
        script: include_str!("../../../models/convert/centernet_tfjs.py"),
        input_flag: "--model-json",
    },
    Converter {
        name: "mobilenetv2_pickle",
        script: include_str!("../../../models/convert/mobilenetv2_pickle.py"),
        input_flag: "--weights",
    },
];

/// `$STREAMER_CONVERT_VENV`, else `${XDG_CACHE_HOME:-~/.cache}/streamer/convert-venv`.
fn venv_dir() -> PathBuf {
    std::env::var_os("STREAMER_CONVERT_VENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate::cache::cache_home()
                .join("streamer")
                .join("convert-venv")
        })
}

/// Creates (or reuses) the converter venv; returns its Python.
fn ensure_venv() -> Result<PathBuf, ModelError> {
    let dir = venv_dir();
    let py = dir.join("bin").join("python");
    let stamp = dir.join("streamer-requirements.sha256");
    let want = hex::encode(Sha256::digest(REQUIREMENTS.as_bytes()));
    if py.exists() && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(py);
    }
    tracing::info!(venv = %dir.display(), "creating the model-converter environment (first run only)");
    if !py.exists() {
        run(Command::new(python()).args(["-m", "venv"]).arg(&dir))?;
    }
    let req = dir.join("requirements.txt");
    fs::write(&req, REQUIREMENTS).map_err(ModelError::io(&req))?;
    run(Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&req))?;
    fs::write(&stamp, &want).map_err(ModelError::io(&stamp))?;
    Ok(py)
}

/// Converts `input` (the first source member) into `output` with the named
/// converter, passing it `args` besides its input and output.
pub(crate) fn convert(
    name: &str,
    args: &[String],
    input: &Path,
    output: &Path,
    work: &Path,
) -> Result<(), ModelError> {
    let converter = CONVERTERS
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ModelError::Other(format!("no converter named {name:?}")))?;
    let py = ensure_venv()?;
    let script = work.join(format!("{name}.py"));
    fs::write(&script, converter.script).map_err(ModelError::io(&script))?;
    run(Command::new(py)
        .arg(&script)
        .arg(converter.input_flag)
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(args)
        .env("TF_CPP_MIN_LOG_LEVEL", "2"))?;
    if !output.is_file() {
        return Err(ModelError::Other(format!(
            "converter {name} wrote no {}",
            output.display()
        )));
    }
    Ok(())
}
