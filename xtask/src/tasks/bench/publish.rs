//! Publish against what a user could script (AWS CLI and skopeo), where its time goes phase by
//! phase, to several targets, and the cold build of what a first publish compiles.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Result, bail};

use crate::base::repo;

use super::{Sample, Settings};

/// Figures from the publish section for the goals: peer ÷ publish for 20 repositories, fresh and
/// no-op.
pub(super) struct PublishRatios {
    pub(super) fresh_20: Option<f64>,
    pub(super) noop_20: Option<f64>,
    /// The peer's fresh and re-run times for one repository.
    pub(super) peer_1: Option<(f64, f64)>,
}

/// Writes the publish table: `cargo xtask publish` against the peer a user could script in ten
/// minutes (AWS CLI and skopeo, registry to registry), fresh and re-run, on fresh test beds.
pub(super) fn publish_section(report: &mut String, settings: &Settings, aws_cli: &Path) -> Result<PublishRatios> {
    let mut ratios = PublishRatios { fresh_20: None, noop_20: None, peer_1: None };
    writeln!(report, "\n## Publish: wall time against the test bed (moto's ECR API and a local registry)\n")?;
    writeln!(
        report,
        "| repositories | publish, fresh | peer, fresh | peer ÷ publish | publish, no-op re-run | peer, re-run | peer ÷ publish |\n|---|---|---|---|---|---|---|"
    )?;
    let xtask = std::env::current_exe()?;
    let mut fresh_medians = Vec::new();
    for &count in settings.publish_counts {
        let names: Vec<String> = (1..=count).map(|i| format!("bench-{count}-{i:03}")).collect();
        let runs = if count > 20 { 1 } else { settings.publish_runs };
        let (mut ours, mut ours_noop, mut peer, mut peer_noop) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            // A fresh moto and registry for every run: each starts from empty repositories.
            let bed = testbed::Bed::start()?;
            let publish = || -> Result<f64> {
                let started = Instant::now();
                let output = Command::new(&xtask)
                    .args(["publish", "--containers", &names.join(",")])
                    .envs(warm(&bed))
                    .output()?;
                if !output.status.success() {
                    bail!("publish of {count} failed: {}", String::from_utf8_lossy(&output.stderr));
                }
                Ok(started.elapsed().as_secs_f64())
            };
            ours.push(publish()?);
            ours_noop.push(publish()?);
            let bed = testbed::Bed::start()?;
            // The peer copies from a repository holding the placeholder, put there untimed.
            let output =
                Command::new(&xtask).args(["publish", "--containers", "bench-source"]).envs(warm(&bed)).output()?;
            if !output.status.success() {
                bail!("publishing the peer's source failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            peer.push(peer_way(&bed, &names, aws_cli)?);
            peer_noop.push(peer_way(&bed, &names, aws_cli)?);
        }
        let (ours, ours_noop, peer, peer_noop) = (Sample(ours), Sample(ours_noop), Sample(peer), Sample(peer_noop));
        let fresh = peer.median() / ours.median();
        let noop = peer_noop.median() / ours_noop.median();
        writeln!(
            report,
            "| {count} | {} | {} | {fresh:.1} | {} | {} | {noop:.1} |",
            ours.show("s", 2),
            peer.show("s", 1),
            ours_noop.show("s", 2),
            peer_noop.show("s", 1)
        )?;
        if count == 20 {
            (ratios.fresh_20, ratios.noop_20) = (Some(fresh), Some(noop));
        }
        if count == 1 {
            ratios.peer_1 = Some((peer.median(), peer_noop.median()));
        }
        fresh_medians.push((count, ours.median(), peer.median()));
    }
    if let (Some(&(n1, ours1, peer1)), Some(&(n2, ours2, peer2))) = (fresh_medians.first(), fresh_medians.last())
        && n2 > n1
    {
        let extra = (n2 - n1) as f64;
        writeln!(
            report,
            "\nOne more repository costs publish {:.0} ms and the peer {:.0} ms (the slope between {n1} and {n2} repositories, fresh).",
            (ours2 - ours1) / extra * 1000.0,
            (peer2 - peer1) / extra * 1000.0
        )?;
    }
    writeln!(
        report,
        "\nThe peer is what a user could script in ten minutes with no Docker daemon: per repository `aws ecr create-repository` \
         (its error ignored on a re-run), `aws ecr put-lifecycle-policy` and `skopeo copy --all` from a repository that already \
         holds the placeholder, registry to registry (AWS CLI from PyPI, Debian's skopeo). `cargo xtask publish` builds both \
         platform images in-process, proves them healthy through the engine, and pushes them (blobs mounted across repositories \
         where the registry allows), {} repositories at a time; its re-run finds every repository up to date from the index \
         digest and pushes nothing. Runs with more than 20 repositories are timed once.",
        8
    )?;
    Ok(ratios)
}

/// The commit before the first build was trimmed (debug info, a second HTTP stack): the cold
/// build is measured against it.
pub(super) const COLD_BUILD_BASE: &str = "dfbb1d6f15f177715871fb185b73f17c8252b4ec";

/// What the first `cargo xtask publish` on a fresh machine builds before it does anything: xtask in
/// the dev profile and the server in release for both musl targets, in an empty target
/// directory; for this checkout and for `COLD_BUILD_BASE` (a worktree of it), one after the other.
/// Returns this checkout's time over the base's.
pub(super) fn cold_build_section(report: &mut String, quick: bool) -> Result<Option<f64>> {
    writeln!(report, "\n## Cold build: what the first `cargo xtask publish` compiles\n")?;
    if quick {
        writeln!(report, "Not run in quick mode: two cold builds take minutes.")?;
        return Ok(None);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let build = |dir: &Path| -> Result<f64> {
        let target = tempfile::tempdir()?;
        let started = Instant::now();
        for args in [
            vec!["build", "-p", "xtask"],
            vec![
                "build",
                "--release",
                "-p",
                "server",
                "--target",
                "x86_64-unknown-linux-musl",
                "--target",
                "aarch64-unknown-linux-musl",
            ],
        ] {
            let status = Command::new(&cargo)
                .args(&args)
                .current_dir(dir)
                .env("CARGO_TARGET_DIR", target.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("cold build `cargo {}` in {} failed", args.join(" "), dir.display());
            }
        }
        Ok(started.elapsed().as_secs_f64())
    };
    let worktree = tempfile::tempdir()?;
    let base = worktree.path().join("base");
    let added = Command::new("git")
        .args(["worktree", "add", "--detach"])
        .arg(&base)
        .arg(COLD_BUILD_BASE)
        .current_dir(repo::root())
        .output()?;
    if !added.status.success() {
        writeln!(
            report,
            "Not measured: the base commit {COLD_BUILD_BASE} is not in this clone ({}).",
            String::from_utf8_lossy(&added.stderr).trim()
        )?;
        return Ok(None);
    }
    let before = build(&base);
    let _ = Command::new("git").args(["worktree", "remove", "--force"]).arg(&base).current_dir(repo::root()).output();
    let before = before?;
    let after = build(&repo::root())?;
    let ratio = after / before;
    writeln!(report, "| build | wall time |\n|---|---|")?;
    writeln!(report, "| commit before the trim (`{}`) | {before:.0} s |", &COLD_BUILD_BASE[..10])?;
    writeln!(report, "| this checkout | {after:.0} s |")?;
    writeln!(
        report,
        "\nThis checkout takes {ratio:.2}× the base's time. Each in an empty target directory, one after the other, on this \
         machine's {} cores: `cargo build -p xtask`, then the server in release for x86_64 and aarch64 musl.",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    )?;
    Ok(Some(ratio))
}

/// The bed's environment with the checkout's own cache of builds and proofs (the bed brings an
/// empty one): publish as a user runs it again from an unchanged checkout.
pub(super) fn warm(bed: &testbed::Bed) -> Vec<(&'static str, String)> {
    bed.env().into_iter().filter(|(key, _)| *key != "ECS_PLACEHOLDER_CACHE").collect()
}

/// `publish --timings` of one repository, phase by phase: a fresh checkout (empty cache: cargo's
/// check, compressing the layers and the smoke test all run), a fresh repository from an
/// unchanged checkout (what was built and proven is reused), and a no-op re-run. Returns the
/// medians of the last two, in seconds.
pub(super) fn phases_section(report: &mut String, settings: &Settings) -> Result<Option<(f64, f64)>> {
    let xtask = std::env::current_exe()?;
    let runs = settings.publish_runs;
    let scenarios = ["fresh checkout (empty cache)", "new repository, unchanged checkout", "no-op re-run"];
    let mut phases: Vec<String> = Vec::new();
    // Per scenario: per phase, the timings of every run; and the wall times.
    type Timed = (std::collections::BTreeMap<String, Vec<f64>>, Vec<f64>);
    let mut timed: Vec<Timed> = vec![Default::default(); scenarios.len()];
    for run in 0..runs {
        let bed = testbed::Bed::start()?;
        let cold = tempfile::tempdir()?;
        for (n, scenario) in scenarios.iter().enumerate() {
            let mut command = Command::new(&xtask);
            command
                .args(["publish", "--containers", &format!("phases-{run}-{}", n.min(1)), "--timings"])
                .envs(warm(&bed));
            if n == 0 {
                command.env("ECS_PLACEHOLDER_CACHE", cold.path());
            }
            let started = Instant::now();
            let output = command.output()?;
            let wall = started.elapsed().as_secs_f64();
            if !output.status.success() {
                bail!("publish ({scenario}) failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            for line in String::from_utf8_lossy(&output.stderr).lines() {
                let Some(rest) = line.strip_prefix("timing:") else { continue };
                let Some((ms, phase)) = rest.trim().split_once(" ms  ") else { continue };
                let Ok(ms) = ms.trim().parse::<f64>() else { continue };
                if !phases.iter().any(|p| p == phase) {
                    phases.push(phase.to_owned());
                }
                timed[n].0.entry(phase.to_owned()).or_default().push(ms);
            }
            timed[n].1.push(wall);
        }
    }
    writeln!(report, "\n## Where publish's time goes: one repository, phase by phase (`publish --timings`)\n")?;
    writeln!(report, "| phase | {} |\n|---|---|---|---|", scenarios.join(" | "))?;
    for phase in &phases {
        let cells: Vec<String> = timed
            .iter()
            .map(|(by_phase, _)| by_phase.get(phase).map_or("-".to_owned(), |ms| Sample(ms.clone()).show("ms", 1)))
            .collect();
        writeln!(report, "| {phase} | {} |", cells.join(" | "))?;
    }
    let walls: Vec<String> = timed.iter().map(|(_, wall)| Sample(wall.clone()).show("s", 2)).collect();
    writeln!(report, "| **wall time of the process** | {} |", walls.join(" | "))?;
    writeln!(
        report,
        "\nThe image build (cargo's check and the layers) runs while the target connects and its repositories are read, so \
         those phases overlap; \"in all\" is the task's own time. A fresh checkout builds and proves; an unchanged one \
         reuses the server build (cargo is not asked when nothing it reads changed), the compressed layers and the \
         proof kept for the same index digest under `target/ecs-placeholder/`."
    )?;
    writeln!(
        report,
        "\nBefore this (the same phases, timed once on this machine before the caches and the overlap): connect 99 ms, \
         read 50 ms, cargo's check 483 ms, layers 147 ms, smoke test 2083 ms, writes 180 ms: 2.90 s for a new repository; \
         a no-op re-run 0.42 s (cargo's check 270 ms and the layers 150 ms of it)."
    )?;
    let median = |n: usize| Sample(timed[n].1.clone()).median();
    Ok(Some((median(1), median(2))))
}

/// Publish of the same repositories to 1 target and to 4 (two accounts times two regions through
/// moto's STS), each on a fresh world; returns the 4-target ÷ 1-target ratio of the medians.
pub(super) fn targets_section(report: &mut String, settings: &Settings) -> Result<Option<f64>> {
    let count = if settings.publish_counts.contains(&20) { 20 } else { settings.publish_counts[0] };
    let names: Vec<String> = (1..=count).map(|i| format!("bench-targets-{i:03}")).collect();
    let xtask = std::env::current_exe()?;
    let (dev, prod) = ("111111111111", "222222222222");
    let mut times: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for _ in 0..settings.publish_runs {
        for (i, (profiles, regions)) in
            [("dev", "eu-west-1"), ("dev,prod", "eu-west-1,us-east-1")].into_iter().enumerate()
        {
            let accounts = testbed::Accounts::start(
                testbed::Moto::start()?,
                &[("dev", dev, None), ("prod", prod, None)],
                &[(dev, "eu-west-1"), (dev, "us-east-1"), (prod, "eu-west-1"), (prod, "us-east-1")],
            )?;
            let mut command = Command::new(&xtask);
            accounts.configure(&mut command);
            command.args(["publish", "--containers", &names.join(","), "--profile", profiles, "--region", regions]);
            let started = Instant::now();
            let output = command.output()?;
            if !output.status.success() {
                bail!("publish to {profiles} in {regions} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            times[i].push(started.elapsed().as_secs_f64());
        }
    }
    let (one, four) = (Sample(times.remove(0)), Sample(times.remove(0)));
    let ratio = four.median() / one.median();
    writeln!(report, "\n## Publish to several accounts and regions\n")?;
    writeln!(report, "| targets | repositories | publish, fresh | ÷ 1 target |\n|---|---|---|---|")?;
    writeln!(report, "| 1 (one account, one region) | {count} | {} | 1.00 |", one.show("s", 2))?;
    writeln!(report, "| 4 (two accounts × two regions) | {count} | {} | {ratio:.2} |", four.show("s", 2))?;
    writeln!(
        report,
        "\nEach run on a fresh moto (other accounts through STS AssumeRole from profiles) with a registry per target. \
         The image is built and smoke-tested once per run whatever the number of targets, and every (target, repository) \
         pair shares the one concurrency limit, so four targets cost the extra pushes, not four runs."
    )?;
    Ok(Some(ratio))
}

/// The peer's way, timed: AWS CLI calls and one `skopeo copy --all` per repository.
pub(super) fn peer_way(bed: &testbed::Bed, names: &[String], aws_cli: &Path) -> Result<f64> {
    let script = r#"set -e
policy='{"rules":[{"rulePriority":1,"description":"keep 5","selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}'
for c in $CONTAINERS; do
  "$AWS" ecr create-repository --repository-name "$c" --encryption-configuration encryptionType=KMS >/dev/null 2>&1 || true
  "$AWS" ecr put-lifecycle-policy --repository-name "$c" --lifecycle-policy-text "$policy" >/dev/null
  skopeo copy --all -q --src-tls-verify=false --dest-tls-verify=false --src-creds "$CREDS" --dest-creds "$CREDS" \
    "docker://$REGISTRY/bench-source:latest" "docker://$REGISTRY/$c:latest"
done"#;
    let started = Instant::now();
    let output = Command::new("bash")
        .args(["-c", script])
        .envs(bed.moto.env())
        .env("AWS", aws_cli)
        .env("CONTAINERS", names.join(" "))
        .env("REGISTRY", bed.registry.host())
        .env("CREDS", format!("{}:{}", testbed::ECR_USER, testbed::MOTO_PASSWORD))
        .output()?;
    let elapsed = started.elapsed().as_secs_f64();
    if !output.status.success() {
        bail!("the peer's way failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(elapsed)
}

/// Figures from the big-account section for the goals: one repository, fresh, in the crowded
/// account over the empty one, and the peer's time for one repository over publish's there.
pub(super) struct AccountRatios {
    pub(super) crowded_over_empty: f64,
    pub(super) peer_over_crowded: f64,
    pub(super) families: usize,
}

/// `publish --containers` (no definition given, so names are looked up) of 1 and 20 new
/// repositories, fresh and no-op, in an empty account and in one holding `families` unrelated
/// task definition families, each through the test bed's ECS (its list calls paged as AWS pages
/// them), with what the lookup read.
pub(super) fn account_section(
    report: &mut String,
    settings: &Settings,
    aws_cli: &Path,
    peer_1: Option<f64>,
) -> Result<AccountRatios> {
    let families = if settings.publish_runs > 1 { 2000 } else { 200 };
    let counts: &[usize] = if settings.publish_counts.contains(&20) { &[1, 20] } else { &[1] };
    let xtask = std::env::current_exe()?;
    writeln!(report, "\n## Publish in a big account: names alone, with the lookup\n")?;
    writeln!(
        report,
        "| task definition families in the account | repositories | publish, fresh | publish, no-op re-run | what the lookup read (one repository, fresh) |\n|---|---|---|---|---|"
    )?;
    let mut fresh_one = [0.0; 2];
    let mut peer = None;
    for (n, size) in [0, families].into_iter().enumerate() {
        let mut read = String::new();
        for &count in counts {
            let (mut fresh, mut noop) = (Vec::new(), Vec::new());
            for run in 0..settings.publish_runs {
                let bed = testbed::Bed::start()?;
                let ecs = bed.scheduler()?;
                bed.moto.crowd(size)?;
                let names: Vec<String> = (1..=count).map(|i| format!("account-{count}-{run}-{i:03}")).collect();
                let mut env = warm(&bed);
                env.retain(|(key, _)| *key != "AWS_ENDPOINT_URL");
                env.push(("AWS_ENDPOINT_URL", ecs.endpoint()));
                // moto loads each service's backend at its first call (most of a second for ECS),
                // which AWS does not: one untimed dry run warms every backend the runs use.
                Command::new(&xtask)
                    .args(["publish", "--containers", "warm-up", "--dry-run"])
                    .envs(env.clone())
                    .output()?;
                let publish = || -> Result<(f64, String)> {
                    let started = Instant::now();
                    let output = Command::new(&xtask)
                        .args(["publish", "--containers", &names.join(",")])
                        .envs(env.clone())
                        .output()?;
                    if !output.status.success() {
                        bail!(
                            "publish of {count} in an account of {size} families failed: {}",
                            String::from_utf8_lossy(&output.stderr)
                        );
                    }
                    Ok((started.elapsed().as_secs_f64(), String::from_utf8_lossy(&output.stderr).into_owned()))
                };
                let (seconds, stderr) = publish()?;
                fresh.push(seconds);
                noop.push(publish()?.0);
                if count == 1 && read.is_empty() {
                    read = stderr
                        .lines()
                        .find_map(|l| {
                            l.split_once("pulls it (").map(|(_, rest)| rest.rsplit_once(')').map_or(rest, |(r, _)| r))
                        })
                        .unwrap_or("-")
                        .to_owned();
                }
                if count == 1 && n == 1 && peer.is_none() && peer_1.is_none() {
                    // The peer copies from a repository holding the placeholder, put there untimed.
                    let output = Command::new(&xtask)
                        .args(["publish", "--containers", "bench-source", "--no-lookup"])
                        .envs(warm(&bed))
                        .output()?;
                    if !output.status.success() {
                        bail!("publishing the peer's source failed: {}", String::from_utf8_lossy(&output.stderr));
                    }
                    peer = Some(peer_way(&bed, &[format!("{}-peer", names[0])], aws_cli)?);
                }
            }
            let (fresh, noop) = (Sample(fresh), Sample(noop));
            if count == 1 {
                fresh_one[n] = fresh.median();
            }
            let what = if count == 1 { read.as_str() } else { "" };
            writeln!(report, "| {size} | {count} | {} | {} | {what} |", fresh.show("s", 2), noop.show("s", 2))?;
        }
    }
    let peer = peer_1.or(peer).unwrap_or(f64::NAN);
    writeln!(
        report,
        "\nEach run on a fresh moto and registry, the families registered before publish starts (`service-NNNN`, none \
         named like the repositories), publish as a user types it (`--containers NAME`, no port, no definition), from an \
         unchanged checkout. The lookup reads the families named like each repository (`ListTaskDefinitionFamilies` with \
         `familyPrefix`) and the services being deployed, at a bounded number of calls, never the account's other families."
    )?;
    Ok(AccountRatios {
        crowded_over_empty: fresh_one[1] / fresh_one[0],
        peer_over_crowded: peer / fresh_one[1],
        families,
    })
}
