//! `curl` and `wget` as health checks use them: one plain-HTTP request to this container, the
//! verdict the real tool would give, short output, and never a file written.
//!
//! A check this cannot carry out as written (https, another host, a flag it does not know, a
//! port nobody listens on) comes back as `Outcome::Instead`, and the caller asks the
//! placeholder's own health instead: the check was written for the real image's ports and tools.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::{Method, Uri};
use tokio::time::Instant;

use crate::client::{self, Answer, Failure};
use crate::control;

/// Docker keeps the first 4 KiB of a check's output; anything past that only costs time.
static OUTPUT_LEFT: AtomicUsize = AtomicUsize::new(4096);
const BODY_LIMIT: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tool {
    Curl,
    Wget,
}

/// Where a command's output goes after the shell's redirections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sink {
    Stdout,
    Stderr,
    Discard,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Streams {
    pub out: Sink,
    pub err: Sink,
}

impl Streams {
    pub const TERMINAL: Streams = Streams { out: Sink::Stdout, err: Sink::Stderr };

    pub fn write(sink: Sink, text: &[u8]) {
        let room = OUTPUT_LEFT.load(Ordering::Relaxed).min(text.len());
        OUTPUT_LEFT.fetch_sub(room, Ordering::Relaxed);
        let text = &text[..room];
        #[cfg(any(test, feature = "fuzzing"))]
        let sink = if crate::sandbox::active() { Sink::Discard } else { sink };
        // A closed stdout is not the check's failure: the verdict is the exit status.
        let _ = match sink {
            Sink::Stdout => std::io::stdout().write_all(text),
            Sink::Stderr => std::io::stderr().write_all(text),
            Sink::Discard => Ok(()),
        };
    }

    pub fn out(&self, text: impl AsRef<[u8]>) {
        Streams::write(self.out, text.as_ref());
    }

    pub fn err(&self, text: impl AsRef<[u8]>) {
        Streams::write(self.err, text.as_ref());
    }
}

/// How a command ended: its exit status, or why the placeholder's own health must decide.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Status(i32),
    Instead(String),
}

#[derive(Debug, PartialEq)]
struct Transfer {
    tool: Tool,
    urls: Vec<String>,
    method: Method,
    headers: Vec<(String, String)>,
    /// curl `-f`; wget always fails on an HTTP error.
    fail_on_error: bool,
    /// curl `--fail-with-body`.
    body_on_error: bool,
    body_to_stdout: bool,
    /// curl `-i`/`-I`: the status line and headers go to stdout.
    include_headers: bool,
    /// wget `-S`: the status line and headers go to stderr.
    server_response: bool,
    /// curl `-s` without `-S`, wget `-q`: no messages.
    quiet: bool,
    write_out: Option<String>,
    timeout: Option<Duration>,
}

/// Runs `curl ARGS` or `wget ARGS`, writing to `streams`, giving up at `deadline`.
pub async fn run(tool: Tool, args: &[String], streams: Streams, deadline: Instant) -> Outcome {
    let transfer = match parse(tool, args) {
        Ok(transfer) => transfer,
        Err(reason) => return Outcome::Instead(reason),
    };
    let deadline = match transfer.timeout {
        Some(timeout) => deadline.min(Instant::now() + timeout),
        None => deadline,
    };
    let mut status = 0;
    for url in &transfer.urls {
        match transfer.fetch(url, streams, deadline).await {
            Outcome::Status(0) => {}
            Outcome::Status(code) => status = code,
            instead => return instead,
        }
    }
    Outcome::Status(status)
}

/// What an option does. `Ignored` options change nothing about one plain-HTTP request over
/// loopback (proxies, TLS, retries, verbosity, files written besides the body).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Opt {
    Fail,
    FailWithBody,
    Silent,
    ShowError,
    Quiet,
    Head,
    Spider,
    Include,
    ServerResponse,
    /// `-o`/`-O FILE`: the body goes to stdout only for `-`.
    Output,
    NoOutput,
    Method,
    Header,
    UserAgent,
    Referer,
    Timeout,
    DumpHeader,
    Url,
    WriteOut,
    Ignored,
    IgnoredWithValue,
}

impl Opt {
    fn takes_value(self) -> bool {
        use Opt::*;
        matches!(
            self,
            Output | Method | Header | UserAgent | Referer | Timeout | DumpHeader | Url | WriteOut | IgnoredWithValue
        )
    }
}

const CURL_OPTIONS: &[(&str, Opt)] = {
    use Opt::*;
    &[
        ("-f", Fail),
        ("--fail", Fail),
        ("--fail-with-body", FailWithBody),
        ("-s", Silent),
        ("--silent", Silent),
        ("-S", ShowError),
        ("--show-error", ShowError),
        ("-I", Head),
        ("--head", Head),
        ("-i", Include),
        ("--include", Include),
        ("-o", Output),
        ("--output", Output),
        ("-O", NoOutput),
        ("--remote-name", NoOutput),
        ("--remote-name-all", NoOutput),
        ("-X", Method),
        ("--request", Method),
        ("-H", Header),
        ("--header", Header),
        ("-A", UserAgent),
        ("--user-agent", UserAgent),
        ("-e", Referer),
        ("--referer", Referer),
        ("-m", Timeout),
        ("--max-time", Timeout),
        ("-D", DumpHeader),
        ("--dump-header", DumpHeader),
        ("--url", Url),
        ("-w", WriteOut),
        ("--write-out", WriteOut),
        ("-L", Ignored),
        ("--location", Ignored),
        ("--location-trusted", Ignored),
        ("-k", Ignored),
        ("--insecure", Ignored),
        ("-v", Ignored),
        ("--verbose", Ignored),
        ("-4", Ignored),
        ("--ipv4", Ignored),
        ("-6", Ignored),
        ("--ipv6", Ignored),
        ("-q", Ignored),
        ("--disable", Ignored),
        ("--compressed", Ignored),
        ("-N", Ignored),
        ("--no-buffer", Ignored),
        ("--http1.1", Ignored),
        ("--http1.0", Ignored),
        ("-0", Ignored),
        ("-g", Ignored),
        ("--globoff", Ignored),
        ("--no-keepalive", Ignored),
        ("--no-progress-meter", Ignored),
        ("-#", Ignored),
        ("--progress-bar", Ignored),
        ("--fail-early", Ignored),
        ("--retry-connrefused", Ignored),
        ("--retry-all-errors", Ignored),
        ("--tcp-nodelay", Ignored),
        ("--path-as-is", Ignored),
        ("--raw", Ignored),
        ("--no-sessionid", Ignored),
        ("--connect-timeout", IgnoredWithValue),
        ("--retry", IgnoredWithValue),
        ("--retry-delay", IgnoredWithValue),
        ("--retry-max-time", IgnoredWithValue),
        ("--noproxy", IgnoredWithValue),
        ("-x", IgnoredWithValue),
        ("--proxy", IgnoredWithValue),
        ("-u", IgnoredWithValue),
        ("--user", IgnoredWithValue),
        ("-b", IgnoredWithValue),
        ("--cookie", IgnoredWithValue),
        ("-c", IgnoredWithValue),
        ("--cookie-jar", IgnoredWithValue),
        ("--resolve", IgnoredWithValue),
        ("--cacert", IgnoredWithValue),
        ("--capath", IgnoredWithValue),
        ("-E", IgnoredWithValue),
        ("--cert", IgnoredWithValue),
        ("--key", IgnoredWithValue),
        ("--interface", IgnoredWithValue),
        ("--max-redirs", IgnoredWithValue),
        ("--expect100-timeout", IgnoredWithValue),
        ("-Y", IgnoredWithValue),
        ("--speed-limit", IgnoredWithValue),
        ("-y", IgnoredWithValue),
        ("--speed-time", IgnoredWithValue),
        ("--max-filesize", IgnoredWithValue),
        ("--stderr", IgnoredWithValue),
    ]
};

const WGET_OPTIONS: &[(&str, Opt)] = {
    use Opt::*;
    &[
        ("-q", Quiet),
        ("--quiet", Quiet),
        ("--spider", Spider),
        ("-O", Output),
        ("--output-document", Output),
        ("-S", ServerResponse),
        ("--server-response", ServerResponse),
        ("--method", Method),
        ("--header", Header),
        ("-U", UserAgent),
        ("--user-agent", UserAgent),
        ("--referer", Referer),
        ("-T", Timeout),
        ("--timeout", Timeout),
        ("--read-timeout", Timeout),
        ("-nv", Ignored),
        ("--no-verbose", Ignored),
        ("-v", Ignored),
        ("--verbose", Ignored),
        ("--no-check-certificate", Ignored),
        ("-4", Ignored),
        ("--inet4-only", Ignored),
        ("-6", Ignored),
        ("--inet6-only", Ignored),
        ("--no-cache", Ignored),
        ("--no-dns-cache", Ignored),
        ("--no-proxy", Ignored),
        ("--no-hsts", Ignored),
        ("-nc", Ignored),
        ("--no-clobber", Ignored),
        ("-nd", Ignored),
        ("-nH", Ignored),
        ("-c", Ignored),
        ("--continue", Ignored),
        ("--retry-connrefused", Ignored),
        ("--connect-timeout", IgnoredWithValue),
        ("--dns-timeout", IgnoredWithValue),
        ("-t", IgnoredWithValue),
        ("--tries", IgnoredWithValue),
        ("-Y", IgnoredWithValue),
        ("--proxy", IgnoredWithValue),
        ("-o", IgnoredWithValue),
        ("--output-file", IgnoredWithValue),
        ("-a", IgnoredWithValue),
        ("--append-output", IgnoredWithValue),
        ("-P", IgnoredWithValue),
        ("--directory-prefix", IgnoredWithValue),
        ("-w", IgnoredWithValue),
        ("--wait", IgnoredWithValue),
        ("--waitretry", IgnoredWithValue),
        ("--user", IgnoredWithValue),
        ("--password", IgnoredWithValue),
        ("--http-user", IgnoredWithValue),
        ("--http-password", IgnoredWithValue),
        ("--max-redirect", IgnoredWithValue),
        ("--ca-certificate", IgnoredWithValue),
        ("--ca-directory", IgnoredWithValue),
        ("--certificate", IgnoredWithValue),
        ("--private-key", IgnoredWithValue),
        ("--bind-address", IgnoredWithValue),
    ]
};

fn option(tool: Tool, name: &str) -> Option<Opt> {
    let table = if tool == Tool::Curl { CURL_OPTIONS } else { WGET_OPTIONS };
    table.iter().find(|(n, _)| *n == name).map(|(_, opt)| *opt)
}

fn parse(tool: Tool, args: &[String]) -> Result<Transfer, String> {
    let mut t = Transfer {
        tool,
        urls: Vec::new(),
        method: Method::GET,
        headers: Vec::new(),
        fail_on_error: tool == Tool::Wget,
        body_on_error: false,
        body_to_stdout: tool == Tool::Curl,
        include_headers: false,
        server_response: false,
        quiet: false,
        write_out: None,
        timeout: None,
    };
    let (mut silent, mut show_error) = (false, false);
    let mut rest = args.iter();
    let mut options_done = false;
    while let Some(arg) = rest.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            t.urls.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        // Split into (option, inline value): `--opt=value`, `-XGET`, or a cluster like `-fsSL`.
        let mut options: Vec<(String, Opt, Option<String>)> = Vec::new();
        let unknown = |name: &str| format!("option {name}");
        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = long.split_once('=').map_or((long, None), |(n, v)| (n, Some(v.to_owned())));
            let name = format!("--{name}");
            let opt = option(tool, &name).ok_or_else(|| unknown(&name))?;
            options.push((name, opt, value));
        } else if let Some(opt) = option(tool, arg).filter(|_| arg.len() > 2) {
            options.push((arg.clone(), opt, None)); // wget's `-nv`
        } else {
            let cluster: Vec<char> = arg.chars().skip(1).collect();
            for (i, letter) in cluster.iter().enumerate() {
                let name = format!("-{letter}");
                let opt = option(tool, &name).ok_or_else(|| unknown(&name))?;
                let inline: String = cluster[i + 1..].iter().collect();
                if opt.takes_value() {
                    options.push((name, opt, (!inline.is_empty()).then_some(inline)));
                    break;
                }
                options.push((name, opt, None));
            }
        }
        for (name, opt, inline) in options {
            let value = match (opt.takes_value(), inline) {
                (true, inline) => {
                    inline.or_else(|| rest.next().cloned()).ok_or_else(|| format!("{name} needs a value"))?
                }
                (false, Some(_)) => return Err(format!("{name} takes no value")),
                (false, None) => String::new(),
            };
            match opt {
                Opt::Fail => t.fail_on_error = true,
                Opt::FailWithBody => (t.fail_on_error, t.body_on_error) = (true, true),
                Opt::Silent => silent = true,
                Opt::ShowError => show_error = true,
                Opt::Quiet => t.quiet = true,
                Opt::Head => (t.method, t.include_headers, t.body_to_stdout) = (Method::HEAD, true, false),
                Opt::Spider => (t.method, t.body_to_stdout) = (Method::HEAD, false),
                Opt::Include => t.include_headers = true,
                Opt::ServerResponse => t.server_response = true,
                Opt::Output => t.body_to_stdout = value == "-",
                Opt::NoOutput => t.body_to_stdout = false,
                Opt::Method => {
                    t.method = Method::from_bytes(value.as_bytes()).map_err(|_| format!("method {value:?}"))?
                }
                Opt::Header => {
                    if let Some((name, v)) = value.split_once(':') {
                        t.headers.push((name.trim().to_owned(), v.trim().to_owned()));
                    }
                }
                Opt::UserAgent => t.headers.push(("User-Agent".into(), value)),
                Opt::Referer => t.headers.push(("Referer".into(), value)),
                Opt::Timeout => {
                    let seconds = value.trim().parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0 && *s < 1e6);
                    let timeout = Duration::from_secs_f64(seconds.ok_or_else(|| format!("{name} {value:?}"))?);
                    t.timeout = Some(t.timeout.map_or(timeout, |old| old.min(timeout)));
                }
                Opt::DumpHeader => t.include_headers |= value == "-",
                Opt::Url => t.urls.push(value),
                Opt::WriteOut => t.write_out = Some(value),
                Opt::Ignored | Opt::IgnoredWithValue => {}
            }
        }
    }
    if t.urls.is_empty() {
        return Err("no URL".into());
    }
    if t.tool == Tool::Curl {
        t.quiet = silent && !show_error;
    }
    Ok(t)
}

/// A URL this can fetch: plain HTTP to this container.
struct Target {
    address: SocketAddr,
    /// `Host` header, as written in the URL (curl and wget send it so).
    authority: String,
    /// Path and query.
    target: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(format!("{url}: only plain http:// to this container can be checked here")),
        None => url,
    };
    let (authority, target) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let target = target.split('#').next().unwrap_or_default();
    let target = match target {
        "" => "/".to_owned(),
        query if query.starts_with('?') => format!("/{query}"),
        path => path.to_owned(),
    };
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| format!("{url}: malformed host"))?;
        (host, after.strip_prefix(':'))
    } else if authority.matches(':').count() > 1 {
        (authority, None) // a bare IPv6 address such as ::1
    } else {
        authority.split_once(':').map_or((authority, None), |(h, p)| (h, Some(p)))
    };
    let port = match port {
        None | Some("") => 80,
        Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{url}: malformed port"))?,
    };
    let ip = match host.to_ascii_lowercase().as_str() {
        "localhost" | "127.0.0.1" | "0.0.0.0" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        "::1" | "::" => IpAddr::V6(Ipv6Addr::LOCALHOST),
        _ => return Err(format!("{url}: only this container (localhost) can be checked here")),
    };
    if target.parse::<Uri>().is_err() {
        return Err(format!("{url}: malformed path"));
    }
    let authority = if authority.is_empty() { "localhost".to_owned() } else { authority.to_owned() };
    Ok(Target { address: SocketAddr::new(ip, port), authority, target })
}

impl Transfer {
    async fn fetch(&self, url: &str, streams: Streams, deadline: Instant) -> Outcome {
        let target = match parse_url(url) {
            Ok(target) => target,
            Err(reason) => return Outcome::Instead(reason),
        };
        let started = Instant::now();
        let request = || {
            client::request(
                target.address,
                self.method.clone(),
                &target.authority,
                &target.target,
                &self.headers,
                BODY_LIMIT,
                deadline,
            )
        };
        let mut result = request().await;
        // The port a check names on localhost is the service's own: when nothing listens there
        // yet, the placeholder is asked to, and the check goes on against it.
        if matches!(result, Err(Failure::Refused)) && control::open(target.address.port(), deadline).await.is_ok() {
            result = request().await;
        }
        let result = match result {
            Err(Failure::Refused | Failure::Connect(_)) => {
                return Outcome::Instead(format!("nothing listens on {}", target.authority));
            }
            Err(Failure::TimedOut) => Err(format!("no answer within {} ms", started.elapsed().as_millis())),
            result => result.map_err(|failure| failure.to_string()),
        };
        let code = match (self.tool, &result) {
            (_, Ok(answer)) => self.report(answer, streams),
            (Tool::Curl, Err(reason)) => {
                let code = if reason.starts_with("no answer") { 28 } else { 56 };
                if !self.quiet {
                    streams.err(format!("curl: ({code}) {url}: {reason}\n"));
                }
                code
            }
            (Tool::Wget, Err(reason)) => {
                if !self.quiet {
                    streams.err(format!("wget: {url}: {reason}\n"));
                }
                4
            }
        };
        if let Some(format) = &self.write_out {
            let status = result.as_ref().map_or(0, |answer| answer.status.as_u16());
            streams.out(write_out(format, status, code, url, &self.method, started.elapsed()));
        }
        Outcome::Status(code)
    }

    /// Writes what the real tool would for this answer, and returns its exit status.
    fn report(&self, answer: &Answer, streams: Streams) -> i32 {
        let status = answer.status;
        let failed = self.fail_on_error && status.as_u16() >= 400;
        let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        for (name, value) in &answer.headers {
            head.push_str(&format!("{name}: {}\r\n", String::from_utf8_lossy(value.as_bytes())));
        }
        if self.include_headers {
            streams.out(format!("{head}\r\n"));
        }
        if self.server_response && !self.quiet {
            streams.err(head.lines().map(|line| format!("  {line}\n")).collect::<String>());
        }
        if self.body_to_stdout && (!failed || self.body_on_error) {
            streams.out(&answer.body);
        }
        match (self.tool, failed) {
            (Tool::Curl, true) => {
                if !self.quiet {
                    streams.err(format!("curl: (22) The requested URL returned error: {}\n", status.as_u16()));
                }
                22
            }
            (Tool::Wget, true) => {
                if !self.quiet {
                    streams.err(format!("wget: server returned error: HTTP/1.1 {status}\n"));
                }
                8
            }
            (Tool::Wget, false) => {
                if !self.quiet {
                    streams.err(format!("HTTP request sent, awaiting response... {status}\n"));
                }
                0
            }
            (Tool::Curl, false) => 0,
        }
    }
}

/// curl's `-w` format: `%{http_code}` and friends, `%%`, and `\n`, `\r`, `\t`, `\\`.
fn write_out(format: &str, status: u16, exit_code: i32, url: &str, method: &Method, took: Duration) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('\\', Some(escaped @ ('n' | 'r' | 't' | '\\'))) => {
                chars.next();
                out.push(match escaped {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    _ => '\\',
                });
            }
            ('%', Some('%')) => {
                chars.next();
                out.push('%');
            }
            ('%', Some('{')) => {
                chars.next();
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                match name.as_str() {
                    "http_code" | "response_code" => out.push_str(&format!("{status:03}")),
                    "exitcode" => out.push_str(&exit_code.to_string()),
                    "url_effective" | "url" => out.push_str(url),
                    "method" => out.push_str(method.as_str()),
                    "time_total" => out.push_str(&format!("{}.{:06}", took.as_secs(), took.subsec_micros())),
                    "num_redirects" => out.push('0'),
                    _ => {} // curl prints nothing for variables it does not know either
                }
            }
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn curl_flags_as_health_checks_write_them() {
        let t = parse(Tool::Curl, &args("-fsSL http://localhost:8080/health")).unwrap();
        assert!(t.fail_on_error && !t.quiet && t.body_to_stdout);
        assert_eq!(t.urls, vec!["http://localhost:8080/health"]);
        let t = parse(Tool::Curl, &args("-s -o /dev/null -w %{http_code} -m 5 --connect-timeout 2 -H X-A:b localhost"))
            .unwrap();
        assert!(t.quiet && !t.body_to_stdout && !t.fail_on_error);
        assert_eq!((t.write_out.as_deref(), t.timeout), (Some("%{http_code}"), Some(Duration::from_secs(5))));
        assert_eq!(t.headers, vec![("X-A".into(), "b".into())]);
        let t = parse(Tool::Curl, &args("-XHEAD -m0.5 -sf -- -weird")).unwrap();
        assert_eq!(
            (t.method, t.timeout, t.urls),
            (Method::HEAD, Some(Duration::from_millis(500)), vec!["-weird".to_string()])
        );
        let t = parse(Tool::Curl, &args("-I --retry 3 -k -4 --noproxy * -v -q --fail-with-body localhost")).unwrap();
        assert!(t.include_headers && t.body_on_error && t.method == Method::HEAD);
        for bad in [
            "",
            "-f",
            "-d x localhost",
            "--data=x localhost",
            "-m",
            "-m nope localhost",
            "-Z localhost",
            "--fail=1 localhost",
            "-X localhost",
        ] {
            assert!(parse(Tool::Curl, &args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wget_flags_as_health_checks_write_them() {
        let t = parse(Tool::Wget, &args("--quiet --spider --tries=1 http://localhost:3000/health")).unwrap();
        assert!(t.quiet && t.fail_on_error && t.method == Method::HEAD && !t.body_to_stdout);
        let t = parse(Tool::Wget, &args("-qO- http://localhost/health")).unwrap();
        assert!(t.quiet && t.body_to_stdout);
        let t = parse(
            Tool::Wget,
            &args("-nv -O /dev/null -T 3 -t 2 -Y off -U probe --header=X:1 --no-check-certificate -S localhost"),
        )
        .unwrap();
        assert!(!t.body_to_stdout && t.server_response && t.timeout == Some(Duration::from_secs(3)));
        assert_eq!(t.headers.len(), 2);
        assert!(parse(Tool::Wget, &args("-O - localhost")).unwrap().body_to_stdout);
        for bad in ["-q", "--post-data=x localhost", "-Z localhost", "--timeout=x localhost"] {
            assert!(parse(Tool::Wget, &args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_for_this_container_only() {
        for (url, address, authority, target) in [
            ("http://localhost:8080/health", "127.0.0.1:8080", "localhost:8080", "/health"),
            ("localhost:8080/actuator/health", "127.0.0.1:8080", "localhost:8080", "/actuator/health"),
            ("http://127.0.0.1", "127.0.0.1:80", "127.0.0.1", "/"),
            ("HTTP://0.0.0.0:3000?x=1#frag", "127.0.0.1:3000", "0.0.0.0:3000", "/?x=1"),
            ("http://[::1]:9000/a?b", "[::1]:9000", "[::1]:9000", "/a?b"),
            ("::1", "[::1]:80", "::1", "/"),
            ("http://user:pw@localhost:81/", "127.0.0.1:81", "localhost:81", "/"),
            ("http://localhost:/health", "127.0.0.1:80", "localhost:", "/health"),
        ] {
            let t = parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                (t.address.to_string().as_str(), t.authority.as_str(), t.target.as_str()),
                (address, authority, target),
                "{url}"
            );
        }
        for bad in [
            "https://localhost/",
            "http://example.com/",
            "http://10.0.0.1/",
            "ftp://localhost",
            "http://localhost:x/",
            "http://localhost:99999/",
            "http://[::1/",
            "http:///x",
            "http://localhost/a b",
            "http://localhost:0/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_out_formats() {
        let f = |fmt: &str| write_out(fmt, 200, 0, "u", &Method::GET, Duration::ZERO);
        assert_eq!(f("%{http_code}\\n"), "200\n");
        assert_eq!(f("code=%{response_code} %% %{nope}%{exitcode}\\t\\x"), "code=200 % 0\t\\x");
        assert_eq!(write_out("%{http_code}", 0, 7, "u", &Method::GET, Duration::ZERO), "000");
        assert_eq!(f("%{unterminated"), "");
        assert_eq!(f("%"), "%");
    }
}
