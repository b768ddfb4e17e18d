//! Talking to what is outside: AWS through aws-config's chain (`aws.rs`), ECR's API (`ecr.rs`),
//! the registry (`registry.rs`), ECR replication (`replicate.rs`), the Docker engine
//! (`engine.rs`), ECS services being rolled out (`follow.rs`) and where services stand
//! (`services.rs`). May use `base`, `image` (the blobs it pushes) and `sources::taskdef`.

pub mod aws;
pub mod ecr;
pub mod engine;
pub mod follow;
pub mod registry;
pub mod replicate;
pub mod services;
