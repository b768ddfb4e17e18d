//! The four servers, each run the same way on the same pages: start-up, memory, load with wrk,
//! probe time, and the image sizes.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::base::platform::Platform;
use crate::image::oci::{self, ImageSet, Recipe};
use crate::image::{self, Plan};

use super::{CHECK_TIMEOUT, Peer, Sample, Settings, first_line, output_of};

pub(super) fn peers(scratch: &Path, pages: &Path, server: &Path) -> Result<Vec<Peer>> {
    let nginx_dir = scratch.join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let apache_dir = scratch.join("apache");
    std::fs::create_dir_all(&apache_dir)?;
    let server = server.to_path_buf();
    let pages_for_ours = pages.to_path_buf();
    let pages_for_nginx = pages.display().to_string();
    let pages_for_apache = pages.display().to_string();
    let pages_for_busybox = pages.display().to_string();
    let modules = "/usr/lib/apache2/modules";
    Ok(vec![
        Peer {
            name: "placeholder (ours)",
            version: first_line(&output_of(server.to_str().unwrap(), &["--version"])),
            command: Box::new(move |port| {
                let mut c = Command::new(&server);
                c.arg("--port").arg(port.to_string()).arg("--root").arg(&pages_for_ours);
                c
            }),
        },
        Peer {
            name: "nginx, 1 worker",
            version: first_line(&output_of("nginx", &["-v"])),
            command: Box::new(move |port| {
                let config = format!(
                    "daemon off; master_process on; worker_processes 1; user root; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                     events {{ worker_connections 1024; }}\n\
                     http {{ access_log off; include /etc/nginx/mime.types; keepalive_requests 1000000;\n\
                     client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
                     server {{ listen 127.0.0.1:{port}; root {pages_for_nginx}; }} }}\n",
                    d = nginx_dir.display()
                );
                std::fs::write(nginx_dir.join("nginx.conf"), config).expect("nginx config");
                let mut c = Command::new("nginx");
                c.arg("-p")
                    .arg(&nginx_dir)
                    .arg("-c")
                    .arg(nginx_dir.join("nginx.conf"))
                    .arg("-e")
                    .arg(nginx_dir.join("error.log"));
                c
            }),
        },
        Peer {
            name: "Apache httpd, mpm_event",
            version: first_line(&output_of("apache2", &["-v"])),
            command: Box::new(move |port| {
                let config = format!(
                    "LoadModule mpm_event_module {modules}/mod_mpm_event.so\nLoadModule authz_core_module {modules}/mod_authz_core.so\n\
                     LoadModule dir_module {modules}/mod_dir.so\nLoadModule mime_module {modules}/mod_mime.so\n\
                     User www-data\nGroup www-data\nServerName localhost\nListen 127.0.0.1:{port}\n\
                     PidFile {d}/httpd.pid\nErrorLog {d}/error.log\nDefaultRuntimeDir {d}\nMutex file:{d} default\n\
                     TypesConfig /etc/mime.types\nDocumentRoot \"{pages_for_apache}\"\nDirectoryIndex index.html\n\
                     <Directory \"{pages_for_apache}\">\nRequire all granted\n</Directory>\nMaxKeepAliveRequests 0\n",
                    d = apache_dir.display()
                );
                std::fs::write(apache_dir.join("httpd.conf"), config).expect("apache config");
                let mut c = Command::new("apache2");
                c.arg("-d").arg(&apache_dir).arg("-f").arg(apache_dir.join("httpd.conf")).arg("-DFOREGROUND");
                c
            }),
        },
        Peer {
            name: "busybox httpd",
            version: first_line(&output_of("busybox", &[])),
            command: Box::new(move |port| {
                let mut c = Command::new("busybox");
                c.args(["httpd", "-f", "-p", &format!("127.0.0.1:{port}"), "-h", &pages_for_busybox]);
                c
            }),
        },
    ])
}

pub(super) fn pin_to_cpu(cpu: usize) {
    set_cpus(&[cpu]);
}

/// Lets this thread, and the processes it starts from now on, run on every CPU again: publish and
/// the cold builds are measured as a user runs them.
pub(super) fn unpin(cpus: usize) {
    set_cpus(&(0..cpus).collect::<Vec<_>>());
}

fn set_cpus(cpus: &[usize]) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A server process group on CPU 0, killed with its children when dropped.
pub(super) struct Running {
    pub(super) child: Child,
    pub(super) port: u16,
}

impl Running {
    pub(super) fn start(peer: &Peer) -> Result<(Running, Instant)> {
        let port = testbed::free_port()?;
        let mut command = (peer.command)(port);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0);
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                Ok(())
            });
        }
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {}", peer.name))?;
        Ok((Running { child, port }, started))
    }

    /// Polls until `/healthcheck.html` answers 200.
    pub(super) fn wait_ready(&mut self, name: &str) -> Result<Instant> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if get_ok(self.port) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline || self.child.try_wait()?.is_some() {
                bail!("{name} did not answer 200 on /healthcheck.html");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Resident memory of every process in the group, in KiB.
    pub(super) fn resident_kib(&self) -> u64 {
        self.group_stats()
            .map(|(pid, _)| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Each process of the group: its pid, and its `/proc/<pid>/stat` line after the command name.
    fn group_stats(&self) -> impl Iterator<Item = (i32, String)> {
        let group = self.child.id() as i32;
        std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(move |entry| {
            let pid = entry.file_name().to_string_lossy().parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces; after it come state ppid pgrp ...
            let fields = stat.rsplit_once(')')?.1.to_owned();
            let pgrp = fields.split_whitespace().nth(2)?.parse::<i32>().ok()?;
            (pgrp == group).then_some((pid, fields))
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.wait();
        // Let the port and the peer's pid file go before the next start.
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(super) fn get_ok(port: u16) -> bool {
    health_check(port).is_some()
}

/// GET /healthcheck.html on a fresh connection; how long a 200 took, or `None` when there was
/// none within `CHECK_TIMEOUT`.
pub(super) fn health_check(port: u16) -> Option<Duration> {
    let started = Instant::now();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, CHECK_TIMEOUT).ok()?;
    stream.set_read_timeout(Some(CHECK_TIMEOUT.checked_sub(started.elapsed())?)).ok()?;
    stream.write_all(b"GET /healthcheck.html HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    let took = started.elapsed();
    (&head[9..12] == b"200" && took <= CHECK_TIMEOUT).then_some(took)
}

pub(super) fn measure_startup(peer: &Peer, runs: usize) -> Result<(Sample, u64)> {
    let mut times = Vec::new();
    let mut rss = 0;
    for run in 0..runs {
        let (mut running, started) = Running::start(peer)?;
        let ready = running.wait_ready(peer.name)?;
        times.push((ready - started).as_secs_f64() * 1000.0);
        if run == 0 {
            std::thread::sleep(Duration::from_millis(100)); // let worker processes settle
            rss = running.resident_kib();
        }
    }
    Ok((Sample(times), rss))
}

/// One wrk run against a freshly started `peer`.
pub(super) struct LoadRun {
    pub(super) requests_per_second: f64,
    pub(super) p99_ms: f64,
    /// CPU 0's busy time per request answered, in microseconds, when the servers are pinned there:
    /// what the server costs (its processes, the kernel's work for them), whichever side of the
    /// loopback is the bottleneck.
    pub(super) cpu_us_per_request: Option<f64>,
}

pub(super) fn measure_load(peer: &Peer, connections: u32, settings: &Settings, pinned: bool) -> Result<LoadRun> {
    let (mut running, _) = Running::start(peer)?;
    running.wait_ready(peer.name)?;
    let url = format!("http://127.0.0.1:{}/healthcheck.html", running.port);
    let busy_before = cpu0_busy_seconds();
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{connections}"), &format!("-d{}s", settings.load_seconds), "--latency", &url])
        .output()?;
    let busy = cpu0_busy_seconds().zip(busy_before).map(|(after, before)| after - before).filter(|_| pinned);
    let text = String::from_utf8_lossy(&output.stdout);
    let rate = text.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse::<f64>().ok());
    let tail = text.lines().find_map(|l| l.trim().strip_prefix("99%")).and_then(|v| parse_wrk_time(v.trim()));
    // "N requests in 5.00s, ..."
    let answered =
        text.lines().find_map(|l| l.trim().split_once(" requests in ")).and_then(|(n, _)| n.parse::<f64>().ok());
    match (rate, tail, answered) {
        (Some(rate), Some(tail), Some(answered)) if answered > 0.0 => Ok(LoadRun {
            requests_per_second: rate,
            p99_ms: tail,
            cpu_us_per_request: busy.map(|seconds| seconds * 1e6 / answered),
        }),
        _ => bail!("wrk against {} gave no figures:\n{text}", peer.name),
    }
}

/// CPU 0's busy time so far (user, nice, system, irq and softirq; not steal), in seconds. Read
/// per CPU rather than per process: busybox forks a child per connection and Apache recycles its
/// children, and a reaped child's time is lost to per-process counters.
fn cpu0_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu0 "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy = fields.first()? + fields.get(1)? + fields.get(2)? + fields.get(5)? + fields.get(6)?;
    // SAFETY: sysconf only reads a constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(busy as f64 / ticks_per_second)
}

/// wrk prints latencies as `812.00us`, `1.23ms` or `1.01s`; returns milliseconds.
pub(super) fn parse_wrk_time(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        _ => return None,
    })
}

pub(super) fn measure_probes(ours: &Peer, server: &Path, runs: usize) -> Result<Vec<(&'static str, Sample)>> {
    let (mut running, _) = Running::start(ours)?;
    running.wait_ready(ours.name)?;
    let port = running.port.to_string();
    let url = format!("http://127.0.0.1:{port}/healthcheck.html");
    let clients: [(&'static str, Vec<String>); 3] = [
        ("`server --probe`", vec![server.display().to_string(), "--probe".into(), "--port".into(), port.clone()]),
        ("`curl -fsS`", vec!["curl".into(), "-fsS".into(), "-o".into(), "/dev/null".into(), url.clone()]),
        ("`busybox wget --spider`", vec!["busybox".into(), "wget".into(), "-q".into(), "--spider".into(), url.clone()]),
    ];
    let mut results = Vec::new();
    for (name, argv) in clients {
        let mut times = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let status =
                Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            if !status.success() {
                bail!("{name} failed against the placeholder");
            }
        }
        results.push((name, Sample(times)));
    }
    Ok(results)
}

pub(super) fn machine_section(report: &mut String, peers: &[Peer], cpus: usize) -> Result<()> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .unwrap_or(0);
    writeln!(report, "\n## Machine\n")?;
    writeln!(
        report,
        "- CPU: {model}, {cpus} logical CPUs; memory {:.1} GiB; kernel {}",
        memory as f64 / 1048576.0,
        first_line(&output_of("uname", &["-r"]))
    )?;
    for peer in peers {
        writeln!(report, "- {}: {}", peer.name, peer.version)?;
    }
    for (tool, args) in [
        ("wrk", &["-v"][..]),
        ("curl", &["--version"][..]),
        ("docker", &["version", "--format", "engine {{.Server.Version}}"][..]),
    ] {
        writeln!(report, "- {tool}: {}", first_line(&output_of(tool, args)))?;
    }
    Ok(())
}

pub(super) fn method_section(report: &mut String, settings: &Settings, pinned: bool) -> Result<()> {
    writeln!(report, "\n## Method\n")?;
    writeln!(
        report,
        "- Every server serves the same copy of `public_html/` on a loopback port, from a config of its own (nginx: one worker, access log off; Apache: mpm_event with only the modules it needs; busybox: `httpd -f`). The placeholder is the release build for this machine's musl target."
    )?;
    writeln!(
        report,
        "- Start-up: {} spawns each, from `spawn()` to the first `200` on `/healthcheck.html` (polled every 0.1 ms on a fresh connection). Memory: resident set summed over the server's whole process group, read from /proc after the first request.",
        settings.startups
    )?;
    writeln!(
        report,
        "- Load: `wrk -t1 -cN -d{}s --latency` on `/healthcheck.html` with keep-alive, {} round(s) per setting, each server once a round on a fresh start (the ratio to nginx is taken round by round, so the machine's drift falls on both alike). Server CPU per request: the busy time of CPU 0, where only the server runs, during the run, over the requests wrk counted (not given without pinning).{}",
        settings.load_seconds,
        settings.load_runs,
        if pinned {
            " Servers run on CPU 0, wrk and the measuring thread on CPU 1; publish and the cold builds after them run on every CPU, as a user runs them."
        } else {
            " One CPU: no pinning possible."
        }
    )?;
    writeln!(
        report,
        "- Probe: {} runs of each client against the running placeholder, wall time of the whole process.",
        settings.probes
    )?;
    writeln!(
        report,
        "- Publish: {} run(s) of each way per number of repositories (one above 20), each against a fresh moto and registry; the re-run follows at once on the same bed.",
        settings.publish_runs
    )?;
    writeln!(
        report,
        "- Ratios are against the best peer (not counting the placeholder itself): below 1 is better for times and memory, above 1 for requests/s."
    )?;
    Ok(())
}

/// Writes the image table; returns how many times smaller than `httpd:2.4` the larger image is.
pub(super) async fn image_section(report: &mut String) -> Result<f64> {
    let plan = Plan::project(vec![Platform::Amd64, Platform::Arm64]);
    let set = oci::build(&image::sources(&plan)?, &Recipe::default())?;
    writeln!(report, "\n## Image size\n")?;
    writeln!(report, "| image | compressed | uncompressed | source |\n|---|---|---|---|")?;
    for image in &set.images {
        writeln!(
            report,
            "| placeholder {} | {:.0} KiB | {:.0} KiB | measured here (compressed layer, config and manifest, as a registry stores them) |",
            image.platform,
            ImageSet::compressed_size(image) as f64 / 1024.0,
            image.layer_tar.len() as f64 / 1024.0
        )?;
    }
    writeln!(
        report,
        "| `httpd:2.4` (the original tool's base) | ~55 MB | - | the project's field notes (`ECS-NOTES.md`); not measured here: no image can be pulled on this machine |"
    )?;
    writeln!(
        report,
        "| `nginx:alpine` | not quoted | - | this machine cannot reach Docker Hub, and no stored copy of its page gave a figure |"
    )?;
    writeln!(report, "| static-web-server (scratch) | not quoted | - | as above |")?;
    let largest = set.images.iter().map(ImageSet::compressed_size).max().unwrap_or(1) as f64;
    let smaller = 55.0 * 1_000_000.0 / largest;
    writeln!(
        report,
        "\nAgainst `httpd:2.4` at ~55 MB compressed, the larger placeholder image is {smaller:.0} times smaller."
    )?;
    Ok(smaller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_times_and_medians() {
        assert_eq!(parse_wrk_time("812.00us"), Some(0.812));
        assert_eq!(parse_wrk_time("1.50ms"), Some(1.5));
        assert_eq!(parse_wrk_time("2.00s"), Some(2000.0));
        assert_eq!(Sample(vec![3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(Sample(vec![4.0, 1.0, 2.0, 3.0]).median(), 2.5);
    }
}
