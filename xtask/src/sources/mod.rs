//! What the user points at, read into container definitions: names (`--containers`), task
//! definition JSON (`taskdef.rs`), stack files (`stack/`: a CloudFormation template, a CDK
//! `cdk.out`, a Terraform plan), a deployed stack (`deployed.rs`) and a cluster's services
//! (`cluster.rs`); `from.rs` turns `--from` into one list. May use `base` and, for the deployed
//! ones, `clients::aws`.

#[cfg(feature = "stacks")]
pub mod cluster;
#[cfg(feature = "stacks")]
pub mod deployed;
pub mod containers;
pub mod from;
pub mod stack;
pub mod taskdef;
