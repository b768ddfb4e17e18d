//! The placeholder image's only program: a static file server, or with `--probe` its health check.

mod args;
mod probe;
mod serve;
mod site;

use std::process::ExitCode;

use args::{Mode, UsageError};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn main() -> ExitCode {
    let mode = match args::parse(std::env::args_os().skip(1), |name| std::env::var_os(name)) {
        Ok(mode) => mode,
        Err(UsageError { message, probe }) => {
            eprintln!("server: {message}\n\n{}", args::USAGE);
            // Docker reserves exit code 2 for health checks: a probe always fails with 1.
            return ExitCode::from(if probe { 1 } else { 2 });
        }
    };
    // One thread is plenty for static files from memory, and starts fastest.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match mode {
        Mode::Help => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Mode::Version => {
            println!("server {VERSION}");
            ExitCode::SUCCESS
        }
        Mode::Probe(config) => match runtime.block_on(probe::run(&config)) {
            Ok(verdict) => {
                println!("{verdict}");
                ExitCode::SUCCESS
            }
            Err(verdict) => {
                eprintln!("{verdict}");
                ExitCode::FAILURE
            }
        },
        Mode::Serve(config) => match runtime.block_on(serve(config)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("server: {message}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(config: args::ServeConfig) -> Result<(), String> {
    let stop = serve::StopSignals::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let site = site::Site::load(&config.root)?;
    let listener = serve::bind(config.port).map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => format!("port {} is already in use: stop the other server or set PORT", config.port),
        std::io::ErrorKind::PermissionDenied => format!("no permission to listen on port {}: use a port above 1023 or run as root", config.port),
        _ => format!("cannot listen on port {}: {e}", config.port),
    })?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    println!("server {VERSION} listening on {address}, serving {} files from {}", site.len(), config.root.display());
    if !site.contains(args::DEFAULT_PROBE_PATH) {
        eprintln!("warning: {} has no healthcheck.html, so the default --probe will fail", config.root.display());
    }
    serve::run(config, site, listener, stop).await.map_err(|e| e.to_string())
}
