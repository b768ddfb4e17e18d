//! Just enough JSON to read ECS task metadata: a value tree, never a panic on bad input.
//!
//! Hand-written rather than serde: every byte of this binary ships in every image.

/// Nesting deeper than this is refused rather than recursed into; metadata documents are shallow.
const MAX_DEPTH: usize = 64;

#[derive(Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object; `None` for a missing key or a non-object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// Parses one JSON document; `None` if it is not valid JSON (or nests deeper than we follow).
pub fn parse(text: &str) -> Option<Json> {
    let mut reader = Reader { bytes: text.as_bytes(), at: 0 };
    let value = reader.value(0)?;
    reader.skip_space();
    (reader.at == reader.bytes.len()).then_some(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Option<Json> {
        let end = self.at.checked_add(word.len())?;
        (self.bytes.get(self.at..end)? == word).then(|| {
            self.at = end;
            value
        })
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Json::String),
            b't' => self.literal(b"true", Json::Bool(true)),
            b'f' => self.literal(b"false", Json::Bool(false)),
            b'n' => self.literal(b"null", Json::Null),
            _ => self.number(),
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.at += 1; // '{'
        let mut members = Vec::new();
        self.skip_space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(Json::Object(members));
        }
        loop {
            self.skip_space();
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.string()?;
            self.skip_space();
            if self.next()? != b':' {
                return None;
            }
            members.push((key, self.value(depth + 1)?));
            self.skip_space();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(Json::Object(members)),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.at += 1; // '['
        let mut items = Vec::new();
        self.skip_space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(Json::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_space();
            match self.next()? {
                b',' => continue,
                b']' => return Some(Json::Array(items)),
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.at;
        while matches!(self.peek(), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
            self.at += 1;
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
        // Rust's float syntax is a superset of JSON's except for these spellings.
        if text.is_empty() || text.starts_with('+') || text.starts_with('.') || text.ends_with('.') {
            return None;
        }
        text.parse::<f64>().ok().filter(|n| n.is_finite()).map(Json::Number)
    }

    fn string(&mut self) -> Option<String> {
        self.at += 1; // '"'
        let mut out = Vec::new();
        loop {
            match self.next()? {
                b'"' => return Some(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let escaped = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
                }
                byte if byte < 0x20 => return None,
                byte => out.push(byte),
            }
        }
    }

    /// The character after `\u`, joining surrogate pairs; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xD800..0xDC00).contains(&first) {
            return Some(char::from_u32(first).unwrap_or('\u{FFFD}'));
        }
        if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
            return Some('\u{FFFD}');
        }
        self.at += 2;
        let second = self.hex4()?;
        if !(0xDC00..0xE000).contains(&second) {
            return Some('\u{FFFD}');
        }
        char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)).or(Some('\u{FFFD}'))
    }

    fn hex4(&mut self) -> Option<u32> {
        let mut value = 0;
        for _ in 0..4 {
            value = value * 16 + (self.next()? as char).to_digit(16)?;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_metadata_document() {
        let doc = parse(
            r#"{"DockerId":"abc","Name":"web","Ports":[{"ContainerPort":8080,"Protocol":"tcp","HostPort":8080,"HostIp":"0.0.0.0"}],
               "Limits":{"CPU":2.5e0},"Labels":{},"Health":null,"Ok":true,"Esc":"a\"\\\/\n\u00e9\ud83d\ude00"}"#,
        )
        .unwrap();
        assert_eq!(doc.get("Name").and_then(Json::as_str), Some("web"));
        let port = &doc.get("Ports").unwrap().as_array()[0];
        assert_eq!(port.get("ContainerPort").and_then(Json::as_f64), Some(8080.0));
        assert_eq!(doc.get("Limits").and_then(|l| l.get("CPU")).and_then(Json::as_f64), Some(2.5));
        assert_eq!(doc.get("Esc").and_then(Json::as_str), Some("a\"\\/\né😀"));
        assert_eq!(doc.get("Health"), Some(&Json::Null));
        assert!(doc.get("Missing").is_none() && doc.get("Name").unwrap().get("x").is_none());
    }

    #[test]
    fn refuses_bad_documents_without_panicking() {
        for bad in [
            "",
            "{",
            "[",
            "{\"a\"",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "tru",
            "nul",
            "-",
            "+1",
            ".5",
            "1.",
            "01x",
            "{} {}",
            "\"a\u{1}\"",
            "{1:2}",
            "[\"\\ud800\\u",
            "1e999",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let deep = "[".repeat(100_000);
        assert_eq!(parse(&deep), None);
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&deep_ok).is_some());
        assert_eq!(parse("\"\\ud800x\"").and_then(|j| j.as_str().map(str::to_owned)), Some("\u{FFFD}x".into()));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn never_panics_on_json_like_noise(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec!["{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "d83d", "1", "-", "e", ".", "true", "null", " ", "\"k\""]),
                0..40,
            )
        ) {
            let _ = parse(&pieces.concat());
        }
    }
}
