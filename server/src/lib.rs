//! What the project's tasks share with the server: the sidecars real tasks run beside it and the
//! ports each wants (`cargo xtask verify` runs stand-ins for them on those ports).

pub mod sidecars;
