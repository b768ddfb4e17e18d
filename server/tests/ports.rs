//! Which ports the server listens on: `PORT`, `PLACEHOLDER_PORTS`, a stand-in's `--port`, and the
//! container's ports from a fake ECS task metadata endpoint; busy ports are skipped.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A task metadata endpoint on loopback. `answer(path, request number)` gives status and body;
/// the request number counts requests for the container document (`/v4/test`).
struct Metadata {
    uri: String,
    container_requests: Arc<AtomicUsize>,
}

impl Metadata {
    fn serve(answer: impl Fn(&str, usize) -> (u16, String) + Send + 'static) -> Metadata {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://127.0.0.1:{}/v4/test", listener.local_addr().unwrap().port());
        let container_requests = Arc::new(AtomicUsize::new(0));
        let counter = container_requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                while reader.read_line(&mut head).is_ok_and(|n| n > 2) && !head.ends_with("\r\n\r\n") {}
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let n = if path == "/v4/test" {
                    counter.fetch_add(1, Ordering::SeqCst)
                } else {
                    counter.load(Ordering::SeqCst)
                };
                let (status, body) = answer(&path, n);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Metadata { uri, container_requests }
    }
}

fn container(ports: &[u16], network_mode: &str) -> String {
    let ports: Vec<String> =
        ports.iter().map(|p| format!(r#"{{"ContainerPort":{p},"Protocol":"tcp","HostPort":{p}}}"#)).collect();
    format!(
        r#"{{"DockerId":"abc","Name":"web","Ports":[{}],"Networks":[{{"NetworkMode":"{network_mode}"}}]}}"#,
        ports.join(",")
    )
}

fn serve(env: &[(&str, &str)]) -> (Server, Fixture) {
    let fixture = Fixture::new();
    let root = fixture.root();
    let mut env = env.to_vec();
    env.push(("DOCUMENT_ROOT", root.to_str().unwrap()));
    (Server::spawn(Path::new(BIN), &[], &env), fixture)
}

fn answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        && get(([127, 0, 0, 1], port).into(), "/health").status == 200
}

#[test]
fn port_and_placeholder_ports_at_once_without_metadata() {
    let (a, b, c) = (free_port(), free_port(), free_port());
    let started = Instant::now();
    let (server, _fixture) = serve(&[("PORT", &a.to_string()), ("PLACEHOLDER_PORTS", &format!("{b}, {c}"))]);
    eprintln!("started in {:?}", started.elapsed());
    assert_eq!(server.port, a);
    for port in [a, b, c] {
        assert!(server.first_line.contains(&format!("]:{port}")), "{}", server.first_line);
        assert!(answers(port), "port {port}");
    }
}

#[test]
fn a_busy_port_is_skipped_in_one_line() {
    let busy = TcpListener::bind("[::]:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let free = free_port();
    let (server, _fixture) = serve(&[("PLACEHOLDER_PORTS", &format!("{busy_port},{free}"))]);
    assert_eq!(server.port, free);
    assert!(answers(free));
    let errors = server.error_lines(Duration::from_millis(300));
    assert_eq!(
        errors,
        vec![format!("server: skipped: port {busy_port} is already in use: stop the other server or set PORT")]
    );
}

#[test]
fn metadata_ports_replace_the_fallback() {
    let (mine, fallback) = (free_port(), free_port());
    let metadata = Metadata::serve(move |_, _| (200, container(&[mine], "bridge")));
    let (server, _fixture) =
        serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_PORTS", &fallback.to_string())]);
    assert_eq!(server.port, mine);
    assert!(answers(mine));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", fallback)).is_err(),
        "the fallback port must stay free for sidecars"
    );
}

#[test]
fn bridge_mode_ports_that_appear_after_start_are_added() {
    let (given, mine) = (free_port(), free_port());
    // Bridge mode: the agent records the ports only after it has seen the container start.
    let metadata = Metadata::serve(move |path, n| match (path, n) {
        ("/v4/test", 0) => (200, container(&[], "bridge")),
        ("/v4/test/task", 1) => (200, r#"{"Containers":[]}"#.into()),
        _ => (200, container(&[mine], "bridge")),
    });
    let (server, _fixture) = serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PORT", &given.to_string())]);
    assert_eq!(server.port, given, "PORT is served at once, before the metadata answers");
    let line = server.next_line(Duration::from_secs(5)).expect("a line for the added port");
    assert_eq!(line, format!("also listening on [::]:{mine}"));
    assert!(answers(mine) && answers(given));
    assert_eq!(metadata.container_requests.load(Ordering::SeqCst), 2);
}

#[test]
fn ports_are_found_in_the_task_document_by_docker_id() {
    let mine = free_port();
    let metadata = Metadata::serve(move |path, _| match path {
        "/v4/test/task" => (
            200,
            format!(
                r#"{{"Containers":[{{"DockerId":"other","Name":"web","Ports":[{{"ContainerPort":1}}]}},{}]}}"#,
                container(&[mine], "bridge")
            ),
        ),
        _ => (200, container(&[], "bridge")),
    });
    let (server, _fixture) = serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_PORTS", "1")]);
    assert_eq!(server.port, mine);
}

#[test]
fn awsvpc_metadata_without_ports_falls_back_at_once() {
    let fallback = free_port();
    let metadata = Metadata::serve(|path, _| match path {
        "/v4/test/task" => (200, r#"{"Containers":[{"DockerId":"abc"}]}"#.into()),
        _ => (200, container(&[], "awsvpc")),
    });
    let started = Instant::now();
    let (server, _fixture) =
        serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_PORTS", &fallback.to_string())]);
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?} for ports that never come", started.elapsed());
    assert_eq!(server.port, fallback);
    let errors = server.error_lines(Duration::from_millis(200)).join("\n");
    assert!(
        errors.contains("awsvpc network mode") && errors.contains(&format!("listening on {fallback} instead")),
        "{errors}"
    );
}

#[test]
fn unreachable_or_broken_metadata_falls_back_within_seconds() {
    let fallback = free_port();
    let broken = Metadata::serve(|_, _| (200, "{not json".into()));
    let closed = format!("http://127.0.0.1:{}/v4/x", free_port());
    for uri in [broken.uri.as_str(), closed.as_str(), "https://example.com/v4/x"] {
        let started = Instant::now();
        let (server, _fixture) =
            serve(&[("ECS_CONTAINER_METADATA_URI_V4", uri), ("PLACEHOLDER_PORTS", &fallback.to_string())]);
        assert!(started.elapsed() < Duration::from_millis(3500), "{uri}: {:?}", started.elapsed());
        assert_eq!(server.port, fallback, "{uri}");
    }
}

#[test]
fn a_stand_in_serves_as_the_main_process_and_adds_its_port_argument() {
    let names = Names::new();
    let (extra, fallback) = (free_port(), free_port());
    let fixture = Fixture::new();
    let root = fixture.root();
    let extra_arg = extra.to_string();
    let node = names.path("node");
    // `unshare --pid --fork` makes it PID 1 of its own namespace, as a container's entry point is.
    let server = Server::spawn(
        Path::new("/usr/bin/unshare"),
        &["--pid", "--fork", "--kill-child", node.to_str().unwrap(), "server.js", "--port", &extra_arg],
        &[("PLACEHOLDER_PORTS", &fallback.to_string()), ("DOCUMENT_ROOT", root.to_str().unwrap())],
    );
    assert!(answers(extra) && answers(fallback));
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(
        errors.contains(&format!("ignoring arguments meant for the real image: server.js --port {extra}")),
        "{errors}"
    );

    // apache2 -D FOREGROUND, as the AWS reference architecture's entry point has it.
    let other = free_port();
    let apache = names.path("apache2");
    let server = Server::spawn(
        Path::new("/usr/bin/unshare"),
        &["--pid", "--fork", "--kill-child", apache.to_str().unwrap(), "-D", "FOREGROUND"],
        &[("PLACEHOLDER_PORTS", &other.to_string()), ("DOCUMENT_ROOT", root.to_str().unwrap())],
    );
    assert_eq!(server.port, other);
}

#[test]
fn a_stand_in_that_is_not_the_main_process_is_a_health_check_never_a_server() {
    let names = Names::new();
    let fixture = Fixture::new();
    let root = fixture.root();
    let port = free_port();
    // `CMD node healthcheck.js`: nothing serves yet, so unhealthy, and it must not start serving.
    let check = |env: &[(&str, &str)]| {
        Command::new(names.path("node")).arg("healthcheck.js").env_clear().envs(env.iter().copied()).output().unwrap()
    };
    // In a network namespace of its own, as in a container: here other tests' servers listen.
    let alone = Command::new("/usr/bin/unshare")
        .args(["--net", names.path("node").to_str().unwrap(), "healthcheck.js"])
        .env_clear()
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    assert_eq!(alone.status.code(), Some(1), "{alone:?}");
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(said.contains("node healthcheck.js") && said.contains("unhealthy"), "{said}");
    assert!(!answers(port), "the check must not have become a server");

    let server =
        Server::spawn(BIN.as_ref(), &["--port", &port.to_string()], &[("DOCUMENT_ROOT", root.to_str().unwrap())]);
    let healthy = check(&[("PORT", &server.port.to_string())]);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert!(String::from_utf8_lossy(&healthy.stderr).contains("healthy ("));
}

/// Task metadata as Fargate serves it: no `Ports`, network mode awsvpc, and a task document that
/// lists this container (`web`) and `others` as `(name, image, type)`.
fn fargate(others: &[(&str, &str, &str)]) -> Metadata {
    let mut containers = vec![container(&[], "awsvpc")];
    for (name, image, kind) in others {
        containers.push(format!(
            r#"{{"DockerId":"{name}-id","Name":"{name}","Image":"{image}","Type":"{kind}","KnownStatus":"PENDING"}}"#
        ));
    }
    let task = format!(r#"{{"LaunchType":"FARGATE","Containers":[{}]}}"#, containers.join(","));
    Metadata::serve(move |path, _| match path {
        "/v4/test/task" => (200, task.clone()),
        _ => (200, container(&[], "awsvpc")),
    })
}

/// Tests that listen on the ports web frameworks default to take turns: those ports are this
/// machine's, not a free port each.
static DEFAULT_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A control socket name of this test's own: the servers of parallel tests share a PID namespace.
fn control_socket() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("ecs-minimal-container-test/{}/{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// The ports named in the start-up line.
fn listening(first_line: &str) -> Vec<u16> {
    first_line.split("]:").skip(1).filter_map(|rest| rest.split([',', ' ']).next()?.parse().ok()).collect()
}

#[test]
fn alone_in_its_task_on_fargate_it_listens_where_web_frameworks_do() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let metadata = fargate(&[("~internal~ecs~pause", "amazon/amazon-ecs-pause:0.1.0", "CNI_PAUSE")]);
    let grpc = free_port();
    let (server, _fixture) = serve(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri),
        ("PLACEHOLDER_CONTROL_SOCKET", &control_socket()),
        ("GRPC_PORT", &grpc.to_string()),
    ]);
    let ports = listening(&server.first_line);
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(errors.contains("only container in its task"), "{errors}");
    // A default some other program on this machine holds is skipped and said so, never fatal.
    for port in [grpc, 3000, 8080, 8000, 5000, 8501, 7007, 80] {
        assert!(
            ports.contains(&port) || errors.contains(&format!("port {port} is already in use")),
            "{port}: {}\n{errors}",
            server.first_line
        );
    }
    assert!(answers(grpc));
}

#[test]
fn beside_a_log_router_it_leaves_the_log_routers_ports() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let metadata = fargate(&[("log_router", "public.ecr.aws/aws-observability/aws-for-fluent-bit:stable", "NORMAL")]);
    let (server, _fixture) =
        serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_CONTROL_SOCKET", &control_socket())]);
    let ports = listening(&server.first_line);
    assert!(!ports.contains(&24224) && !ports.contains(&2020), "{}", server.first_line);
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(errors.contains("beside log_router (aws-observability/aws-for-fluent-bit)"), "{errors}");
    assert!(ports.contains(&3000) || errors.contains("port 3000 is already in use"), "{}\n{errors}", server.first_line);
}

#[test]
fn beside_a_proxy_it_takes_no_port_until_its_health_check_names_one() {
    let names = Names::new();
    let metadata = fargate(&[("proxy", "nginx:1.25", "NORMAL"), ("log_router", "amazon/aws-for-fluent-bit", "NORMAL")]);
    let socket = control_socket();
    let (server, _fixture) =
        serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_CONTROL_SOCKET", &socket)]);
    assert!(server.first_line.contains("listening on no port yet"), "{}", server.first_line);
    let errors = server.error_lines(Duration::from_millis(300));
    assert_eq!(errors.len(), 1, "one line says why: {errors:?}");
    assert!(errors[0].contains("proxy (nginx)") && errors[0].contains("health check names"), "{errors:?}");

    // The container's own check, as ECS runs it, names the service's port: it is opened, then probed.
    let port = free_port();
    let check = Command::new(names.path("sh"))
        .args(["-c", &format!("curl -f http://localhost:{port}/health || exit 1")])
        .env_clear()
        .env("PLACEHOLDER_CONTROL_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert_eq!(
        server.next_line(Duration::from_secs(2)).as_deref(),
        Some(format!("also listening on [::]:{port} (its health check names it)").as_str())
    );
    // From now on the load balancer's check on that port passes too.
    assert_eq!(get(([127, 0, 0, 1], port).into(), "/health").status, 200);

    // `--probe --port`, wget, and what the shell cannot run but names a port (`nc`) open theirs too.
    for (program, args) in [
        ("server", vec!["--probe".to_owned(), "--port".to_owned(), free_port().to_string()]),
        ("wget", vec!["-q".to_owned(), "--spider".to_owned(), format!("http://127.0.0.1:{}/", free_port())]),
        ("sh", vec!["-c".to_owned(), format!("nc -z localhost {}", free_port())]),
    ] {
        let path = if program == "server" { std::path::PathBuf::from(BIN) } else { names.path(program) };
        let output =
            Command::new(path).args(&args).env_clear().env("PLACEHOLDER_CONTROL_SOCKET", &socket).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{program} {args:?}: {output:?}");
        assert!(
            server.next_line(Duration::from_secs(2)).is_some_and(|l| l.starts_with("also listening on")),
            "{program}"
        );
    }
}

#[test]
fn a_process_in_another_pid_namespace_cannot_ask_for_ports() {
    let names = Names::new();
    let fixture = Fixture::new();
    let metadata = fargate(&[("proxy", "nginx", "NORMAL")]);
    let socket = control_socket();
    // The server as a container's PID 1, and the asker in a PID namespace of its own: a sidecar.
    let server = Server::spawn(
        Path::new("/usr/bin/unshare"),
        &["--pid", "--fork", "--kill-child", names.path("node").to_str().unwrap()],
        &[
            ("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri),
            ("PLACEHOLDER_CONTROL_SOCKET", &socket),
            ("DOCUMENT_ROOT", fixture.root().to_str().unwrap()),
        ],
    );
    assert!(server.first_line.contains("no port yet"), "{}", server.first_line);
    let port = free_port();
    // The asker runs below its namespace's PID 1 (a shell and a subshell), as a sidecar's process
    // would: as PID 1, or an init's child, the binary would be a server, not curl.
    let curl = format!("{} -sf http://localhost:{port}/", names.path("curl").display());
    let sidecar = Command::new("/usr/bin/unshare")
        .args(["--pid", "--fork", "/bin/sh", "-c", &format!("( {curl}; echo \"exit=$?\" ); true")])
        .env_clear()
        .env("PLACEHOLDER_CONTROL_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&sidecar.stdout).contains("exit="), "the check ran as curl: {sidecar:?}");
    assert!(!answers(port), "a sidecar's request must not open a port");
    assert!(server.next_line(Duration::from_millis(300)).is_none());

    // The same request from inside the server's PID namespace opens the port.
    let unshare = server.child.id();
    let pid = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap().trim().to_owned();
    let inside = Command::new("nsenter")
        .args(["--target", &pid, "--pid", "--", "/bin/sh", "-c", &format!("( {curl}; echo \"exit=$?\" ); true")])
        .env_clear()
        .env("PLACEHOLDER_CONTROL_SOCKET", &socket)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&inside.stdout).contains("exit=0"), "{inside:?}");
    assert!(answers(port));
}

#[test]
fn ports_baked_for_containers_by_name_are_each_containers_own() {
    // One repository's image runs as `web` and `admin` in one Fargate task: only web's ports here.
    let (own, shared, theirs) = (free_port(), free_port(), free_port());
    let baked = format!("web:{own},{shared},admin:{theirs}");
    let metadata = fargate(&[("admin", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:admin", "NORMAL")]);
    let (server, _fixture) = serve(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri),
        ("PLACEHOLDER_CONTROL_SOCKET", &control_socket()),
        ("PLACEHOLDER_PORTS", &baked),
    ]);
    let mut ports = listening(&server.first_line);
    ports.sort();
    let mut expected = vec![own, shared];
    expected.sort();
    assert_eq!(ports, expected, "{}", server.first_line);
    assert!(answers(own) && answers(shared) && std::net::TcpStream::connect(("127.0.0.1", theirs)).is_err());
    drop(server);

    // Without metadata the container's name is not known: every baked port.
    let (server, _fixture) = serve(&[("PLACEHOLDER_PORTS", &baked)]);
    let mut ports = listening(&server.first_line);
    ports.sort();
    let mut all = vec![own, shared, theirs];
    all.sort();
    assert_eq!(ports, all, "{}", server.first_line);
}

/// Fargate metadata for container `name` of a task whose containers all run image `sha256:same`
/// (placeholders for each of the task's services, before the pipeline has built any).
fn placeholders_task(name: &str, all: &[&str]) -> Metadata {
    let document = |n: &str| {
        format!(
            r#"{{"DockerId":"{n}-id","Name":"{n}","Image":"1.dkr.ecr.eu-west-1.amazonaws.com/{n}:latest","ImageID":"sha256:same","Type":"NORMAL","Networks":[{{"NetworkMode":"awsvpc"}}]}}"#
        )
    };
    let own = document(name);
    let task = format!(
        r#"{{"LaunchType":"FARGATE","Containers":[{}]}}"#,
        all.iter().map(|n| document(n)).collect::<Vec<_>>().join(",")
    );
    Metadata::serve(move |path, _| match path {
        "/v4/test/task" => (200, task.clone()),
        _ => (200, own.clone()),
    })
}

#[test]
fn placeholders_of_one_task_share_the_defaults_and_each_stays_up() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    // nginx in front of an app, both repositories filled by `publish --containers`: nothing names
    // a port on Fargate, but every other container is a placeholder too, so the defaults are
    // taken, by whichever starts first, and both answer the load balancer through it.
    let tasks = ["nginx", "app"];
    let nginx_metadata = placeholders_task("nginx", &tasks);
    let app_metadata = placeholders_task("app", &tasks);
    let (nginx, _f1) = serve(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &nginx_metadata.uri),
        ("PLACEHOLDER_CONTROL_SOCKET", &control_socket()),
    ]);
    let errors = nginx.error_lines(Duration::from_millis(300)).join("\n");
    assert!(
        errors.contains(
            "beside app, another placeholder (the same image), it listens on the ports web frameworks default to"
        ),
        "{errors}"
    );
    let taken = listening(&nginx.first_line);
    for port in [80, 3000, 8080] {
        assert!(
            taken.contains(&port) || errors.contains(&format!("port {port} is already in use")),
            "{port}: {}\n{errors}",
            nginx.first_line
        );
    }
    let (mut app, _f2) = serve(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &app_metadata.uri),
        ("PLACEHOLDER_CONTROL_SOCKET", &control_socket()),
    ]);
    let errors = app.error_lines(Duration::from_millis(300)).join("\n");
    assert!(errors.contains("port 3000 is already in use") || !taken.contains(&3000), "{errors}");
    thread::sleep(Duration::from_millis(300));
    assert!(
        app.child.try_wait().unwrap().is_none(),
        "the second placeholder stays up with every default held: {errors}"
    );
    for port in taken.iter().filter(|p| [80, 3000, 8080].contains(p)) {
        assert!(answers(*port), "{port}");
    }
}

#[test]
fn a_container_with_no_port_of_its_own_leaves_those_baked_for_the_others() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    // One repository's image as `api` (3000, baked for it by name) and as a `worker` with no
    // port: the worker, however early it starts, never takes the API's port.
    let metadata = placeholders_task("worker", &["api", "worker"]);
    let (worker, _fixture) = serve(&[
        ("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri),
        ("PLACEHOLDER_CONTROL_SOCKET", &control_socket()),
        ("PLACEHOLDER_PORTS", "api:3000"),
    ]);
    let ports = listening(&worker.first_line);
    assert!(!ports.contains(&3000), "{}", worker.first_line);
    let errors = worker.error_lines(Duration::from_millis(300)).join("\n");
    assert!(ports.contains(&8080) || errors.contains("port 8080 is already in use"), "{}\n{errors}", worker.first_line);
}

#[test]
fn another_placeholders_mapped_port_is_left_to_it() {
    let _turn = DEFAULT_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    // An agent that lists the task's mappings (EC2, awsvpc) names api's 3000, not the worker's.
    let worker = r#"{"DockerId":"w","Name":"worker","ImageID":"sha256:same","Type":"NORMAL","Networks":[{"NetworkMode":"awsvpc"}]}"#;
    let api = r#"{"DockerId":"a","Name":"api","ImageID":"sha256:same","Type":"NORMAL","Ports":[{"ContainerPort":3000,"Protocol":"tcp"}]}"#;
    let task = format!(r#"{{"Containers":[{worker},{api}]}}"#);
    let metadata = Metadata::serve(move |path, _| match path {
        "/v4/test/task" => (200, task.clone()),
        _ => (200, worker.to_owned()),
    });
    let (server, _fixture) =
        serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PLACEHOLDER_CONTROL_SOCKET", &control_socket())]);
    let ports = listening(&server.first_line);
    assert!(!ports.contains(&3000), "{}", server.first_line);
    let errors = server.error_lines(Duration::from_millis(300)).join("\n");
    assert!(ports.contains(&8080) || errors.contains("port 8080 is already in use"), "{}\n{errors}", server.first_line);
}

#[test]
fn its_notice_names_the_container_task_metadata_names() {
    let metadata = fargate(&[]);
    let port = free_port().to_string();
    let (server, _fixture) = serve(&[("ECS_CONTAINER_METADATA_URI_V4", &metadata.uri), ("PORT", &port)]);
    // The notice waits up to 5 s for the name: on a busy machine, give it room.
    let notice = server.next_notice(Duration::from_secs(15)).expect("a notice at start");
    assert!(notice.starts_with("placeholder for web since "), "{notice}");
}
