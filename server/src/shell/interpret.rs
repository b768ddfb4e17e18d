//! Running what `syntax.rs` read: expansions, `exit`, `set -e`, curl and wget against this
//! container, and the placeholder's own health for anything else.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::fetch::{self, Outcome, Sink, Streams, Tool};
use crate::health;

use super::syntax::*;

pub(super) struct Shell {
    pub(super) vars: HashMap<String, String>,
    /// `$0`, `$1`...
    pub(super) positional: Vec<String>,
    /// `$?`
    pub(super) status: i32,
    /// `set -e`
    pub(super) errexit: bool,
    pub(super) deadline: Instant,
}

impl Shell {
    /// Runs the list; `Some(status)` when the script exits early (`exit`, or `set -e`).
    pub(super) async fn run(&mut self, list: &[AndOr]) -> Option<i32> {
        for and_or in list {
            self.pipeline(&and_or.first).await?;
            let mut last_ran = 0;
            for (index, (and, pipeline)) in and_or.rest.iter().enumerate() {
                if *and == (self.status == 0) {
                    self.pipeline(pipeline).await?;
                    last_ran = index + 1;
                }
            }
            // `set -e` ignores a failure on the left of `&&` or `||`.
            if self.errexit && self.status != 0 && last_ran == and_or.rest.len() {
                return Some(self.status);
            }
        }
        None
    }

    /// Sets `$?`; `None` when the command was `exit` (the status is then the exit status).
    pub(super) async fn pipeline(&mut self, pipeline: &Pipeline) -> Option<()> {
        let (status, exit) = match pipeline {
            Pipeline::Piped(text) => (health::instead(text, "pipes are not run here", self.deadline).await, false),
            Pipeline::Simple(command) => self.command(command).await,
        };
        self.status = status;
        (!exit).then_some(())
    }

    /// Runs a simple command: returns its status, and whether it ends the script.
    pub(super) async fn command(&mut self, command: &Command) -> (i32, bool) {
        let mut fields = Vec::new();
        for word in &command.words {
            match self.fields(word) {
                Ok(more) => fields.extend(more),
                Err(why) => return (health::instead(&self.source(command), &why, self.deadline).await, false),
            }
        }
        for (name, value) in &command.assignments {
            match self.joined(value) {
                Ok(value) => {
                    self.vars.insert(name.clone(), value);
                }
                Err(why) => return (health::instead(&self.source(command), &why, self.deadline).await, false),
            }
        }
        let streams = match self.redirect(&command.redirects) {
            Ok(streams) => streams,
            Err(why) => return (health::instead(&self.source(command), &why, self.deadline).await, false),
        };
        // `exec` replaces the shell: its command's status is the script's.
        let exec = fields.first().is_some_and(|f| f == "exec");
        let fields = if exec { &fields[1..] } else { &fields[..] };
        let Some(program) = fields.first() else { return (0, exec) };
        let args = &fields[1..];
        let status = match program.rsplit('/').next().unwrap_or(program) {
            "exit" => match args.first().map(|a| a.parse::<i32>()) {
                None => return (self.status, true),
                Some(Ok(n)) => return (n & 0xff, true),
                Some(Err(_)) => return (2, true),
            },
            "true" | ":" => 0,
            "false" => 1,
            "echo" => {
                let newline = args.first().is_none_or(|a| a != "-n");
                let words: Vec<&str> =
                    args.iter().map(String::as_str).skip_while(|a| matches!(*a, "-n" | "-e" | "-E")).collect();
                streams.out(format!("{}{}", words.join(" "), if newline { "\n" } else { "" }));
                0
            }
            "set" => {
                let mut words = args.iter();
                // Options come first; `--` or any other word (`set a b` sets `$1 $2`) ends them.
                // Their sign is ASCII, so the letters after it start on a character boundary.
                while let Some(option) = words.next().filter(|w| w.len() > 1 && w.starts_with(['-', '+']) && *w != "--")
                {
                    let letters = &option[1..];
                    // `-o NAME` takes the next word: `set -o errexit`, `set -eo pipefail`.
                    let named = letters.contains('o') && words.next().is_some_and(|name| name == "errexit");
                    if letters.contains('e') || named {
                        self.errexit = option.starts_with('-');
                    }
                }
                0
            }
            "export" | "readonly" => {
                for (name, value) in args.iter().filter_map(|a| a.split_once('=')).filter(|(n, _)| is_name(n)) {
                    self.vars.insert(name.to_owned(), value.to_owned());
                }
                0
            }
            "unset" => {
                for name in args {
                    self.vars.remove(name);
                }
                0
            }
            tool @ ("curl" | "wget") => {
                let tool = if tool == "curl" { Tool::Curl } else { Tool::Wget };
                match fetch::run(tool, args, streams, self.deadline).await {
                    Outcome::Status(status) => status,
                    Outcome::Instead(why) => health::instead(&fields.join(" "), &why, self.deadline).await,
                }
            }
            _ => health::instead(&fields.join(" "), "cannot run that here", self.deadline).await,
        };
        (status, exec)
    }

    /// The command as written, for messages.
    pub(super) fn source(&mut self, command: &Command) -> String {
        let words = command.words.iter().map(|w| self.joined(w).unwrap_or_else(|_| "${...}".into()));
        words.collect::<Vec<_>>().join(" ")
    }

    /// Where stdout and stderr go. Files are never written: `/dev/null` and anything else is
    /// discarded, and the container's own stdout/stderr (`/proc/1/fd/1`...) are our own.
    pub(super) fn redirect(&mut self, redirects: &[Redirect]) -> Result<Streams, String> {
        let mut streams = Streams::TERMINAL;
        for redirect in redirects.iter().filter(|r| !r.input) {
            let sink = match &redirect.target {
                Target::Fd(1) => streams.out,
                Target::Fd(2) => streams.err,
                Target::Fd(_) | Target::Close => Sink::Discard,
                Target::File(word) => match self.joined(word)?.as_str() {
                    "/dev/stdout" | "/dev/fd/1" | "/proc/self/fd/1" | "/proc/1/fd/1" => Sink::Stdout,
                    "/dev/stderr" | "/dev/fd/2" | "/proc/self/fd/2" | "/proc/1/fd/2" => Sink::Stderr,
                    _ => Sink::Discard,
                },
            };
            match (redirect.both, redirect.fd) {
                (true, _) => (streams.out, streams.err) = (sink, sink),
                (false, 1) => streams.out = sink,
                (false, 2) => streams.err = sink,
                _ => {}
            }
        }
        Ok(streams)
    }

    /// A word's fields: unquoted expansions are split at blanks, and vanish when empty.
    pub(super) fn fields(&mut self, word: &Word) -> Result<Vec<String>, String> {
        let mut segments = Vec::new();
        for piece in &word.0 {
            self.expand(piece, &mut segments)?;
        }
        let mut fields = Vec::new();
        let mut current = String::new();
        let mut started = false;
        for (text, splits) in segments {
            if !splits {
                current.push_str(&text);
                started = true;
                continue;
            }
            for (index, part) in text.split([' ', '\t', '\n']).enumerate() {
                if index > 0 && started {
                    fields.push(std::mem::take(&mut current));
                    started = false;
                }
                if !part.is_empty() {
                    current.push_str(part);
                    started = true;
                }
            }
        }
        if started {
            fields.push(current);
        }
        Ok(fields)
    }

    /// A word as one string, unsplit (assignments, redirection targets).
    pub(super) fn joined(&mut self, word: &Word) -> Result<String, String> {
        let mut segments = Vec::new();
        for piece in &word.0 {
            self.expand(piece, &mut segments)?;
        }
        Ok(segments.into_iter().map(|(text, _)| text).collect())
    }

    /// Appends a piece's expansion as (text, may be split) segments. Unquoted text and
    /// expansions may be split; a default word keeps its own quotes, so `${X:-"a b"}` is one
    /// field. Recursion is bounded by the parser's `MAX_NESTING`.
    pub(super) fn expand(&mut self, piece: &Piece, out: &mut Vec<(String, bool)>) -> Result<(), String> {
        let (name, op, word, quoted) = match piece {
            Piece::Text { text, quoted } => {
                out.push((text.clone(), !quoted));
                return Ok(());
            }
            Piece::Param { name, op, word, quoted } => (name, *op, word, *quoted),
        };
        let value = self.value(name);
        let missing = |colon: bool| value.as_deref().is_none_or(|v| colon && v.is_empty());
        match op {
            ParamOp::Default { colon } if missing(colon) => {
                for inner in &word.0 {
                    self.expand(inner, out)?;
                }
            }
            ParamOp::Alternative { colon } if !missing(colon) => {
                for inner in &word.0 {
                    self.expand(inner, out)?;
                }
            }
            ParamOp::Alternative { .. } => {}
            ParamOp::Assign { colon } if missing(colon) => {
                let default = self.joined(word)?;
                self.vars.insert(name.clone(), default.clone());
                out.push((default, !quoted));
            }
            // The real image may set what the placeholder's environment lacks.
            ParamOp::Error { colon } if missing(colon) => return Err(format!("${name} is not set here")),
            _ => out.push((value.unwrap_or_default(), !quoted)),
        }
        Ok(())
    }

    /// A parameter's value; `None` when unset.
    pub(super) fn value(&self, name: &str) -> Option<String> {
        let arguments = || self.positional.get(1..).unwrap_or_default().join(" ");
        match name {
            "?" => Some(self.status.to_string()),
            "$" => Some(std::process::id().to_string()),
            "#" => Some(self.positional.len().saturating_sub(1).to_string()),
            "@" | "*" => Some(arguments()),
            "!" | "-" => Some(String::new()),
            digit if digit.len() == 1 && digit.as_bytes()[0].is_ascii_digit() => {
                self.positional.get(usize::from(digit.as_bytes()[0] - b'0')).cloned()
            }
            name => self.vars.get(name).cloned(),
        }
    }
}
