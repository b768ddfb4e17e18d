//! `cargo xtask`: the project's tasks, one module per task.

mod aws;
mod bench;
mod cache;
#[cfg(feature = "stacks")]
mod cluster;
#[cfg(feature = "stacks")]
mod deployed;
mod ecr;
mod engine;
#[cfg(feature = "stacks")]
mod follow;
mod from;
mod image;
mod layer;
mod names;
mod oci;
mod platform;
mod progress;
mod proofs;
mod publish;
mod registry;
mod replicate;
mod repo;
mod smoke;
mod stack;
mod stacks;
mod status;
mod taskdef;
mod teardown;
mod verify;

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", version, about = "Build, prove and publish the ECS placeholder image")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the placeholder image for each platform and prove it healthy.
    Image(image::Args),
    /// Create ECR repositories and push the placeholder to each as :latest.
    Publish(publish::Args),
    /// Show the repositories, their settings, and which still serve the placeholder.
    Status(status::Args),
    /// Delete repositories that hold nothing but placeholders.
    Teardown(teardown::Args),
    /// Run the placeholder under task definitions the way ECS does, and say whether each boots healthy.
    Verify(verify::Args),
    /// Measure the placeholder against nginx, Apache and busybox, and publish against the shell way.
    Bench(bench::Args),
}

/// Bad input: exit 2, like clap's own usage errors, with nothing changed.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The innermost error of a chain: for a failed connection, the OS's own words.
pub fn root_cause<'a>(error: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    let mut root = error;
    while let Some(source) = root.source() {
        root = source;
    }
    root
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The registry client's TLS (reqwest, built without a provider of its own: Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let needs_stacks = match &cli.task {
        Task::Publish(args) => args.wait || from::names_aws(&args.from),
        Task::Verify(args) => from::names_aws(&args.from),
        Task::Status(args) => from::names_aws(&args.from),
        Task::Teardown(args) => from::names_aws(&args.from),
        _ => false,
    };
    if needs_stacks && let Some(code) = stacks::run_with_them() {
        return code;
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.task {
            Task::Image(args) => image::run(args).await.map(|()| ExitCode::SUCCESS),
            Task::Publish(args) => publish::run(args).await,
            Task::Status(args) => status::run(args).await,
            Task::Teardown(args) => teardown::run(args).await,
            Task::Verify(args) => verify::run(args).await,
            Task::Bench(args) => bench::run(args).await.map(|()| ExitCode::SUCCESS),
        }
    });
    // Work left in the background (an image build when a target failed first) is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<Usage>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
