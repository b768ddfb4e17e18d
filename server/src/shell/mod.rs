//! `/bin/sh -c SCRIPT`, as Docker runs a `CMD-SHELL` health check: enough of the shell language
//! for the checks task definitions carry (`curl -f http://localhost:${PORT:-3000}/health || exit 1`),
//! with curl and wget built in and no other program run, ever.
//!
//! What it cannot run as written (a pipe, `nc`, `node healthcheck.js`, a syntax it does not know)
//! is answered by the placeholder's own health instead, saying so on stderr: the check was
//! written for the real image, which the placeholder stands in for.
//!
//! `syntax.rs` reads a script into commands (the lexer and the parser); `interpret.rs` runs them.

mod interpret;
mod syntax;

use tokio::time::Instant;

use crate::health;

use interpret::Shell;
use syntax::parse;

/// Runs `sh ARGS`; returns the script's exit status folded to 0 or 1 (Docker reserves 2).
pub async fn run(args: &[String], deadline: Instant) -> i32 {
    let (script, positional, errexit) = match invocation(args) {
        Ok(parts) => parts,
        Err(why) => return health::instead(&format!("sh {}", args.join(" ")), &why, deadline).await,
    };
    let list = match parse(&script) {
        Ok(list) => list,
        Err(why) => return health::instead(&script, &why, deadline).await,
    };
    // `vars()` would panic on a variable that is not UTF-8.
    let vars = std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned()));
    #[cfg(any(test, feature = "fuzzing"))]
    let vars = crate::sandbox::environment().unwrap_or_else(|| vars.collect()).into_iter();
    let mut shell = Shell { vars: vars.collect(), positional, status: 0, errexit, deadline };
    let status = shell.run(&list).await.unwrap_or(shell.status);
    i32::from(status != 0)
}

/// Options before the script: `-c`, `-e`, clusters such as `-ec`/`-xc`/`-lc`, `-o NAME`.
/// Returns the script, `$0 $1...`, and whether `-e` was given.
fn invocation(args: &[String]) -> Result<(String, Vec<String>, bool), String> {
    let mut command_mode = false;
    let mut errexit = false;
    let mut rest = args.iter();
    let mut operands: Vec<String> = Vec::new();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--" => {
                operands.extend(rest.by_ref().cloned());
                break;
            }
            "-o" | "+o" => {
                rest.next();
            }
            "--login" | "--norc" | "--noprofile" | "--posix" => {}
            option if (option.starts_with('-') || option.starts_with('+')) && option.len() > 1 => {
                command_mode |= option.starts_with('-') && option.contains('c');
                if option.contains('e') {
                    errexit = option.starts_with('-');
                }
            }
            _ => {
                operands.push(arg.clone());
                operands.extend(rest.by_ref().cloned());
                break;
            }
        }
    }
    if !command_mode {
        return Err("only `sh -c SCRIPT` can run here".into());
    }
    let mut operands = operands.into_iter();
    let script = operands.next().ok_or("-c needs a script")?;
    let mut positional: Vec<String> = operands.collect();
    if positional.is_empty() {
        positional.push("sh".into());
    }
    Ok((script, positional, errexit))
}

// ---- The language: words, redirections, commands joined by `&&`, `||`, `;` and newlines ----

#[cfg(test)]
mod tests {
    use super::syntax::*;
    use super::*;
    use crate::fetch::{Sink, Streams};

    fn text(s: &str) -> Piece {
        Piece::Text { text: s.into(), quoted: false }
    }

    fn simple(list: &[AndOr], index: usize) -> &Command {
        match &list[index].first {
            Pipeline::Simple(command) => command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invocations() {
        let args = |line: &str| line.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(invocation(&args("-c true")), Ok(("true".into(), vec!["sh".into()], false)));
        assert_eq!(invocation(&args("-ec true name a")), Ok(("true".into(), vec!["name".into(), "a".into()], true)));
        assert!(matches!(invocation(&args("-e -c true")), Ok((_, _, true))));
        assert!(matches!(invocation(&args("-xc true")), Ok((_, _, false))));
        assert!(matches!(invocation(&args("-o pipefail -lc true")), Ok((_, _, false))));
        assert!(invocation(&args("--login -c true")).is_ok());
        assert!(invocation(&args("script.sh")).is_err());
        assert!(invocation(&args("-c")).is_err());
        assert!(invocation(&[]).is_err());
    }

    #[test]
    fn parses_real_health_checks() {
        let list = parse("curl -f http://localhost:8080/_healthcheck || exit 1").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(simple(&list, 0).words.len(), 3);
        assert_eq!(list[0].rest.len(), 1);
        assert!(!list[0].rest[0].0);

        let list = parse("curl --fail --silent http://127.0.0.1:${PORT:-3000}/api/health").unwrap();
        let url = &simple(&list, 0).words[3];
        assert_eq!(url.0[0], text("http://127.0.0.1:"));
        assert!(matches!(&url.0[1], Piece::Param { name, op: ParamOp::Default { colon: true }, .. } if name == "PORT"));

        let list = parse("curl -s -o /dev/null -w '%{http_code}' http://localhost:8080/ 2>&1 >>/proc/1/fd/1").unwrap();
        let command = simple(&list, 0);
        assert_eq!(command.redirects.len(), 2);
        assert_eq!(command.redirects[0], Redirect { fd: 2, both: false, input: false, target: Target::Fd(1) });
        assert_eq!(command.words[5].0, vec![Piece::Text { text: "%{http_code}".into(), quoted: true }]);

        let list = parse("A=1 B=\"x y\" curl localhost; true\n\n# comment\nfalse && :").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(simple(&list, 0).assignments.len(), 2);

        assert!(
            matches!(parse("curl -s localhost:8080/health | grep UP").unwrap()[0].first, Pipeline::Piped(ref t) if t == "curl -s localhost:8080/health | grep UP")
        );
        assert!(parse("a &&\n b").unwrap()[0].rest.len() == 1);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(" \n;\n").unwrap_err(), "a command is missing");
        assert!(parse("exit 0").is_ok() && parse("true;").is_ok() && parse("echo $ $1 ${1} \\$x").is_ok());
    }

    #[test]
    fn refuses_what_it_does_not_run() {
        for bad in [
            "curl $(cat url)",
            "curl `cat url`",
            "( curl x )",
            "if true; then :; fi",
            "{ true; }",
            "true &",
            "cat <<EOF",
            "echo 'unterminated",
            "echo \"unterminated",
            "echo ${unterminated",
            "curl x ||",
            "|| true",
            "; true",
            "true ;;",
            "echo ${#X}",
            "echo ${X%y}",
            "! true",
            "a | ",
            "echo $'x'",
            "f() { :; }",
            "echo >",
            "[[ -f x ]]",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} -> {:?}", parse(bad));
        }
        let deep = format!("echo {}x{}", "${A:-".repeat(50), "}".repeat(50));
        assert!(parse(&deep).is_err());
        let fine = format!("echo {}x{}", "${A:-".repeat(3), "}".repeat(3));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn never_panics_on_noise() {
        for noise in
            ["\0", "\\", "$", "${", "${}", "$((", "'\0'", "\"\\", "2>&", ">&-", "<>x", "&>", "|&", "a\\\n", "é${é}"]
        {
            let _ = parse(noise);
        }
    }

    fn shell(vars: &[(&str, &str)]) -> Shell {
        Shell {
            vars: vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            positional: vec!["sh".into(), "one".into(), "two".into()],
            status: 3,
            errexit: false,
            deadline: Instant::now(),
        }
    }

    fn fields_of(sh: &mut Shell, line: &str) -> Vec<String> {
        let list = parse(line).unwrap();
        let words = &simple(&list, 0).words;
        words.iter().flat_map(|w| sh.fields(w).unwrap()).collect()
    }

    #[test]
    fn expansions() {
        let mut sh = shell(&[("PORT", "8080"), ("EMPTY", ""), ("OPTS", " -f  -s ")]);
        assert_eq!(
            fields_of(&mut sh, "x ${PORT:-3000} ${NOPE:-3000} ${EMPTY:-d} ${EMPTY-d} ${NOPE-d}"),
            ["x", "8080", "3000", "d", "d"]
        );
        assert_eq!(
            fields_of(&mut sh, "x $OPTS \"$OPTS\" a$EMPTY $EMPTY \"\" ''"),
            ["x", "-f", "-s", " -f  -s ", "a", "", ""]
        );
        assert_eq!(
            fields_of(&mut sh, "x $? $# $1 $2 $3 $@ ${PORT:+set} ${NOPE:+set}"),
            ["x", "3", "2", "one", "two", "one", "two", "set"]
        );
        assert_eq!(
            fields_of(&mut sh, "x ${A:=assigned} $A '$PORT' \\$PORT \"a\\\"b\\$\""),
            ["x", "assigned", "assigned", "$PORT", "$PORT", "a\"b$"]
        );
        assert_eq!(
            fields_of(&mut sh, "x ${NOPE:-\"a b\"} ${NOPE:-${PORT}} \"${NOPE:-a  b}\" ${NOPE:-a  b}"),
            ["x", "a b", "8080", "a  b", "a", "b"]
        );
        let list = parse("x ${NOPE?}").unwrap();
        assert!(sh.fields(&simple(&list, 0).words[1]).is_err());
    }

    #[tokio::test]
    async fn set_reads_its_options_and_no_other_word() {
        for (script, errexit) in [
            ("set -e", true),
            ("set -xe", true),
            ("set -e; set +e", false),
            ("set -o errexit", true),
            ("set -eo pipefail", true),
            ("set -o pipefail", false),
            ("set +o errexit", false),
            ("set -- -e", false),
            ("set a -e", false),
            ("set bee", false),
            // A word whose first character is not ASCII was sliced inside that character.
            ("set é", false),
            ("set -é", false),
            ("set éeé", false),
            ("set -eé", true),
            ("set 𝄞", false),
        ] {
            let mut sh = shell(&[]);
            sh.run(&parse(script).unwrap()).await;
            assert_eq!(sh.errexit, errexit, "{script}");
        }
    }

    #[test]
    fn redirections_never_name_a_file_to_write() {
        let mut sh = shell(&[("LOG", "/proc/1/fd/1")]);
        let streams = |sh: &mut Shell, line: &str| {
            let list = parse(line).unwrap();
            sh.redirect(&simple(&list, 0).redirects).unwrap()
        };
        assert_eq!(streams(&mut sh, "x >/dev/null 2>&1"), Streams { out: Sink::Discard, err: Sink::Discard });
        assert_eq!(streams(&mut sh, "x 2>&1 >/dev/null"), Streams { out: Sink::Discard, err: Sink::Stdout });
        assert_eq!(streams(&mut sh, "x >> $LOG 2>/tmp/err"), Streams { out: Sink::Stdout, err: Sink::Discard });
        assert_eq!(streams(&mut sh, "x &>/etc/passwd < /dev/null"), Streams { out: Sink::Discard, err: Sink::Discard });
        assert_eq!(streams(&mut sh, "x 1>&2 2>&- 3>x"), Streams { out: Sink::Stderr, err: Sink::Discard });
    }
}
