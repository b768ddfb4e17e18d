//! Talking to what is outside: AWS through aws-config's chain (`aws.rs`), ECR's API (`ecr.rs`),
//! the registry (`registry.rs`), ECR replication (`replicate.rs`), the Docker engine
//! (`engine.rs`) and ECS services being rolled out (`follow.rs`). May use `base` and `build` (the
//! blobs it pushes).

pub mod aws;
pub mod ecr;
pub mod engine;
#[cfg(feature = "stacks")]
pub mod follow;
pub mod registry;
pub mod replicate;
