//! `/bin/sh -c SCRIPT`, as Docker runs a `CMD-SHELL` health check: enough of the shell language
//! for the checks task definitions carry (`curl -f http://localhost:${PORT:-3000}/health || exit 1`),
//! with curl and wget built in and no other program run, ever.
//!
//! What it cannot run as written (a pipe, `nc`, `node healthcheck.js`, a syntax it does not know)
//! is answered by the placeholder's own health instead, saying so on stderr: the check was
//! written for the real image, which the placeholder stands in for.

use std::collections::HashMap;

use tokio::time::Instant;

use crate::fetch::{self, Outcome, Sink, Streams, Tool};
use crate::health;

/// `${a:-${b:-${c}}}` nests this deep at most; deeper is refused, never recursed into.
const MAX_NESTING: usize = 8;

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

#[derive(Debug, Clone, PartialEq)]
struct Word(Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// Literal text; `quoted` text is never split into fields.
    Text { text: String, quoted: bool },
    Param { name: String, op: ParamOp, word: Word, quoted: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ParamOp {
    Plain,
    /// `${X-w}`, `${X:-w}`; `colon` also treats an empty value as unset.
    Default { colon: bool },
    Assign { colon: bool },
    Alternative { colon: bool },
    Error { colon: bool },
}

#[derive(Debug, PartialEq)]
struct Redirect {
    fd: u32,
    /// `&>` sends stdout and stderr.
    both: bool,
    input: bool,
    target: Target,
}

#[derive(Debug, PartialEq)]
enum Target {
    File(Word),
    Fd(u32),
    Close,
}

#[derive(Debug, Default, PartialEq)]
struct Command {
    assignments: Vec<(String, Word)>,
    words: Vec<Word>,
    redirects: Vec<Redirect>,
}

#[derive(Debug, PartialEq)]
enum Pipeline {
    Simple(Command),
    /// `a | b`: not run; its source text is kept for the message.
    Piped(String),
}

/// A pipeline followed by `&&` (true) or `||` (false) pipelines.
#[derive(Debug, PartialEq)]
struct AndOr {
    first: Pipeline,
    rest: Vec<(bool, Pipeline)>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(Word),
    Redirect(Redirect),
    And,
    Or,
    Pipe,
    Semicolon,
    Newline,
}

/// Parses a whole script; `Err` names the first thing it does not understand.
fn parse(script: &str) -> Result<Vec<AndOr>, String> {
    let tokens = Lexer { chars: script.chars().collect(), at: 0 }.tokens()?;
    let mut list = Vec::new();
    let mut command = Command::default();
    let mut pipe: Option<(usize, usize)> = None; // source span of a pipeline with `|`
    let mut pipeline_start = None;
    let mut and_or: Option<AndOr> = None;
    let mut pending: Option<bool> = None; // `&&`/`||` waiting for its right side

    // A final newline ends the last command like any other.
    let end_of_script = (Token::Newline, script.chars().count(), script.chars().count());
    for (token, start, end) in tokens.into_iter().chain([end_of_script]) {
        let is_empty = command.words.is_empty() && command.assignments.is_empty() && command.redirects.is_empty();
        pipeline_start.get_or_insert(start);
        match token {
            Token::Word(word) => {
                if command.words.is_empty() {
                    if let Some(assignment) = as_assignment(&word) {
                        command.assignments.push(assignment);
                        continue;
                    }
                    if let Some(reserved) = reserved_word(&word) {
                        return Err(format!("`{reserved}`"));
                    }
                }
                command.words.push(word);
            }
            Token::Redirect(redirect) => command.redirects.push(redirect),
            Token::Pipe if is_empty => return Err("`|` without a command before it".into()),
            Token::Pipe => {
                let from = pipe.map_or(pipeline_start.unwrap_or(start), |(from, _)| from);
                pipe = Some((from, end));
                command = Command::default();
            }
            Token::And | Token::Or | Token::Semicolon | Token::Newline => {
                let pipeline = if let Some((from, _)) = pipe.take() {
                    if is_empty {
                        return Err("`|` without a command after it".into());
                    }
                    let _ = std::mem::take(&mut command);
                    Some(Pipeline::Piped(script.chars().skip(from).take(start - from).collect::<String>().trim().to_owned()))
                } else if is_empty {
                    None
                } else {
                    Some(Pipeline::Simple(std::mem::take(&mut command)))
                };
                pipeline_start = None;
                match (pipeline, pending.take()) {
                    (Some(p), None) => and_or = Some(AndOr { first: p, rest: Vec::new() }),
                    (Some(p), Some(op)) => and_or.as_mut().ok_or("`&&` or `||` without a command before it")?.rest.push((op, p)),
                    // A newline may follow `&&`/`||`; anything else needs a command first.
                    (None, Some(op)) if matches!(token, Token::Newline) => pending = Some(op),
                    (None, None) if matches!(token, Token::Newline) => {}
                    (None, _) => return Err("a command is missing".into()),
                }
                match token {
                    Token::And => pending = pending.or(Some(true)),
                    Token::Or => pending = pending.or(Some(false)),
                    _ if pending.is_none() => list.extend(and_or.take()),
                    _ => {}
                }
            }
        }
    }
    if pending.is_some() {
        return Err("the script ends with `&&` or `||`".into());
    }
    Ok(list)
}

/// `NAME=value` at the start of a command.
fn as_assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Piece::Text { text, quoted: false }) = word.0.first() else { return None };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut rest = word.0.clone();
    rest[0] = Piece::Text { text: value.to_owned(), quoted: false };
    Some((name.to_owned(), Word(rest)))
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compound commands and the like, which this shell does not run.
fn reserved_word(word: &Word) -> Option<&str> {
    let [Piece::Text { text, quoted: false }] = word.0.as_slice() else { return None };
    let reserved = [
        "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "in", "{", "}", "!",
        "[[", "]]", "function", "select", "time", "coproc",
    ];
    reserved.contains(&text.as_str()).then_some(text.as_str())
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let matched = self.peek() == Some(c);
        self.at += usize::from(matched);
        matched
    }

    /// Tokens with their source spans (in chars).
    fn tokens(mut self) -> Result<Vec<(Token, usize, usize)>, String> {
        let mut tokens = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ' | '\t' | '\r')) || (self.peek() == Some('\\') && self.peek_at(1) == Some('\n')) {
                self.at += if self.peek() == Some('\\') { 2 } else { 1 };
            }
            let start = self.at;
            let Some(c) = self.peek() else { return Ok(tokens) };
            let token = match c {
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.at += 1;
                    }
                    continue;
                }
                '\n' => {
                    self.at += 1;
                    Token::Newline
                }
                ';' => {
                    self.at += 1;
                    if self.peek() == Some(';') {
                        return Err("`;;`".into());
                    }
                    Token::Semicolon
                }
                '&' if self.peek_at(1) == Some('&') => {
                    self.at += 2;
                    Token::And
                }
                '&' if self.peek_at(1) == Some('>') => {
                    self.at += 2;
                    self.eat('>');
                    Token::Redirect(self.redirect_target(1, true, false)?)
                }
                '&' => return Err("`&` (background jobs)".into()),
                '|' if self.peek_at(1) == Some('|') => {
                    self.at += 2;
                    Token::Or
                }
                '|' => {
                    self.at += 1;
                    self.eat('&');
                    Token::Pipe
                }
                '(' | ')' => return Err("`(` `)` (subshells)".into()),
                '<' | '>' => Token::Redirect(self.redirect(None)?),
                _ => {
                    let word = self.word(false, 0)?;
                    // `2>&1`: digits right before `>` or `<` are the descriptor, not a word.
                    if let ([Piece::Text { text, quoted: false }], Some('<' | '>')) = (word.0.as_slice(), self.peek())
                        && let Ok(fd) = text.parse::<u32>()
                    {
                        tokens.push((Token::Redirect(self.redirect(Some(fd))?), start, self.at));
                        continue;
                    }
                    Token::Word(word)
                }
            };
            tokens.push((token, start, self.at));
        }
    }

    /// At `<` or `>`: `>`, `>>`, `>|`, `>&N`, `>&-`, `<`, `<&N`, `<>`; here-documents are refused.
    fn redirect(&mut self, fd: Option<u32>) -> Result<Redirect, String> {
        let input = self.peek() == Some('<');
        self.at += 1;
        if input && self.peek() == Some('<') {
            return Err("`<<` (here-documents)".into());
        }
        let fd = fd.unwrap_or(if input { 0 } else { 1 });
        if self.eat('&') {
            let digits: String = std::iter::from_fn(|| self.peek().filter(char::is_ascii_digit).inspect(|_| self.at += 1)).collect();
            let target = match digits.parse::<u32>() {
                Ok(n) => Target::Fd(n),
                Err(_) if self.eat('-') => Target::Close,
                Err(_) => return self.redirect_target(fd, false, input),
            };
            return Ok(Redirect { fd, both: false, input, target });
        }
        let _ = self.eat('>') || self.eat('|');
        self.redirect_target(fd, false, input)
    }

    fn redirect_target(&mut self, fd: u32, both: bool, input: bool) -> Result<Redirect, String> {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.at += 1;
        }
        let word = self.word(false, 0)?;
        if word.0.is_empty() {
            return Err("a redirection without a file".into());
        }
        Ok(Redirect { fd, both, input, target: Target::File(word) })
    }

    /// An unquoted word, up to a blank or an operator; inside `${X:-...}` (`in_braces`), up to
    /// the closing `}` instead.
    fn word(&mut self, in_braces: bool, depth: usize) -> Result<Word, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                if in_braces {
                    return Err("an unterminated `${`".into());
                }
                break;
            };
            match c {
                '}' if in_braces => break,
                ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' if !in_braces => break,
                '\'' => {
                    self.at += 1;
                    let start = self.at;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.at += 1;
                    }
                    if !self.eat('\'') {
                        return Err("an unterminated `'`".into());
                    }
                    flush(&mut pieces, &mut text, false);
                    pieces.push(Piece::Text { text: self.chars[start..self.at - 1].iter().collect(), quoted: true });
                }
                '"' => {
                    self.at += 1;
                    flush(&mut pieces, &mut text, false);
                    self.double_quoted(&mut pieces, depth)?;
                }
                '\\' => {
                    self.at += 1;
                    match self.peek() {
                        Some('\n') => self.at += 1,
                        Some(escaped) => {
                            self.at += 1;
                            flush(&mut pieces, &mut text, false);
                            pieces.push(Piece::Text { text: escaped.to_string(), quoted: true });
                        }
                        None => text.push('\\'),
                    }
                }
                '$' => {
                    flush(&mut pieces, &mut text, false);
                    match self.dollar(false, depth)? {
                        Some(piece) => pieces.push(piece),
                        None => text.push('$'),
                    }
                }
                '`' => return Err("`...` (command substitution)".into()),
                c => {
                    self.at += 1;
                    text.push(c);
                }
            }
        }
        flush(&mut pieces, &mut text, false);
        Ok(Word(pieces))
    }

    /// After an opening `"`, up to the closing one.
    fn double_quoted(&mut self, pieces: &mut Vec<Piece>, depth: usize) -> Result<(), String> {
        let mut text = String::new();
        pieces.push(Piece::Text { text: String::new(), quoted: true }); // `""` is still a word
        loop {
            match self.peek() {
                None => return Err("an unterminated `\"`".into()),
                Some('"') => {
                    self.at += 1;
                    flush(pieces, &mut text, true);
                    return Ok(());
                }
                Some('\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some('\n') => self.at += 1,
                        Some(c @ ('$' | '`' | '"' | '\\')) => {
                            self.at += 1;
                            text.push(c);
                        }
                        _ => text.push('\\'),
                    }
                }
                Some('$') => {
                    flush(pieces, &mut text, true);
                    match self.dollar(true, depth)? {
                        Some(piece) => pieces.push(piece),
                        None => text.push('$'),
                    }
                }
                Some('`') => return Err("`...` (command substitution)".into()),
                Some(c) => {
                    self.at += 1;
                    text.push(c);
                }
            }
        }
    }

    /// At `$`: a parameter, or `None` for a literal `$`.
    fn dollar(&mut self, quoted: bool, depth: usize) -> Result<Option<Piece>, String> {
        self.at += 1;
        let plain = |name: String| Some(Piece::Param { name, op: ParamOp::Plain, word: Word(Vec::new()), quoted });
        match self.peek() {
            Some('(') => Err("`$(...)` (command substitution)".into()),
            Some('\'') if !quoted => Err("`$'...'`".into()),
            Some('{') => {
                self.at += 1;
                self.braced(quoted, depth).map(Some)
            }
            Some(c @ ('?' | '$' | '#' | '@' | '*' | '!' | '-' | '0'..='9')) => {
                self.at += 1;
                Ok(plain(c.to_string()))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => Ok(plain(self.name())),
            _ => Ok(None),
        }
    }

    fn name(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// After `${`: `NAME}`, or `NAME` with `-`, `=`, `+`, `?` (each optionally after `:`) and a word.
    fn braced(&mut self, quoted: bool, depth: usize) -> Result<Piece, String> {
        if depth >= MAX_NESTING {
            return Err("`${...}` nested too deeply".into());
        }
        let name = match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => self.name(),
            Some(c @ ('?' | '$' | '@' | '*' | '!' | '-' | '0'..='9')) => {
                self.at += 1;
                c.to_string()
            }
            _ => return Err("this `${...}` form".into()),
        };
        if self.eat('}') {
            return Ok(Piece::Param { name, op: ParamOp::Plain, word: Word(Vec::new()), quoted });
        }
        let colon = self.eat(':');
        let op = match self.peek() {
            Some('-') => ParamOp::Default { colon },
            Some('=') => ParamOp::Assign { colon },
            Some('+') => ParamOp::Alternative { colon },
            Some('?') => ParamOp::Error { colon },
            _ => return Err("this `${...}` form".into()),
        };
        self.at += 1;
        let mut word = self.word(true, depth + 1)?;
        if !self.eat('}') {
            return Err("an unterminated `${`".into());
        }
        if quoted {
            for piece in &mut word.0 {
                match piece {
                    Piece::Text { quoted, .. } | Piece::Param { quoted, .. } => *quoted = true,
                }
            }
        }
        Ok(Piece::Param { name, op, word, quoted })
    }
}

fn flush(pieces: &mut Vec<Piece>, text: &mut String, quoted: bool) {
    if !text.is_empty() {
        pieces.push(Piece::Text { text: std::mem::take(text), quoted });
    }
}

// ---- Running it ----

struct Shell {
    vars: HashMap<String, String>,
    /// `$0`, `$1`...
    positional: Vec<String>,
    /// `$?`
    status: i32,
    /// `set -e`
    errexit: bool,
    deadline: Instant,
}

impl Shell {
    /// Runs the list; `Some(status)` when the script exits early (`exit`, or `set -e`).
    async fn run(&mut self, list: &[AndOr]) -> Option<i32> {
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
    async fn pipeline(&mut self, pipeline: &Pipeline) -> Option<()> {
        let (status, exit) = match pipeline {
            Pipeline::Piped(text) => (health::instead(text, "pipes are not run here", self.deadline).await, false),
            Pipeline::Simple(command) => self.command(command).await,
        };
        self.status = status;
        (!exit).then_some(())
    }

    /// Runs a simple command: returns its status, and whether it ends the script.
    async fn command(&mut self, command: &Command) -> (i32, bool) {
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
                let words: Vec<&str> = args.iter().map(String::as_str).skip_while(|a| matches!(*a, "-n" | "-e" | "-E")).collect();
                streams.out(format!("{}{}", words.join(" "), if newline { "\n" } else { "" }));
                0
            }
            "set" => {
                for option in args.iter().filter(|a| a.len() > 1 && !a.starts_with("--")) {
                    if option[1..].contains('e') {
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
    fn source(&mut self, command: &Command) -> String {
        let words = command.words.iter().map(|w| self.joined(w).unwrap_or_else(|_| "${...}".into()));
        words.collect::<Vec<_>>().join(" ")
    }

    /// Where stdout and stderr go. Files are never written: `/dev/null` and anything else is
    /// discarded, and the container's own stdout/stderr (`/proc/1/fd/1`...) are our own.
    fn redirect(&mut self, redirects: &[Redirect]) -> Result<Streams, String> {
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
    fn fields(&mut self, word: &Word) -> Result<Vec<String>, String> {
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
    fn joined(&mut self, word: &Word) -> Result<String, String> {
        let mut segments = Vec::new();
        for piece in &word.0 {
            self.expand(piece, &mut segments)?;
        }
        Ok(segments.into_iter().map(|(text, _)| text).collect())
    }

    /// Appends a piece's expansion as (text, may be split) segments. Unquoted text and
    /// expansions may be split; a default word keeps its own quotes, so `${X:-"a b"}` is one
    /// field. Recursion is bounded by the parser's `MAX_NESTING`.
    fn expand(&mut self, piece: &Piece, out: &mut Vec<(String, bool)>) -> Result<(), String> {
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
    fn value(&self, name: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

        assert!(matches!(parse("curl -s localhost:8080/health | grep UP").unwrap()[0].first, Pipeline::Piped(ref t) if t == "curl -s localhost:8080/health | grep UP"));
        assert!(parse("a &&\n b").unwrap()[0].rest.len() == 1);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse(" \n;\n").unwrap_err(), "a command is missing");
        assert!(parse("exit 0").is_ok() && parse("true;").is_ok() && parse("echo $ $1 ${1} \\$x").is_ok());
    }

    #[test]
    fn refuses_what_it_does_not_run() {
        for bad in [
            "curl $(cat url)", "curl `cat url`", "( curl x )", "if true; then :; fi", "{ true; }", "true &", "cat <<EOF",
            "echo 'unterminated", "echo \"unterminated", "echo ${unterminated", "curl x ||", "|| true", "; true", "true ;;",
            "echo ${#X}", "echo ${X%y}", "! true", "a | ", "echo $'x'", "f() { :; }", "echo >", "[[ -f x ]]",
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
        for noise in ["\0", "\\", "$", "${", "${}", "$((", "'\0'", "\"\\", "2>&", ">&-", "<>x", "&>", "|&", "a\\\n", "é${é}"] {
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
        assert_eq!(fields_of(&mut sh, "x ${PORT:-3000} ${NOPE:-3000} ${EMPTY:-d} ${EMPTY-d} ${NOPE-d}"), ["x", "8080", "3000", "d", "d"]);
        assert_eq!(fields_of(&mut sh, "x $OPTS \"$OPTS\" a$EMPTY $EMPTY \"\" ''"), ["x", "-f", "-s", " -f  -s ", "a", "", ""]);
        assert_eq!(fields_of(&mut sh, "x $? $# $1 $2 $3 $@ ${PORT:+set} ${NOPE:+set}"), ["x", "3", "2", "one", "two", "one", "two", "set"]);
        assert_eq!(fields_of(&mut sh, "x ${A:=assigned} $A '$PORT' \\$PORT \"a\\\"b\\$\""), ["x", "assigned", "assigned", "$PORT", "$PORT", "a\"b$"]);
        assert_eq!(fields_of(&mut sh, "x ${NOPE:-\"a b\"} ${NOPE:-${PORT}} \"${NOPE:-a  b}\" ${NOPE:-a  b}"), ["x", "a b", "8080", "a  b", "a", "b"]);
        let list = parse("x ${NOPE?}").unwrap();
        assert!(sh.fields(&simple(&list, 0).words[1]).is_err());
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
