//! Under attack: each server under slowhttptest's four modes while health checks keep coming.

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::servers::{Running, health_check};
use super::{ATTACKS, CHECK_TIMEOUT, Goal, NOT_ANALYSED, Peer, Settings};

/// What a server did under one attack.
pub(super) struct UnderAttack {
    pub(super) checks: usize,
    pub(super) failed: usize,
    /// Milliseconds; a failed check counts as the full timeout.
    pub(super) slowest_ms: f64,
    pub(super) peak_kib: u64,
}

/// Floods `peer` with slowhttptest in one mode while checking its health from another thread.
pub(super) fn measure_attack(peer: &Peer, flags: &[&str], settings: &Settings) -> Result<UnderAttack> {
    let (mut running, _) = Running::start(peer)?;
    running.wait_ready(peer.name)?;
    std::thread::sleep(Duration::from_millis(100)); // let worker processes settle
    let port = running.port;
    let length = Duration::from_secs(settings.attack_seconds);
    let mut attacker = Command::new("sh")
        .args(["-c", "ulimit -n \"$(ulimit -Hn)\"; exec slowhttptest \"$@\"", "sh"])
        .args(flags)
        .args([
            "-c",
            &settings.attack_connections.to_string(),
            "-r",
            "1000",
            "-l",
            &(settings.attack_seconds + 5).to_string(),
        ])
        .args(["-p", "2", "-u", &format!("http://127.0.0.1:{port}/")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting slowhttptest")?;
    let checks = settings.attack_checks;
    let checker = std::thread::spawn(move || {
        let started = Instant::now();
        (0..checks)
            .map(|i| {
                let at = started + length * i / checks;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                health_check(port)
            })
            .collect::<Vec<_>>()
    });
    let mut peak_kib = 0;
    while !checker.is_finished() {
        peak_kib = peak_kib.max(running.resident_kib());
        std::thread::sleep(Duration::from_millis(200));
    }
    let results = checker.join().map_err(|_| anyhow::anyhow!("the health-check thread panicked"))?;
    let _ = attacker.kill();
    let _ = attacker.wait();
    let slowest = results.iter().map(|r| r.unwrap_or(CHECK_TIMEOUT)).max().unwrap_or_default();
    Ok(UnderAttack {
        checks: results.len(),
        failed: results.iter().filter(|r| r.is_none()).count(),
        slowest_ms: slowest.as_secs_f64() * 1000.0,
        peak_kib,
    })
}

/// Writes the "Under attack" table: every server under every slowhttptest mode.
pub(super) fn attack_section(
    report: &mut String,
    peers: &[Peer],
    settings: &Settings,
    goals: &mut Vec<Goal>,
) -> Result<()> {
    eprintln!("under attack...");
    writeln!(report, "\n## Under attack (slowhttptest, {} connections)\n", settings.attack_connections)?;
    writeln!(
        report,
        "Each server in turn, under each of slowhttptest's modes: {} connections opened at 1,000 a second and held for {} s, \
         while another thread sends `GET /healthcheck.html` on a fresh connection {} times, evenly spaced, each failing \
         after {} s (an ALB's shortest timeout, and `server --probe`'s). Peak memory: the resident set summed over the \
         server's process group, sampled every 0.2 s (busybox forks a process per connection, and each counts its shared \
         pages). Same configurations as above: nginx with one worker and 1,024 worker connections, Apache's mpm_event \
         defaults, the placeholder's default cap of 10,000. Modes: slowloris `-H` (heads never finished), slow body `-B` \
         (a POST body dribbled), slow read `-X` (three pipelined GETs read 32 bytes a second through a tiny window), \
         range `-R` (Apache-killer `Range` headers).\n",
        settings.attack_connections,
        settings.attack_seconds,
        settings.attack_checks,
        CHECK_TIMEOUT.as_secs()
    )?;
    writeln!(
        report,
        "| attack | server | failed health checks | slowest check | peak memory |\n|---|---|---|---|---|"
    )?;
    let (mut ours_never_failed, mut ours_lowest) = (true, true);
    let mut failed_elsewhere = Vec::new();
    for (mode, flags) in ATTACKS {
        let mut rows = Vec::new();
        for peer in peers {
            eprintln!("  {mode}: {}", peer.name);
            rows.push((peer.name, measure_attack(peer, flags, settings)?));
        }
        for (name, r) in &rows {
            let slowest = if r.failed > 0 {
                format!("{:.0} ms (timed out)", r.slowest_ms)
            } else {
                format!("{:.1} ms", r.slowest_ms)
            };
            writeln!(report, "| {mode} | {name} | {} of {} | {slowest} | {} KiB |", r.failed, r.checks, r.peak_kib)?;
        }
        let ours = &rows[0].1;
        ours_never_failed &= ours.failed == 0;
        ours_lowest &= rows.iter().skip(1).all(|(_, r)| ours.peak_kib < r.peak_kib);
        failed_elsewhere
            .extend(rows.iter().skip(1).filter(|(_, r)| r.failed > 0).map(|(name, _)| format!("{name} ({mode})")));
    }
    goals.push(Goal::new(
        "No failed health check under any attack",
        if ours_never_failed { "0 failed" } else { "some failed" }.into(),
        ours_never_failed,
        NOT_ANALYSED,
    ));
    goals.push(Goal::new(
        "Lowest peak memory of the four under every attack",
        if ours_lowest { "lowest in every mode" } else { "not in every mode" }.into(),
        ours_lowest,
        NOT_ANALYSED,
    ));
    if !failed_elsewhere.is_empty() {
        writeln!(report, "\nPeers that failed checks: {}.", failed_elsewhere.join(", "))?;
    }
    Ok(())
}
