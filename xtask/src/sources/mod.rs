//! What the user points at, read into container definitions: names (`--containers`), task
//! definition JSON (`taskdef.rs`), stack files (`stack/`: a CloudFormation template, a CDK
//! `cdk.out`, a Terraform plan), a deployed stack (`deployed.rs`), a cluster's services
//! (`cluster.rs`), registered task definitions and target groups (`registered.rs`, `balancer.rs`),
//! the lookup of `--containers` names among them (`lookup.rs`);
//! `from.rs` turns them into one list. May use `base` and, for the deployed ones, `clients::aws`.

pub mod balancer;
pub mod cluster;
pub mod containers;
pub mod deployed;
pub mod from;
pub mod lookup;
pub mod registered;
pub mod stack;
pub mod taskdef;
