//! An ECS service, as `--from stack:` and `--from ecs:` find them and `publish --wait` follows them.

/// DescribeServices takes at most this many services a call.
pub const SERVICES_PER_CALL: usize = 10;

/// An ECS service to follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    pub cluster: String,
    pub name: String,
}

impl Service {
    /// `arn:aws:ecs:REGION:ACCOUNT:service/CLUSTER/NAME` (a stack's physical id); the old form
    /// `service/NAME` is in the `default` cluster.
    pub fn from_arn(arn: &str) -> Option<Service> {
        let path = arn.split(':').nth(5)?.strip_prefix("service/")?;
        match path.split_once('/') {
            Some((cluster, name)) => Some(Service { cluster: cluster.to_owned(), name: name.to_owned() }),
            None => Some(Service { cluster: "default".to_owned(), name: path.to_owned() }),
        }
    }

    pub fn label(&self) -> String {
        format!("{}/{}", self.cluster, self.name)
    }
}
