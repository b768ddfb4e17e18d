//! Shared helpers: run the real `xtask` binary and look at what it left in the engine.
#![allow(dead_code)] // each test file uses its own subset

use std::process::{Command, Output};

use bollard::Docker;

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// Runs `xtask args...` with `env` added; returns (exit code, stdout, stderr).
pub fn xtask(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let Output { status, stdout, stderr } = Command::new(XTASK)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run xtask");
    (
        status.code().expect("exit code, not a signal"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

pub async fn docker() -> Docker {
    testbed::docker_engine().expect("a Docker engine");
    Docker::connect_with_defaults().unwrap().negotiate_version().await.unwrap()
}

/// An image name no other test uses, so tests can run in parallel and clean up after themselves.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("xtask-test-{prefix}-{}-{nanos}", std::process::id())
}

/// Removes every tag under `name` (after a test, passed or not).
pub struct Cleanup {
    pub tags: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for tag in &self.tags {
            let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
        }
    }
}
