//! Where the placeholder listens when nothing names its service's port: no `PORT`, none baked in
//! at publish, and task metadata that lists none (Fargate, and awsvpc mode on current EC2
//! agents). What the container can still learn at run time decides it: the names its environment
//! gives ports, its network mode, and what else runs in its task.

use server::sidecars::Neighbour;

/// Ports web frameworks listen on when not told otherwise, most used first, each with where the
/// default is written down:
/// - 3000: Express generator (expressjs.com/starter/generator), Next.js `next start`
///   (nextjs.org/docs/app/api-reference/cli/next), Rails `rails server` (railties `DEFAULT_PORT`),
///   Metabase (metabase.com/docs, "launch on port 3000"), Grafana (`http_port`).
/// - 8080: Spring Boot `server.port` (docs.spring.io), ASP.NET Core images since .NET 8
///   (learn.microsoft.com/dotnet/core/whats-new/dotnet-8/containers), Gin `r.Run()`, Quarkus,
///   Airflow's webserver.
/// - 8000: Django `runserver` (docs.djangoproject.com/ref/django-admin), Uvicorn
///   (uvicorn.org/settings), Gunicorn `bind` (docs.gunicorn.org/settings), `deno serve`
///   (docs.deno.com/runtime/reference/cli/serve), Rocket (rocket.rs/guide, configuration),
///   Laravel `artisan serve`, Gatsby develop.
/// - 5000: Flask `flask run` (flask.palletsprojects.com/server), Kestrel with no endpoint
///   configured (learn.microsoft.com/aspnet/core/fundamentals/servers/kestrel/endpoints).
/// - 8501: Streamlit `server.port` (docs.streamlit.io, config options).
/// - 4000: Phoenix (hexdocs.pm/phoenix/up_and_running).
/// - 8081: Dropwizard's admin connector beside its 8080 (dropwizard.io configuration reference).
/// - 9000: Play Framework `sbt run` (playframework.com/documentation/latest/PlayConsole).
/// - 7007: Backstage's backend (backstage.io/docs, "starts up on port 7007").
/// - 5173 and 4173: Vite's dev server and `vite preview` (vite.dev/config/server-options,
///   preview-options).
/// - 4200: Angular CLI `ng serve` (angular.dev/tools/cli/serve).
/// - 4321: Astro (docs.astro.build/reference/cli-reference).
/// - 1337: Strapi (docs.strapi.io/cms/configurations/server).
/// - 1880: Node-RED `uiPort` (nodered.org/docs/user-guide/configuration).
/// - 2368: Ghost (ghost.org/docs/config).
/// - 3333: AdonisJS (docs.adonisjs.com, `PORT=3333` in new apps).
/// - 4567: Sinatra (sinatrarb.com/intro, `-p` "default is 4567").
/// - 9292: Rack `rackup` and Puma (puma.io, default bind tcp://0.0.0.0:9292).
/// - 6543: Pyramid (docs.pylonsproject.org/projects/pyramid, "Serving on http://localhost:6543").
/// - 7860: Gradio `launch()` (gradio.app/docs).
/// - 8050: Plotly Dash (dash.plotly.com, `app.run` port 8050).
/// - 8088: Apache Superset (superset.apache.org/docs).
/// - 8888: Jupyter Server `--port` (jupyter-server.readthedocs.io).
pub const FRAMEWORK_DEFAULTS: &[u16] = &[
    3000, 8080, 8000, 5000, 8501, 4000, 8081, 9000, 7007, 5173, 4173, 4200, 4321, 1337, 1880, 2368, 3333, 4567, 9292,
    6543, 7860, 8050, 8088, 8888,
];

/// The default port of the placeholder's own image, and of Apache and nginx images.
pub const HTTP_PORT: u16 = 80;

/// Variables frameworks read their own listening port from (besides `PORT`): these name this
/// container's service, never another's, so they are listened on whoever else is in the task.
pub const OWN_PORT_VARIABLES: &[&str] = &[
    "SERVER_PORT", // Spring Boot
    "HTTP_PORT",
    "APP_PORT",
    "APPLICATION_PORT",
    "LISTEN_PORT",
    "CONTAINER_PORT",
    "FLASK_RUN_PORT",        // flask run
    "STREAMLIT_SERVER_PORT", // streamlit
    "QUARKUS_HTTP_PORT",     // Quarkus
    "MICRONAUT_SERVER_PORT", // Micronaut
    "NITRO_PORT",            // Nuxt and Nitro
    "UVICORN_PORT",          // uvicorn
    "MB_JETTY_PORT",         // Metabase
    "GF_SERVER_HTTP_PORT",   // Grafana
    "ASPNETCORE_HTTP_PORTS", // ASP.NET Core 8: `8080;8081`
    "HTTP_PORTS",
    "ASPNETCORE_URLS", // `http://+:5000;https://+:5001`
    "URLS",
    "GUNICORN_CMD_ARGS", // `--bind=0.0.0.0:8000 --workers 3`
];

/// The ports `value` names: `8080`, `8080;8081`, `http://+:5000`, `--bind=0.0.0.0:8000`. In
/// longer values only a number after a colon is a port (`--workers 3` names none).
pub fn ports_in_value(value: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for item in value.split([';', ',']).map(str::trim) {
        let found: Vec<&str> = if item.bytes().all(|b| b.is_ascii_digit()) {
            vec![item]
        } else {
            item.split([' ', '='])
                .filter_map(|word| word.rsplit_once(':'))
                .map(|(_, port)| port.trim_end_matches('/'))
                .collect()
        };
        for port in found.into_iter().filter_map(|p| p.parse::<u16>().ok()) {
            if port > 0 && !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    ports
}

/// Ports the environment names. `OWN_PORT_VARIABLES` always; with `any_name`, also every other
/// variable whose name ends in `PORT` or `PORTS` (`BACKEND_PORT`, `GRPC_PORT`, a database's too),
/// for where nothing else shares the namespace and so nothing can conflict.
pub fn from_environment(vars: &[(String, String)], any_name: bool) -> Vec<u16> {
    let mut ports = Vec::new();
    for (name, value) in vars {
        let name = name.to_ascii_uppercase();
        let own = OWN_PORT_VARIABLES.contains(&name.as_str());
        let other = any_name && name != "PORT" && (name.ends_with("PORT") || name.ends_with("PORTS"));
        if own || other {
            for port in ports_in_value(value) {
                if !ports.contains(&port) {
                    ports.push(port);
                }
            }
        }
    }
    ports
}

/// What the task metadata says about the container's surroundings.
#[derive(Debug, Default)]
pub struct Surroundings {
    /// `awsvpc`, `bridge`, `host`, or `None` when the document does not say.
    pub network_mode: Option<String>,
    /// The task's other containers; `None` when the task document could not be read.
    pub neighbours: Option<Vec<Neighbour>>,
}

/// Where to listen when nothing names the port, and the one log line that says why.
#[derive(Debug, PartialEq)]
pub struct Guess {
    pub ports: Vec<u16>,
    pub why: String,
}

/// The ports to listen on when nothing names the service's port. `environment` is every variable
/// of the container.
pub fn guess(around: &Surroundings, environment: &[(String, String)]) -> Guess {
    let own = from_environment(environment, false);
    let every_default = |any_name: bool, taken: &[u16]| -> Vec<u16> {
        let mut ports = from_environment(environment, any_name);
        ports.extend(FRAMEWORK_DEFAULTS.iter().copied().chain([HTTP_PORT]));
        dedup_without(ports, taken)
    };
    match around.network_mode.as_deref() {
        Some("host") => {
            return Guess {
                ports: own,
                why: "host network mode shares the instance's ports with every task on it, so no port is taken unasked"
                    .into(),
            };
        }
        Some("bridge") => {
            return Guess {
                ports: every_default(true, &[]),
                why: "bridge mode gives the container a network namespace of its own, so it also listens on the ports web frameworks default to".into(),
            };
        }
        _ => {}
    }
    let Some(neighbours) = &around.neighbours else {
        let mut ports = own;
        ports.push(HTTP_PORT);
        return Guess {
            ports: dedup_without(ports, &[]),
            why: "the task document lists nobody else, so only port 80 as before".into(),
        };
    };
    let others: Vec<&Neighbour> = neighbours.iter().filter(|n| **n != Neighbour::Ecs).collect();
    let taken: Vec<u16> = others.iter().flat_map(|n| n.serves().iter().copied()).collect();
    if others.is_empty() {
        return Guess {
            ports: every_default(true, &[]),
            why: "it is the only container in its task, so it also listens on the ports web frameworks default to"
                .into(),
        };
    }
    let described: Vec<String> = others.iter().map(|n| n.describe()).collect();
    if others.iter().all(|n| n.ports().is_some()) {
        return Guess {
            ports: every_default(false, &taken),
            why: format!(
                "beside {}, it listens on the ports web frameworks default to{}",
                described.join("; "),
                if taken.is_empty() { "" } else { ", except theirs" }
            ),
        };
    }
    let ports = dedup_without(own, &taken);
    let why = format!(
        "it runs beside {}: so that every one of them can bind its ports, it takes none unasked{}",
        described.join("; "),
        if ports.is_empty() { "; the port its own health check names is opened when the check runs" } else { "" }
    );
    Guess { ports, why }
}

/// `ports` once each, in order, without any in `taken`.
pub fn dedup_without(ports: Vec<u16>, taken: &[u16]) -> Vec<u16> {
    let mut kept = Vec::new();
    for port in ports {
        if !taken.contains(&port) && !kept.contains(&port) {
            kept.push(port);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use server::sidecars::classify;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn awsvpc(neighbours: &[(&str, &str)]) -> Surroundings {
        Surroundings {
            network_mode: Some("awsvpc".into()),
            neighbours: Some(neighbours.iter().map(|(name, image)| classify(name, image, "NORMAL")).collect()),
        }
    }

    #[test]
    fn values_that_name_ports() {
        assert_eq!(ports_in_value("8080"), vec![8080]);
        assert_eq!(ports_in_value("8080;8081"), vec![8080, 8081]);
        assert_eq!(ports_in_value("http://+:5000;https://+:5001"), vec![5000, 5001]);
        assert_eq!(ports_in_value("--bind=0.0.0.0:8000 --workers 3"), vec![8000]);
        assert_eq!(ports_in_value("http://localhost:5000/"), vec![5000]);
        assert_eq!(ports_in_value("eighty"), Vec::<u16>::new());
    }

    #[test]
    fn own_port_variables_always_others_only_when_alone() {
        let vars = env(&[
            ("SERVER_PORT", "8081"),
            ("DB_PORT", "5432"),
            ("PORT", "9"),
            ("ASPNETCORE_URLS", "http://+:5000"),
            ("HOME", "/"),
        ]);
        assert_eq!(from_environment(&vars, false), vec![8081, 5000]);
        assert_eq!(from_environment(&vars, true), vec![8081, 5432, 5000]);
    }

    #[test]
    fn alone_it_listens_on_the_framework_defaults_and_80() {
        let g = guess(&awsvpc(&[]), &env(&[("GRPC_PORT", "50051")]));
        assert_eq!(g.ports[0], 50051);
        assert!(g.ports.contains(&3000) && g.ports.contains(&8080) && g.ports.contains(&80), "{g:?}");
        assert!(g.why.contains("only container"), "{g:?}");
        let with_pause = Surroundings {
            network_mode: Some("awsvpc".into()),
            neighbours: Some(vec![classify("~internal~ecs~pause", "amazon/amazon-ecs-pause:0.1.0", "CNI_PAUSE")]),
        };
        assert_eq!(guess(&with_pause, &[]).ports, guess(&awsvpc(&[]), &[]).ports);
    }

    #[test]
    fn beside_known_agents_it_leaves_their_ports() {
        let g = guess(
            &awsvpc(&[
                ("log_router", "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable"),
                ("datadog-agent", "public.ecr.aws/datadog/agent:latest"),
            ]),
            &[],
        );
        assert!(g.ports.contains(&3000) && g.ports.contains(&80), "{g:?}");
        for sidecar_port in [24224, 2020, 8126, 5000] {
            assert!(!g.ports.contains(&sidecar_port), "{sidecar_port}: {g:?}");
        }
        let g = guess(
            &awsvpc(&[("otel", "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0")]),
            &env(&[("METRICS_PORT", "8888")]),
        );
        assert!(!g.ports.contains(&8888), "{g:?}");
    }

    #[test]
    fn beside_a_proxy_or_an_unknown_container_it_takes_nothing_unasked() {
        for neighbour in [
            ("proxy", "nginx:1.25"),
            ("worker", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/worker:1"),
            ("envoy", "envoyproxy/envoy:v1.29"),
        ] {
            let g = guess(&awsvpc(&[neighbour, ("log_router", "amazon/aws-for-fluent-bit")]), &[]);
            assert_eq!(g.ports, Vec::<u16>::new(), "{neighbour:?}");
            assert!(g.why.contains(neighbour.0) && g.why.contains("health check names"), "{g:?}");
        }
        let g = guess(
            &awsvpc(&[("proxy", "nginx")]),
            &env(&[("SERVER_PORT", "8080"), ("APP_PORT", "3000"), ("DB_PORT", "5432")]),
        );
        assert_eq!(g.ports, vec![3000], "8080 is the proxy's, a database's port is not this service's");
    }

    #[test]
    fn network_modes() {
        let host = guess(
            &Surroundings { network_mode: Some("host".into()), neighbours: Some(vec![]) },
            &env(&[("HTTP_PORT", "8080")]),
        );
        assert_eq!(host.ports, vec![8080]);
        let bridge = guess(&Surroundings { network_mode: Some("bridge".into()), neighbours: None }, &[]);
        assert!(bridge.ports.contains(&3000) && bridge.ports.contains(&80));
        let unknown = guess(&Surroundings { network_mode: Some("awsvpc".into()), neighbours: None }, &[]);
        assert_eq!(unknown.ports, vec![80]);
    }
}
