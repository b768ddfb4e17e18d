//! The shell language health checks are written in, read into commands: words with their
//! quoting and expansions, redirections, `&&`, `||`, `;` and pipes. Nothing is run here.

/// `${a:-${b:-${c}}}` nests this deep at most; deeper is refused, never recursed into.
pub(super) const MAX_NESTING: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Word(pub(super) Vec<Piece>);

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    /// Literal text; `quoted` text is never split into fields.
    Text {
        text: String,
        quoted: bool,
    },
    Param {
        name: String,
        op: ParamOp,
        word: Word,
        quoted: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ParamOp {
    Plain,
    /// `${X-w}`, `${X:-w}`; `colon` also treats an empty value as unset.
    Default {
        colon: bool,
    },
    Assign {
        colon: bool,
    },
    Alternative {
        colon: bool,
    },
    Error {
        colon: bool,
    },
}

#[derive(Debug, PartialEq)]
pub(super) struct Redirect {
    pub(super) fd: u32,
    /// `&>` sends stdout and stderr.
    pub(super) both: bool,
    pub(super) input: bool,
    pub(super) target: Target,
}

#[derive(Debug, PartialEq)]
pub(super) enum Target {
    File(Word),
    Fd(u32),
    Close,
}

#[derive(Debug, Default, PartialEq)]
pub(super) struct Command {
    pub(super) assignments: Vec<(String, Word)>,
    pub(super) words: Vec<Word>,
    pub(super) redirects: Vec<Redirect>,
}

#[derive(Debug, PartialEq)]
pub(super) enum Pipeline {
    Simple(Command),
    /// `a | b`: not run; its source text is kept for the message.
    Piped(String),
}

/// A pipeline followed by `&&` (true) or `||` (false) pipelines.
#[derive(Debug, PartialEq)]
pub(super) struct AndOr {
    pub(super) first: Pipeline,
    pub(super) rest: Vec<(bool, Pipeline)>,
}

#[derive(Debug, PartialEq)]
pub(super) enum Token {
    Word(Word),
    Redirect(Redirect),
    And,
    Or,
    Pipe,
    Semicolon,
    Newline,
}

/// Parses a whole script; `Err` names the first thing it does not understand.
pub(super) fn parse(script: &str) -> Result<Vec<AndOr>, String> {
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
                    Some(Pipeline::Piped(
                        script.chars().skip(from).take(start - from).collect::<String>().trim().to_owned(),
                    ))
                } else if is_empty {
                    None
                } else {
                    Some(Pipeline::Simple(std::mem::take(&mut command)))
                };
                pipeline_start = None;
                match (pipeline, pending.take()) {
                    (Some(p), None) => and_or = Some(AndOr { first: p, rest: Vec::new() }),
                    (Some(p), Some(op)) => {
                        and_or.as_mut().ok_or("`&&` or `||` without a command before it")?.rest.push((op, p))
                    }
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
pub(super) fn as_assignment(word: &Word) -> Option<(String, Word)> {
    let Some(Piece::Text { text, quoted: false }) = word.0.first() else { return None };
    let (name, value) = text.split_once('=')?;
    if !is_name(name) {
        return None;
    }
    let mut rest = word.0.clone();
    rest[0] = Piece::Text { text: value.to_owned(), quoted: false };
    Some((name.to_owned(), Word(rest)))
}

pub(super) fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compound commands and the like, which this shell does not run.
pub(super) fn reserved_word(word: &Word) -> Option<&str> {
    let [Piece::Text { text, quoted: false }] = word.0.as_slice() else { return None };
    let reserved = [
        "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for", "in", "{", "}", "!",
        "[[", "]]", "function", "select", "time", "coproc",
    ];
    reserved.contains(&text.as_str()).then_some(text.as_str())
}

pub(super) struct Lexer {
    pub(super) chars: Vec<char>,
    pub(super) at: usize,
}

impl Lexer {
    pub(super) fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    pub(super) fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.at + offset).copied()
    }

    pub(super) fn eat(&mut self, c: char) -> bool {
        let matched = self.peek() == Some(c);
        self.at += usize::from(matched);
        matched
    }

    /// Tokens with their source spans (in chars).
    pub(super) fn tokens(mut self) -> Result<Vec<(Token, usize, usize)>, String> {
        let mut tokens = Vec::new();
        loop {
            while matches!(self.peek(), Some(' ' | '\t' | '\r'))
                || (self.peek() == Some('\\') && self.peek_at(1) == Some('\n'))
            {
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
    pub(super) fn redirect(&mut self, fd: Option<u32>) -> Result<Redirect, String> {
        let input = self.peek() == Some('<');
        self.at += 1;
        if input && self.peek() == Some('<') {
            return Err("`<<` (here-documents)".into());
        }
        let fd = fd.unwrap_or(if input { 0 } else { 1 });
        if self.eat('&') {
            let digits: String =
                std::iter::from_fn(|| self.peek().filter(char::is_ascii_digit).inspect(|_| self.at += 1)).collect();
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

    pub(super) fn redirect_target(&mut self, fd: u32, both: bool, input: bool) -> Result<Redirect, String> {
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
    pub(super) fn word(&mut self, in_braces: bool, depth: usize) -> Result<Word, String> {
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
    pub(super) fn double_quoted(&mut self, pieces: &mut Vec<Piece>, depth: usize) -> Result<(), String> {
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
    pub(super) fn dollar(&mut self, quoted: bool, depth: usize) -> Result<Option<Piece>, String> {
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

    pub(super) fn name(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    /// After `${`: `NAME}`, or `NAME` with `-`, `=`, `+`, `?` (each optionally after `:`) and a word.
    pub(super) fn braced(&mut self, quoted: bool, depth: usize) -> Result<Piece, String> {
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

pub(super) fn flush(pieces: &mut Vec<Piece>, text: &mut String, quoted: bool) {
    if !text.is_empty() {
        pieces.push(Piece::Text { text: std::mem::take(text), quoted });
    }
}

// ---- Running it ----
