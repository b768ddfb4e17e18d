//! `cargo xtask`: the project's tasks, one module per task.

mod build;
mod context;
mod engine;
mod image;
mod names;
mod platform;
mod progress;
mod repo;
mod smoke;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.task {
            Task::Image(args) => image::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
