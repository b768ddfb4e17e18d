//! One module per `cargo xtask` task: each wires its flags to the layers below (sources, build,
//! proof, clients) and reports. May use everything; nothing below uses it.

pub mod bench;
pub mod fuzz;
pub mod handover;
pub mod image;
pub mod publish;
pub mod status;
pub mod teardown;
pub mod verify;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum OutputFormat {
    Text,
    Json,
}
