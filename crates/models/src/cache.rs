use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Manifest, ModelEntry, ModelError};

/// Name of the per-model record written next to each fetched file.
const RECORD: &str = "record.json";

/// The on-disk model cache: `<root>/<model name>/<file>` plus a
/// `record.json` saying what the file's checksum is and where it came from.
pub struct ModelCache {
    root: PathBuf,
    manifest: Manifest,
}

/// What streamer knows about a file it fetched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// Where the file came from (registry package, URL).
    pub origin: String,
    /// Checksum of the pinned input package, for converted files.
    #[serde(default)]
    pub input_sha256: Option<String>,
    /// Modification time (ns since the epoch) when the checksum was last
    /// confirmed; lets `require` skip re-hashing an unchanged file.
    #[serde(default)]
    pub verified_mtime_ns: Option<u128>,
}

impl ModelCache {
    pub fn new(root: impl Into<PathBuf>, manifest: Manifest) -> Self {
        Self {
            root: root.into(),
            manifest,
        }
    }

    /// The cache named by `STREAMER_MODELS`, else
    /// `${XDG_CACHE_HOME:-~/.cache}/streamer/models`, with the built-in manifest.
    pub fn from_env() -> Self {
        Self::new(default_root(), Manifest::builtin())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn entry(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.manifest.get(name)
    }

    pub fn dir(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join(&entry.name)
    }

    pub fn path(&self, entry: &ModelEntry) -> PathBuf {
        self.dir(entry).join(&entry.file)
    }

    /// Scratch space for downloads and unpacking.
    pub(crate) fn work_dir(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join(".work").join(&entry.name)
    }

    pub fn record(&self, entry: &ModelEntry) -> Option<Record> {
        let text = fs::read_to_string(self.dir(entry).join(RECORD)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub(crate) fn write_record(
        &self,
        entry: &ModelEntry,
        record: &Record,
    ) -> Result<(), ModelError> {
        let path = self.dir(entry).join(RECORD);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(record).expect("record serialises");
        fs::write(&tmp, text).map_err(ModelError::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(ModelError::io(&path))
    }

    /// The checksum `entry`'s file must have: pinned in the manifest, or
    /// recorded when the file was fetched.
    pub fn expected_sha256(&self, entry: &ModelEntry) -> Option<String> {
        entry
            .sha256
            .clone()
            .or_else(|| self.record(entry).map(|r| r.sha256))
    }

    /// Hashes the model file and compares it with the pinned or recorded
    /// checksum. Returns the file's path.
    pub fn verify(&self, name: &str) -> Result<PathBuf, ModelError> {
        let entry = self.entry(name)?;
        self.verify_entry(entry, true)
    }

    /// Like [`ModelCache::verify`], but skips hashing when the file has not
    /// changed since it was last verified. Use before loading a model.
    pub fn require(&self, name: &str) -> Result<PathBuf, ModelError> {
        let entry = self.entry(name)?;
        self.verify_entry(entry, false)
    }

    fn verify_entry(&self, entry: &ModelEntry, always_hash: bool) -> Result<PathBuf, ModelError> {
        let path = self.path(entry);
        let meta = fs::metadata(&path).map_err(|_| ModelError::Missing {
            name: entry.name.clone(),
            path: path.clone(),
        })?;
        let mtime = mtime_ns(&meta);
        let record = self.record(entry);
        let Some(expected) = self.expected_sha256(entry) else {
            return Err(ModelError::Unrecorded {
                name: entry.name.clone(),
                path,
            });
        };
        if !always_hash {
            if let Some(r) = &record {
                if r.sha256 == expected && r.size == meta.len() && r.verified_mtime_ns == mtime {
                    return Ok(path);
                }
            }
        }
        let actual = sha256_file(&path)?;
        if actual != expected {
            return Err(ModelError::Corrupt {
                name: entry.name.clone(),
                path,
                actual,
                expected,
            });
        }
        // Remember the verification so `require` can skip the hash next time.
        let mut record = record.unwrap_or_else(|| Record {
            file: entry.file.clone(),
            sha256: actual.clone(),
            size: meta.len(),
            origin: entry.origin(),
            input_sha256: None,
            verified_mtime_ns: None,
        });
        if record.verified_mtime_ns != mtime || record.size != meta.len() {
            record.size = meta.len();
            record.verified_mtime_ns = mtime;
            // A read-only cache still verifies; it just hashes every time.
            let _ = self.write_record(entry, &record);
        }
        Ok(path)
    }

    pub(crate) fn mtime_of(path: &Path) -> Option<u128> {
        fs::metadata(path).ok().as_ref().and_then(mtime_ns)
    }
}

fn mtime_ns(meta: &fs::Metadata) -> Option<u128> {
    meta.modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_nanos())
}

/// `$STREAMER_MODELS`, else `${XDG_CACHE_HOME:-$HOME/.cache}/streamer/models`.
pub(crate) fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("STREAMER_MODELS").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    cache_home().join("streamer").join("models")
}

pub(crate) fn cache_home() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
}

/// Lower-case hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = fs::File::open(path).map_err(ModelError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(ModelError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
