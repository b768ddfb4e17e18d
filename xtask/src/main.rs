//! `cargo xtask`: the project's tasks, one module per task.

mod base;
mod clients;
mod image;
mod proof;
mod sources;
mod tasks;

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
    Image(tasks::image::Args),
    /// Create ECR repositories and push the placeholder to each as :latest.
    Publish(tasks::publish::Args),
    /// Show the repositories, their settings, and which still serve the placeholder.
    Status(tasks::status::Args),
    /// Delete repositories that hold nothing but placeholders, or (--images) the placeholder's images.
    Teardown(tasks::teardown::Args),
    /// Start a new deployment of each service still running a placeholder whose tag now holds the
    /// real image, and follow it until the real image runs.
    Handover(tasks::handover::Args),
    /// Run the placeholder under task definitions the way ECS does, and say whether each boots healthy.
    Verify(tasks::verify::Args),
    /// Measure the placeholder against nginx, Apache and busybox, and publish against the shell way.
    Bench(tasks::bench::Args),
    /// Fuzz the server's parsers for a while each, from the inputs kept in fuzz/ (needs cargo-fuzz).
    Fuzz(tasks::fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The docs' tests check that every command they show parses with the current flags.
    if std::env::var_os("XTASK_PARSE_ONLY").is_some() {
        return ExitCode::SUCCESS;
    }
    // The registry client's TLS (reqwest, built without a provider of its own: Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.task {
            Task::Image(args) => tasks::image::run(args).await.map(|()| ExitCode::SUCCESS),
            Task::Publish(args) => tasks::publish::run(args).await,
            Task::Status(args) => tasks::status::run(args).await,
            Task::Teardown(args) => tasks::teardown::run(args).await,
            Task::Handover(args) => tasks::handover::run(args).await,
            Task::Verify(args) => tasks::verify::run(args).await,
            Task::Bench(args) => tasks::bench::run(args).await.map(|()| ExitCode::SUCCESS),
            Task::Fuzz(args) => tasks::fuzz::run(args).map(|()| ExitCode::SUCCESS),
        }
    });
    // Work left in the background (an image build when a target failed first) is not waited for.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<base::Usage>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
