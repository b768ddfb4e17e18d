//! Talking to what is outside: AWS through aws-config's chain (`aws.rs`), ECR's API (`ecr.rs`),
//! the registry (`registry.rs`), ECR replication (`replicate.rs`), the Docker engine
//! (`engine.rs`), ECS services being rolled out (`follow.rs`), where services stand
//! (`services.rs`) and what ECS records of their deployments and revisions (`deployments.rs`). May use `base`, `image` (the blobs it pushes) and `sources::taskdef`.

pub mod aws;
pub mod deployments;
pub mod ecr;
pub mod engine;
pub mod follow;
pub mod registry;
pub mod replicate;
pub mod services;
