//! `cargo xtask fuzz`: run the server's fuzz targets (`fuzz/`) under libFuzzer for a while each,
//! from the inputs kept for them, and say how long each ran and how many inputs it tried.
//!
//! Each target starts from `fuzz/seeds/NAME/` (real inputs and every crash once found, kept by
//! hand) and `fuzz/corpus/NAME/` (what earlier runs found new, where this run adds its own);
//! `cargo test` replays both through the same functions. libFuzzer's log goes to
//! `target/fuzz/logs/NAME.log`, and a crash's input to `fuzz/artifacts/NAME/`.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::base::{Usage, repo};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long to fuzz each target.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub time: u64,
    /// Fuzz only this target; repeat for more [default: every target in fuzz/fuzz_targets/].
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// After each run, shrink its corpus to the fewest inputs that reach every edge it reached
    /// (`cargo fuzz cmin`), before it is committed.
    #[arg(long)]
    pub minimize: bool,
}

/// What one target's run came to.
struct Run {
    target: String,
    seconds: u64,
    runs: u64,
    corpus: usize,
    /// The input that failed, when one did.
    crash: Option<String>,
}

pub fn run(args: Args) -> Result<()> {
    let root = repo::root();
    let all = targets(&root)?;
    let chosen = if args.targets.is_empty() { all.clone() } else { args.targets.clone() };
    if let Some(unknown) = chosen.iter().find(|t| !all.contains(t)) {
        bail!(Usage(format!("no fuzz target {unknown:?}: the targets are {}", all.join(", "))));
    }
    if args.time == 0 {
        bail!(Usage("--time must be at least 1 second".into()));
    }
    let fuzz_dir = root.join("fuzz");
    let target_dir = repo::target_dir().join("fuzz");
    let logs = target_dir.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_fuzz = |verb: &str| {
        let mut command = Command::new(&cargo);
        command.current_dir(&root).args(["fuzz", verb]);
        // What cargo set for this process describes the xtask package, and would make the fuzz
        // build think its dependencies' build scripts changed.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let about_this_run =
                ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_PACKAGE"]
                    .iter()
                    .any(|p| name.starts_with(p));
            if about_this_run || name == "LD_LIBRARY_PATH" {
                command.env_remove(name.as_ref());
            }
        }
        // libFuzzer's instrumentation takes nightly flags; the stable compiler accepts them so.
        command.env("RUSTC_BOOTSTRAP", "1");
        command
    };
    check_installed(&cargo)?;
    // Without a sanitizer (address sanitizer needs a nightly standard library), with debug
    // assertions and overflow checks: an overflow the release build would wrap is a finding too.
    let build_flags = ["--sanitizer", "none", "--debug-assertions", "--target-dir"];

    eprintln!("building the fuzz targets...");
    let built = cargo_fuzz("build").args(build_flags).arg(&target_dir).status().context("running cargo fuzz build")?;
    if !built.success() {
        bail!("cargo fuzz build failed (a C++ compiler is needed for libFuzzer)");
    }

    let mut results = Vec::new();
    for target in &chosen {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeds = fuzz_dir.join("seeds").join(target);
        fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let log_path = logs.join(format!("{target}.log"));
        let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        eprintln!("fuzzing {target} for {} s (log: {})", args.time, log_path.display());
        let started = Instant::now();
        let status = cargo_fuzz("run")
            .arg(target)
            .arg(&corpus)
            .arg(&seeds)
            .args(build_flags)
            .arg(&target_dir)
            .arg("--")
            .arg(format!("-max_total_time={}", args.time))
            // An input that runs this long is a finding too: a check that never ends.
            .arg("-timeout=10")
            .arg("-print_final_stats=1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("running cargo fuzz run {target}"))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let (runs, seconds) = totals(&text).unwrap_or((0, None));
        let seconds = seconds.unwrap_or_else(|| started.elapsed().as_secs());
        let crash = if status.success() {
            None
        } else {
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
            Some(
                text.lines()
                    .find_map(|l| l.split_once("Test unit written to ").map(|(_, path)| path.trim().to_owned()))
                    .unwrap_or_else(|| format!("see {}", log_path.display())),
            )
        };
        if args.minimize && crash.is_none() {
            eprintln!("minimizing the corpus of {target}...");
            // The fewest inputs that still reach every edge (not every hit count): what is
            // committed stays a few hundred files, and the next run regains the rest in seconds.
            let shrunk = cargo_fuzz("cmin")
                .arg(target)
                .arg(&corpus)
                .args(build_flags)
                .arg(&target_dir)
                .args(["--", "-use_counters=0", "-set_cover_merge=1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .with_context(|| format!("running cargo fuzz cmin {target}"))?;
            if !shrunk.success() {
                bail!("cargo fuzz cmin {target} failed");
            }
        }
        let corpus = fs::read_dir(&corpus).map(|entries| entries.count()).unwrap_or(0);
        results.push(Run { target: target.clone(), seconds, runs, corpus, crash });
    }

    println!("{:<10} {:>8} {:>12} {:>10} {:>8}  RESULT", "TARGET", "SECONDS", "RUNS", "RUNS/S", "CORPUS");
    for run in &results {
        let rate = run.runs / run.seconds.max(1);
        let result = run.crash.as_deref().map_or("no crash".to_owned(), |input| format!("FAILED: {input}"));
        println!("{:<10} {:>8} {:>12} {:>10} {:>8}  {result}", run.target, run.seconds, run.runs, rate, run.corpus);
    }
    let failed: Vec<&str> = results.iter().filter(|r| r.crash.is_some()).map(|r| r.target.as_str()).collect();
    if !failed.is_empty() {
        bail!(
            "{} found an input that fails: minimise it (`cargo fuzz tmin TARGET INPUT`), fix the cause, and keep the input in fuzz/seeds/TARGET/",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Fails, naming the fix, when `cargo fuzz` is not there.
fn check_installed(cargo: &OsStr) -> Result<()> {
    let installed = Command::new(cargo)
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        bail!("cargo-fuzz is not installed: run `cargo install cargo-fuzz` (it builds in a minute or two)");
    }
    Ok(())
}

/// The targets, by their files in `fuzz/fuzz_targets/`.
fn targets(root: &Path) -> Result<Vec<String>> {
    let dir: PathBuf = root.join("fuzz").join("fuzz_targets");
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(target) = name.strip_suffix(".rs") {
            names.push(target.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Runs and seconds from libFuzzer's last words, `Done 123456 runs in 180 second(s)`; after a
/// crash only the runs, from its last status line (`#123456 ...`).
fn totals(log: &str) -> Option<(u64, Option<u64>)> {
    if let Some(done) = log.lines().rev().find_map(|l| l.strip_prefix("Done ")) {
        let mut words = done.split_whitespace();
        let runs = words.next()?.parse().ok()?;
        let seconds = words.nth(2)?.parse().ok()?;
        return Some((runs, Some(seconds)));
    }
    let runs = log.lines().rev().find_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok())?;
    Some((runs, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_totals() {
        let done = "#1048576\tpulse  cov: 2012 ft: 9000 corp: 310/40Kb exec/s: 80659 rss: 120Mb\nstat::number_of_executed_units: 14518031\nDone 14518031 runs in 181 second(s)\n";
        assert_eq!(totals(done), Some((14518031, Some(181))));
        let crashed = "#4096\tpulse  cov: 100 ft: 200 corp: 12/1Kb exec/s: 2048 rss: 40Mb\n#5000\tNEW    cov: 101\n==1== ERROR: libFuzzer: deadly signal\n";
        assert_eq!(totals(crashed), Some((5000, None)));
        assert_eq!(totals(""), None);
    }

    #[test]
    fn without_cargo_fuzz_it_says_how_to_install_it() {
        let error = check_installed(OsStr::new("false")).unwrap_err().to_string();
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(error.contains("cargo install cargo-fuzz"), "{error}");
    }
}
