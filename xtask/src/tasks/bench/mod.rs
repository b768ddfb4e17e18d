//! `cargo xtask bench`: the placeholder server against nginx, Apache httpd (mpm_event) and busybox
//! httpd, and publish against the shell-script way, measured in one run on one machine; writes
//! BENCHMARKS.md. Benchmarks report, they do not assert: CI never fails on a figure.
//!
//! `servers.rs` runs the servers and measures start-up, load and probes; `attack.rs` the
//! slowhttptest section; `publish.rs` publish against the shell way, phase by phase, and the
//! cold build.

mod attack;
mod publish;
mod servers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::base::platform::Platform;
use crate::base::repo;
use crate::image::{self};

use attack::attack_section;
use publish::{account_section, cold_build_section, phases_section, publish_section, targets_section};
use servers::{
    LoadRun, image_section, machine_section, measure_load, measure_probes, measure_startup, method_section, peers,
    pin_to_cpu, unpin,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Few repetitions and short loads: checks the benchmark runs, figures are rough.
    #[arg(long)]
    pub quick: bool,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub output: PathBuf,
    /// Run only the "Under attack" section and write just that section.
    #[arg(long, conflicts_with = "only_account")]
    pub only_attack: bool,
    /// Run only the "Publish in a big account" section and write just that section.
    #[arg(long)]
    pub only_account: bool,
}

pub(super) struct Settings {
    pub(super) startups: usize,
    pub(super) probes: usize,
    pub(super) load_seconds: u32,
    pub(super) load_runs: usize,
    pub(super) connections: &'static [u32],
    pub(super) publish_counts: &'static [usize],
    pub(super) publish_runs: usize,
    /// slowhttptest's connections, opened at 1,000 a second.
    pub(super) attack_connections: u32,
    pub(super) attack_seconds: u64,
    /// Health checks during each attack, evenly spaced.
    pub(super) attack_checks: u32,
}

pub(super) const FULL: Settings = Settings {
    startups: 20,
    probes: 30,
    load_seconds: 5,
    load_runs: 5,
    connections: &[10, 100],
    publish_counts: &[1, 20, 100],
    publish_runs: 3,
    attack_connections: 3000,
    attack_seconds: 16,
    attack_checks: 40,
};
pub(super) const QUICK: Settings = Settings {
    startups: 3,
    probes: 3,
    load_seconds: 1,
    load_runs: 1,
    connections: &[10],
    publish_counts: &[1],
    publish_runs: 1,
    attack_connections: 30,
    attack_seconds: 1,
    attack_checks: 5,
};

/// slowhttptest's attack modes, as the flood tests (`server/tests/flood.rs`) run them.
pub(super) const ATTACKS: [(&str, &[&str]); 4] = [
    ("slowloris", &["-H", "-i", "5", "-x", "24"]),
    ("slow body", &["-B", "-i", "5", "-x", "24", "-s", "8192"]),
    ("slow read", &["-X", "-k", "3", "-n", "1", "-w", "10", "-y", "20", "-z", "32"]),
    ("range", &["-R", "-a", "5", "-b", "2000"]),
];
/// A health check's timeout: an ALB's minimum, and `server --probe`'s default.
pub(super) const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A set of timings: median and spread.
pub(super) struct Sample(Vec<f64>);

impl Sample {
    pub(super) fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
    }

    pub(super) fn spread(&self) -> (f64, f64) {
        let min = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max)
    }

    pub(super) fn show(&self, unit: &str, decimals: usize) -> String {
        let (min, max) = self.spread();
        let unit = if unit.is_empty() { String::new() } else { format!(" {unit}") };
        format!("{:.d$}{unit} ({:.d$}–{:.d$})", self.median(), min, max, d = decimals)
    }
}

/// A static file server to compare, started from its own config in a scratch directory.
pub(super) struct Peer {
    pub(super) name: &'static str,
    pub(super) version: String,
    pub(super) command: Box<dyn Fn(u16) -> Command>,
}

pub async fn run(args: Args) -> Result<()> {
    let settings = if args.quick { &QUICK } else { &FULL };
    for tool in ["nginx", "apache2", "busybox", "wrk", "curl", "docker", "skopeo", "slowhttptest"] {
        let needed = !args.only_attack || matches!(tool, "nginx" | "apache2" | "busybox" | "slowhttptest");
        if needed && which(tool).is_none() {
            bail!(
                "{tool} not found: the benchmark needs nginx, apache2, busybox, wrk, curl, docker, skopeo and slowhttptest (`bash .ci/install`)"
            );
        }
    }
    let aws_cli = repo::root().join(".venv/bin/aws");
    if !args.only_attack && !aws_cli.exists() {
        bail!("{} not found: `bash .ci/install` puts the AWS CLI in the project's venv", aws_cli.display());
    }

    if args.only_account {
        let mut goals: Vec<Goal> = Vec::new();
        let mut report = String::new();
        account_goals(&mut goals, account_section(&mut report, settings, &aws_cli, None)?);
        write_goals(&mut report, &goals)?;
        std::fs::write(&args.output, report).with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!("wrote {}", args.output.display());
        return Ok(());
    }

    let scratch = tempfile::tempdir()?;
    // Apache's children run as www-data and must read the pages.
    std::fs::set_permissions(scratch.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let pages = scratch.path().join("public_html");
    copy_dir(&repo::root().join("public_html"), &pages)?;
    let server = build_server()?;
    let peers = peers(scratch.path(), &pages, &server)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pin = cpus >= 2;
    if pin {
        pin_to_cpu(1); // this thread (the client side) on CPU 1, servers on CPU 0
    }

    let mut goals: Vec<Goal> = Vec::new();
    let mut report = String::new();
    if args.only_attack {
        attack_section(&mut report, &peers, settings, &mut goals)?;
        write_goals(&mut report, &goals)?;
        std::fs::write(&args.output, report).with_context(|| format!("writing {}", args.output.display()))?;
        eprintln!("wrote {}", args.output.display());
        return Ok(());
    }
    writeln!(report, "# Benchmarks\n")?;
    writeln!(
        report,
        "Written by `cargo xtask bench{}` on {}. Figures are medians with the range (min–max) in brackets.",
        if args.quick { " --quick" } else { "" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )?;
    if args.quick {
        writeln!(
            report,
            "\n**Quick mode: few repetitions and short loads. These figures only show the benchmark runs.**"
        )?;
    }
    machine_section(&mut report, &peers, cpus)?;
    method_section(&mut report, settings, pin)?;

    eprintln!("start-up and memory...");
    let mut startup = Vec::new();
    for peer in &peers {
        startup.push((peer.name, measure_startup(peer, settings.startups)?));
    }
    writeln!(report, "\n## Start-up and memory\n")?;
    writeln!(
        report,
        "| server | spawn to first 200 | × best peer | resident memory after the first request | × best peer |\n|---|---|---|---|---|"
    )?;
    let best_start = best(startup.iter().skip(1).map(|(_, (s, _))| s.median()));
    let best_rss = best(startup.iter().skip(1).map(|(_, (_, rss))| *rss as f64));
    for (name, (times, rss)) in &startup {
        writeln!(
            report,
            "| {name} | {} | {:.2} | {:.0} KiB | {:.2} |",
            times.show("ms", 2),
            times.median() / best_start,
            *rss as f64,
            *rss as f64 / best_rss
        )?;
    }

    let (ours_start, ours_rss) = (startup[0].1.0.median(), startup[0].1.1 as f64);
    goals.push(Goal::new(
        "Start-up faster than every peer",
        format!("{ours_start:.2} ms; best peer {best_start:.2} ms"),
        ours_start < best_start,
        NOT_ANALYSED,
    ));
    goals.push(Goal::new(
        "Idle memory below every peer",
        format!("{ours_rss:.0} KiB; best peer {best_rss:.0} KiB"),
        ours_rss < best_rss,
        NOT_ANALYSED,
    ));

    eprintln!("throughput...");
    writeln!(report, "\n## Throughput and latency (wrk, keep-alive, `/healthcheck.html`)\n")?;
    writeln!(
        report,
        "| server | connections | requests/s | × best peer | p99 latency | server CPU per request |\n|---|---|---|---|---|---|"
    )?;
    for &connections in settings.connections {
        // Round by round, every server once a round: the machine's drift falls on all of them alike,
        // and each round gives one ratio of ours to nginx.
        let mut runs: Vec<Vec<LoadRun>> = peers.iter().map(|_| Vec::new()).collect();
        for _ in 0..settings.load_runs {
            for (peer, runs) in peers.iter().zip(&mut runs) {
                runs.push(measure_load(peer, connections, settings, pin)?);
            }
        }
        let figure = |runs: &[LoadRun], of: fn(&LoadRun) -> f64| Sample(runs.iter().map(of).collect());
        let rates: Vec<Sample> = runs.iter().map(|runs| figure(runs, |run| run.requests_per_second)).collect();
        let best_rps = rates.iter().skip(1).map(Sample::median).fold(0.0, f64::max);
        let ratios = Sample(
            runs[0]
                .iter()
                .zip(&runs[1])
                .map(|(ours, nginx)| ours.requests_per_second / nginx.requests_per_second)
                .collect(),
        );
        goals.push(Goal::new(
            format!("Requests/s at least 1.6× nginx with one worker ({connections} connections)"),
            format!(
                "{} (ratio of each round; {:.0} vs {:.0} requests/s)",
                ratios.show("×", 2),
                rates[0].median(),
                rates[1].median()
            ),
            ratios.median() >= 1.6,
            WHY_REQUESTS_PER_SECOND,
        ));
        for ((peer, runs), rps) in peers.iter().zip(&runs).zip(&rates) {
            writeln!(
                report,
                "| {} | {connections} | {} | {:.2} | {} | {} |",
                peer.name,
                rps.show("", 0),
                rps.median() / best_rps,
                figure(runs, |run| run.p99_ms).show("ms", 2),
                runs.iter()
                    .map(|run| run.cpu_us_per_request)
                    .collect::<Option<Vec<_>>>()
                    .map_or("-".to_owned(), |cpu| Sample(cpu).show("µs", 1))
            )?;
        }
    }

    eprintln!("probes...");
    writeln!(report, "\n## Health-check client: wall time of one check against the placeholder\n")?;
    writeln!(report, "| client | wall time | × `server --probe` |\n|---|---|---|")?;
    let probes = measure_probes(&peers[0], &server, settings.probes)?;
    let ours = probes[0].1.median();
    let curl_ratio = probes[1].1.median() / ours;
    goals.push(Goal::new(
        "`--probe` at least 10× faster than curl",
        format!("{curl_ratio:.1}×"),
        curl_ratio >= 10.0,
        WHY_PROBE,
    ));
    for (name, sample) in &probes {
        writeln!(report, "| {name} | {} | {:.1} |", sample.show("ms", 2), sample.median() / ours)?;
    }

    attack_section(&mut report, &peers, settings, &mut goals)?;
    if pin {
        unpin(cpus);
    }

    eprintln!("image sizes...");
    let smaller = image_section(&mut report).await?;
    goals.push(Goal::new(
        "Image at least 100× smaller than `httpd:2.4`",
        format!("{smaller:.0}×"),
        smaller >= 100.0,
        NOT_ANALYSED,
    ));

    eprintln!("publish...");
    let ratios = publish_section(&mut report, settings, &aws_cli)?;
    if let Some(ratio) = ratios.fresh_20 {
        goals.push(Goal::new(
            "Fresh publish of 20 repositories at least 10× faster than the AWS CLI + skopeo peer",
            format!("{ratio:.1}×"),
            ratio >= 10.0,
            WHY_PUBLISH,
        ));
    }
    if let Some(ratio) = ratios.noop_20 {
        goals.push(Goal::new(
            "No-op re-run of 20 repositories at least 30× faster than the peer's re-run",
            format!("{ratio:.1}×"),
            ratio >= 30.0,
            WHY_PUBLISH,
        ));
    }

    eprintln!("publish in a big account...");
    let peer_1 = ratios.peer_1.map(|(fresh, _)| fresh);
    account_goals(&mut goals, account_section(&mut report, settings, &aws_cli, peer_1)?);

    eprintln!("where publish's time goes...");
    let phases = phases_section(&mut report, settings)?;
    if let Some((fresh, noop)) = phases {
        // The peer's one-repository figures are in the publish table above.
        if let Some((peer_fresh, peer_noop)) = ratios.peer_1 {
            let (fresh_ratio, noop_ratio) = (peer_fresh / fresh, peer_noop / noop);
            goals.push(Goal::new(
                "Publish of 1 new repository at least 4× faster than the peer",
                format!("{fresh_ratio:.1}× ({fresh:.2} s vs {peer_fresh:.1} s)"),
                fresh_ratio >= 4.0,
                WHY_PUBLISH,
            ));
            goals.push(Goal::new(
                "No-op re-run of 1 repository at least 10× faster than the peer's",
                format!("{noop_ratio:.1}× ({noop:.2} s vs {peer_noop:.1} s)"),
                noop_ratio >= 10.0,
                WHY_PUBLISH,
            ));
        }
    }

    eprintln!("cold build...");
    if let Some(ratio) = cold_build_section(&mut report, args.quick)? {
        goals.push(Goal::new(
            "Cold build of what the first publish needs at most half the commit before the trim",
            format!("{ratio:.2}×"),
            ratio <= 0.5,
            WHY_COLD_BUILD,
        ));
    }

    eprintln!("publish to several targets...");
    if let Some(ratio) = targets_section(&mut report, settings)? {
        goals.push(Goal::new(
            "Publish of 20 repositories to 4 targets well under 4× the time for 1 target",
            format!("{ratio:.2}×"),
            ratio < 3.0,
            NOT_ANALYSED,
        ));
    }

    write_goals(&mut report, &goals)?;
    std::fs::write(&args.output, report).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

/// The Goals table, and why each missed goal was missed.
fn write_goals(report: &mut String, goals: &[Goal]) -> Result<()> {
    writeln!(report, "\n## Goals\n")?;
    writeln!(report, "| goal | measured | met |\n|---|---|---|")?;
    for goal in goals {
        writeln!(report, "| {} | {} | {} |", goal.name, goal.measured, if goal.met { "yes" } else { "**no**" })?;
    }
    if goals.iter().any(|goal| !goal.met) {
        writeln!(report, "\n### Notes on missed goals\n")?;
        for goal in goals.iter().filter(|goal| !goal.met) {
            writeln!(report, "- {}: {}", goal.name, goal.why_missed)?;
        }
    }
    Ok(())
}

/// The big account's goals: the lookup costs about nothing however many families the account
/// holds, and publish stays well ahead of the script there.
fn account_goals(goals: &mut Vec<Goal>, ratios: publish::AccountRatios) {
    goals.push(Goal::new(
        format!(
            "Publish of 1 repository by name in an account of {} families within 1.2× of an empty account",
            ratios.families
        ),
        format!("{:.2}×", ratios.crowded_over_empty),
        ratios.crowded_over_empty <= 1.2,
        NOT_ANALYSED,
    ));
    goals.push(Goal::new(
        format!(
            "Publish of 1 repository by name in an account of {} families at least 4× faster than the peer",
            ratios.families
        ),
        format!("{:.1}×", ratios.peer_over_crowded),
        ratios.peer_over_crowded >= 4.0,
        WHY_PUBLISH,
    ));
}

/// One row of the Goals table, with what the report says about it when it is missed.
pub(super) struct Goal {
    name: String,
    measured: String,
    met: bool,
    why_missed: &'static str,
}

impl Goal {
    pub(super) fn new(name: impl Into<String>, measured: String, met: bool, why_missed: &'static str) -> Self {
        Goal { name: name.into(), measured, met, why_missed }
    }
}

pub(super) const NOT_ANALYSED: &str = "Not analysed by the benchmark; see the figures above.";

const WHY_PROBE: &str = "Most of a probe's wall time is creating the process (fork and exec of a static binary); its own work, \
     one connection and one request, is a small part. Process creation varies between runs on this machine more than that \
     work does, which puts the ratio against curl close to the line.";

const WHY_PUBLISH: &str = "Publish pays a fixed cost once per run (connecting, and on a fresh checkout cargo checking the \
     server build, building both images in-process and proving them healthy) and little per repository, while the peer \
     pays its process start-ups per repository; the ratio grows with the number of repositories.";

const WHY_REQUESTS_PER_SECOND: &str = "The placeholder runs one thread, like nginx with one worker. About two thirds of \
     either server's CPU time per keep-alive request is the kernel's loopback TCP (perf: writev alone over half, as it \
     delivers the answer into wrk's socket), which no server change reaches; the placeholder makes two system calls per \
     request (one read, one writev; the peek is left for first requests and a server near its cap). With 10 connections \
     wrk's own CPU is busy all the time against the placeholder but not against nginx, so the ratio there is bounded by \
     the load generator: the CPU-per-request column shows each server's cost whichever side is the bottleneck.";

const WHY_COLD_BUILD: &str = "What is left is the design card's crates and what they bring: the AWS SDK (aws-config with \
     its STS, SSO and SSO-OIDC clients, aws-sdk-ecr alone over 30 s of one core), bollard (its generated Docker API types \
     about 20 s) and rustls. Summed, the units of `cargo build -p xtask` take about 350 CPU-seconds and the server's two \
     release targets about 95, so on two cores even a perfectly parallel build takes about 220 s, above half of the \
     base's time; and aws-sdk-ecr, with xtask after it, ends the build on one core.";

pub(super) fn best(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(f64::INFINITY, f64::min)
}

pub(super) fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(tool))
        .find(|path| path.is_file())
}

pub(super) fn output_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
        .unwrap_or_default()
}

pub(super) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// The release server for this machine's musl target, as the image task builds it.
pub(super) fn build_server() -> Result<PathBuf> {
    let mut binaries = image::build_servers(&[Platform::native()])?;
    Ok(binaries.remove(0))
}

pub(super) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
