//! In a build without the `stacks` feature (`--no-default-features`), the readers of what AWS
//! holds (registered task definitions, target groups, `--from stack:`, `--from ecs:`, `--wait`)
//! are built when first asked for: the CloudFormation, ECS and ELBv2 clients are most of xtask's
//! build.

use std::process::{Command, ExitCode};

use crate::base::repo;

/// Runs this very command again through cargo with the `stacks` feature (built the first time,
/// reused after), and returns its exit code; `None` when this build already has them.
pub fn run_with_them() -> Option<ExitCode> {
    if cfg!(feature = "stacks") {
        return None;
    }
    let Some(cargo) = std::env::var_os("CARGO") else {
        eprintln!("error: this xtask was built without the CloudFormation and ECS readers: run it as `cargo xtask ...`");
        return Some(ExitCode::from(2));
    };
    if !repo::target_dir().join("debug/.xtask-stacks-built").exists() {
        eprintln!("building the CloudFormation, ECS and load balancer readers, once (later runs reuse them)...");
    }
    let mut command = Command::new(cargo);
    // What cargo set for this process describes this package (`CARGO_PKG_*`, `CARGO_MANIFEST_DIR`,
    // the library path), and would make the next build think dependencies' build scripts changed.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let about_this_run = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_PACKAGE"].iter().any(|p| name.starts_with(p));
        if about_this_run || name == "LD_LIBRARY_PATH" {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .current_dir(repo::root())
        .args(["run", "--quiet", "--package", "xtask", "--features", "stacks", "--"])
        .args(std::env::args_os().skip(1))
        .status();
    match status {
        Ok(status) => {
            let _ = std::fs::write(repo::target_dir().join("debug/.xtask-stacks-built"), b"");
            Some(ExitCode::from(status.code().map_or(1, |c| c.clamp(0, 255) as u8)))
        }
        Err(e) => {
            eprintln!("error: cannot run cargo for the stack readers: {e}");
            Some(ExitCode::FAILURE)
        }
    }
}
