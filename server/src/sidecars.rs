//! What runs beside the placeholder in its task, and which ports each may want: the task metadata's
//! `/task` document names every container and its image, and in awsvpc mode (Fargate) they all
//! share one network namespace, so a port the placeholder holds is a port a sidecar cannot bind.
//!
//! Ports come from each project's documentation and its ECS recipes (FireLens, the Datadog and
//! ADOT ECS guides, App Mesh's Envoy image); where a tool's port is a setting, its documented
//! default and the other ports it commonly opens are all listed: holding one of them would stop
//! that sidecar, and an essential sidecar takes the task down with it.

/// A container beside the placeholder, as the placeholder sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Neighbour {
    /// Added by ECS itself (a pause container; the Service Connect proxy, which listens on an
    /// ephemeral port ECS picks away from every container port of the task).
    Ecs,
    /// A known agent, log router, collector or database: it listens on these ports and no others.
    Agent { name: String, ports: &'static [u16] },
    /// A reverse proxy: it serves on these ports, and its configuration may name any other.
    Proxy { name: String, ports: &'static [u16] },
    /// Anything else, such as another service's image: it may want any port.
    Unknown { name: String },
    /// Another container of the task running this very image (the same `ImageID`): a placeholder
    /// for another of the task's services. Each takes what is still free, and as they share the
    /// task's network namespace, whichever holds a port answers the load balancer there.
    Placeholder { name: String, ports: Vec<u16> },
}

/// Agents by the words of their image's repository (the part after the registry), matched whole:
/// `aws-otel-collector` is an OTel collector, `hotel-api` is not. Checked in order: App Mesh's
/// Envoy before the general `envoy` proxy.
const AGENTS: &[(&str, &[u16])] = &[
    // FireLens: forward input 24224, the HTTP monitoring server 2020 (health checks use it), and
    // the TCP input the ECS agent adds on 8877 for the app's logs.
    ("fluent-bit", &[24224, 2020, 2021, 8877]),
    ("fluentd", &[24224, 24220, 9880]),
    // Datadog Agent: APM 8126, DogStatsD 8125, and its own API, expvar, GUI and process agent.
    ("datadog", &[8125, 8126, 5000, 5001, 5002, 5012, 6062, 6162, 4317, 4318]),
    // ADOT / OpenTelemetry Collector: OTLP, health_check, metrics, zpages, pprof, X-Ray, statsd,
    // Zipkin, Jaeger.
    ("otel", &[4317, 4318, 13133, 8888, 55679, 55680, 55681, 1777, 2000, 8125, 9411, 14250, 14268]),
    ("opentelemetry", &[4317, 4318, 13133, 8888, 55679, 55680, 55681, 1777, 2000, 8125, 9411, 14250, 14268]),
    ("xray", &[2000]),
    ("x-ray", &[2000]),
    ("cloudwatch-agent", &[25888, 8125, 2000, 4317, 4318]),
    ("appmesh-envoy", &[9901, 15000, 15001, 15090]),
    ("grafana/agent", &[12345, 4317, 4318, 9411, 14268]),
    ("grafana/alloy", &[12345, 4317, 4318, 9411, 14268]),
    ("jaeger", &[5775, 5778, 6831, 6832, 9411, 14250, 14268, 16686]),
    ("statsd", &[8125, 8126, 9102, 9125]),
    ("node-exporter", &[9100]),
    ("exporter", &[9100, 9101, 9102, 9104, 9113, 9121, 9187]),
    ("prometheus", &[9090]),
    ("secrets-manager-agent", &[2773]),
    ("instana", &[42699]),
    ("apm-server", &[8200]),
    ("redis", &[6379]),
    ("valkey", &[6379]),
    ("memcached", &[11211]),
    ("postgres", &[5432]),
    ("postgresql", &[5432]),
    ("mysql", &[3306]),
    ("mariadb", &[3306]),
    ("mongo", &[27017]),
    ("mongodb", &[27017]),
    ("rabbitmq", &[5672, 15672]),
    ("localstack", &[4566]),
];

/// Reverse proxies: the ports they serve on by default and in ECS recipes.
const PROXIES: &[(&str, &[u16])] = &[
    ("nginx", &[80, 443, 8080, 8443]),
    ("openresty", &[80, 443, 8080, 8443]),
    ("caddy", &[80, 443, 2019]),
    ("envoy", &[80, 443, 8080, 9901, 10000]),
    ("traefik", &[80, 443, 8080]),
    ("haproxy", &[80, 443, 8404]),
    ("httpd", &[80, 443]),
    ("apache", &[80, 443]),
    ("apache2", &[80, 443]),
    ("varnish", &[80, 6081, 6082]),
    ("oauth2-proxy", &[4180]),
    ("kong", &[8000, 8001, 8443, 8444]),
];

/// A container name as a task definition gives it and task metadata reports it (letters, digits,
/// `-` and `_`, with a letter here), rather than where a file had it (`TaskDef[0]`), an unresolved
/// `${Name}-web`, or an address (`0.0.0.0`).
pub fn is_container_name(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && word.bytes().any(|b| b.is_ascii_alphabetic())
}

/// What the container named `name`, of type `kind` (the document's `Type`), running `image`, is.
pub fn classify(name: &str, image: &str, kind: &str) -> Neighbour {
    let repository = repository_of(image);
    if (!kind.is_empty() && kind != "NORMAL")
        || name.starts_with("~internal~ecs")
        || repository.contains("ecs-service-connect")
    {
        return Neighbour::Ecs;
    }
    let shown = if repository.is_empty() { name.to_owned() } else { format!("{name} ({repository})") };
    let words = format!("-{}-", repository.replace(['/', '.', '_'], "-"));
    let names = |word: &str| words.contains(&format!("-{}-", word.replace('/', "-")));
    if let Some((_, ports)) = AGENTS.iter().find(|(word, _)| names(word)) {
        return Neighbour::Agent { name: shown, ports };
    }
    if let Some((_, ports)) = PROXIES.iter().find(|(word, _)| names(word)) {
        return Neighbour::Proxy { name: shown, ports };
    }
    Neighbour::Unknown { name: shown }
}

/// `public.ecr.aws/aws-observability/aws-otel-collector:v0.40` -> `aws-observability/aws-otel-collector`:
/// the registry host and the tag or digest name no tool.
fn repository_of(image: &str) -> String {
    let image = image.trim().to_ascii_lowercase();
    let without_digest = image.split('@').next().unwrap_or_default();
    let path = match without_digest.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => without_digest,
    };
    match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository.to_owned(),
        _ => path.to_owned(),
    }
}

impl Neighbour {
    /// Ports this container may want; `None` when it may want any.
    pub fn ports(&self) -> Option<&[u16]> {
        match self {
            Neighbour::Ecs => Some(&[]),
            Neighbour::Placeholder { ports, .. } => Some(ports),
            Neighbour::Agent { ports, .. } => Some(ports),
            Neighbour::Proxy { .. } | Neighbour::Unknown { .. } => None,
        }
    }

    /// How a log line names it, e.g. `log_router (aws-observability/aws-for-fluent-bit)`.
    pub fn describe(&self) -> String {
        match self {
            Neighbour::Ecs => "a container ECS adds".to_owned(),
            Neighbour::Agent { name, .. } => name.clone(),
            Neighbour::Proxy { name, ports } => {
                let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!("{name}, a proxy serving on {} or any port its configuration names", ports.join(", "))
            }
            Neighbour::Unknown { name } => format!("{name}, which may listen on any port"),
            Neighbour::Placeholder { name, .. } => format!("{name}, another placeholder (the same image)"),
        }
    }

    /// Ports it is known to serve on by default, for a proxy (so 80 is never taken from it), and
    /// those the task document maps for another placeholder.
    pub fn serves(&self) -> &[u16] {
        match self {
            Neighbour::Proxy { ports, .. } | Neighbour::Agent { ports, .. } => ports,
            Neighbour::Placeholder { ports, .. } => ports,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_real_tasks_carry() {
        let agent = |name: &str, image: &str| match classify(name, image, "NORMAL") {
            Neighbour::Agent { ports, .. } => ports.to_vec(),
            other => panic!("{image}: {other:?}"),
        };
        assert!(agent("log_router", "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable").contains(&24224));
        assert!(
            agent("log_router", "906394416424.dkr.ecr.us-east-1.amazonaws.com/aws-for-fluent-bit:2.32.0")
                .contains(&2020)
        );
        assert!(agent("datadog-agent", "public.ecr.aws/datadog/agent:latest").contains(&8126));
        assert!(
            agent("datadog-agent", "datadog/agent:7").contains(&5000),
            "the agent's expvar port is Flask's default"
        );
        assert!(
            agent("aws-otel-collector", "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0").contains(&13133)
        );
        assert!(agent("otel", "otel/opentelemetry-collector-contrib:0.98.0").contains(&4318));
        assert_eq!(agent("xray-daemon", "amazon/aws-xray-daemon"), vec![2000]);
        assert!(agent("cwagent", "public.ecr.aws/cloudwatch-agent/cloudwatch-agent:latest").contains(&25888));
        assert!(
            agent("envoy", "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.27.3.0-prod")
                .contains(&15000)
        );
        assert!(agent("agent", "grafana/agent:v0.40.0").contains(&12345));
        assert_eq!(agent("cache", "redis:7-alpine"), vec![6379]);
    }

    #[test]
    fn proxies_ecs_and_the_rest() {
        for image in [
            "nginx:1.25",
            "nginxinc/nginx-unprivileged",
            "public.ecr.aws/nginx/nginx:stable",
            "caddy:2",
            "envoyproxy/envoy:v1.29",
            "traefik:v3",
            "haproxy:2.9",
            "httpd:2.4",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop-nginx:latest",
        ] {
            let n = classify("proxy", image, "NORMAL");
            assert!(
                matches!(n, Neighbour::Proxy { .. }) && n.ports().is_none() && n.serves().contains(&80),
                "{image}: {n:?}"
            );
        }
        assert_eq!(classify("~internal~ecs~pause", "amazon/amazon-ecs-pause:0.1.0", "CNI_PAUSE"), Neighbour::Ecs);
        assert_eq!(classify("x", "", "NAMESPACE_PAUSE"), Neighbour::Ecs);
        assert_eq!(
            classify("ecs-service-connect-7f3a", "ecs-service-connect-agent:interface-v1", "NORMAL"),
            Neighbour::Ecs
        );
        let other = classify("worker", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/worker:v3", "NORMAL");
        assert!(matches!(other, Neighbour::Unknown { .. }) && other.ports().is_none());
        assert!(other.describe().starts_with("worker (worker)"), "{}", other.describe());
        // Whole words only: a hotel's API is no OTel collector, a redistributor no Redis.
        for image in ["hotel-api:1", "acme/redistributor", "nginxish"] {
            assert!(matches!(classify("app", image, "NORMAL"), Neighbour::Unknown { .. }), "{image}");
        }
    }

    #[test]
    fn repositories_without_registry_tag_or_digest() {
        assert_eq!(repository_of("public.ecr.aws/datadog/agent:7@sha256:ab"), "datadog/agent");
        assert_eq!(repository_of("localhost:5000/nginx"), "nginx");
        assert_eq!(repository_of("Redis"), "redis");
        assert_eq!(repository_of("registry:5000/a/b:tag"), "a/b");
    }
}
