//! `cargo xtask bench --quick`: the benchmark itself still runs and writes every section with
//! figures. Figures are not judged here; machines are noisy.

mod common;

use common::*;

#[test]
fn quick_benchmark_writes_every_section_with_figures() {
    testbed::docker_engine().expect("a Docker engine");
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("BENCHMARKS.md");
    let (code, _, stderr) = xtask(&["bench", "--quick", "--output", report.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&report).unwrap();
    for section in [
        "## Machine",
        "## Method",
        "## Start-up and memory",
        "## Throughput and latency",
        "## Health-check client",
        "## Under attack",
        "## Image size",
        "## Publish",
        "## Publish to several accounts and regions",
    ] {
        assert!(text.contains(section), "missing {section}:\n{text}");
    }
    for server in ["placeholder (ours)", "nginx, 1 worker", "Apache httpd, mpm_event", "busybox httpd"] {
        let rows = text.lines().filter(|l| l.starts_with(&format!("| {server} |"))).count();
        assert_eq!(rows, 2, "{server} should have a start-up row and a load row:\n{text}");
    }
    // Every table row carries a number where a figure belongs.
    let load_row = text.lines().find(|l| l.starts_with("| placeholder (ours) | 10 |")).expect("a load row for ours");
    assert!(
        load_row.contains(" ms (") && load_row.contains(" µs ("),
        "load rows carry latency and CPU per request: {load_row}"
    );
    let publish_row = text.lines().find(|l| l.starts_with("| 1 |")).expect("publish row for one container");
    // Both ways timed, fresh and re-run: "median s (min–max)" four times, with their ratios.
    assert_eq!(publish_row.matches(" s (").count(), 4, "{publish_row}");
    let four_targets = text.lines().find(|l| l.starts_with("| 4 (two accounts")).expect("a row for four targets");
    assert!(
        four_targets.contains(" s (")
            && four_targets.split('|').nth(4).is_some_and(|r| r.trim().parse::<f64>().is_ok()),
        "{four_targets}"
    );
}
