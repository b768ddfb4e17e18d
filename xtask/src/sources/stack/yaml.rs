//! YAML templates as CloudFormation reads them: the short forms (`!Sub`, `!Ref`, `!GetAtt`...)
//! become the long ones, and aliases are copied with a bound.

use std::collections::HashMap;

use anyhow::{Context as _, Result, bail};
use serde_json::{Map, Value};

/// A YAML CloudFormation template as JSON, the short forms (`!Ref`, `!Sub`, `!GetAtt A.B`, ...)
/// written as their long forms. Scalars stay strings (the readers accept numbers written as
/// strings), so `012345678901` keeps its leading zero.
pub fn yaml(text: &str) -> Result<Value> {
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
    use yaml_rust2::scanner::{Marker, TScalarStyle};

    #[derive(Default)]
    struct Builder {
        stack: Vec<(Value, Option<String>, usize, Option<Tag>)>,
        /// Each anchored value and its number of nodes.
        anchors: HashMap<usize, (Value, usize)>,
        documents: Vec<Value>,
        /// Nodes that aliases have copied: bounded, so a few lines of nested aliases cannot fill
        /// memory.
        copied: usize,
    }

    impl Builder {
        fn push(&mut self, value: Value, anchor: usize) {
            if anchor > 0 {
                self.anchors.insert(anchor, (value.clone(), nodes(&value)));
            }
            match self.stack.last_mut() {
                None => self.documents.push(value),
                Some((Value::Array(items), ..)) => items.push(value),
                Some((Value::Object(map), key, ..)) => match key.take() {
                    None => *key = Some(value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())),
                    Some(k) => {
                        map.insert(k, value);
                    }
                },
                Some(_) => {}
            }
        }
    }

    /// `!Ref x` is `{"Ref": x}`, `!GetAtt A.B` is `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is
    /// `{"Fn::Sub": s}`.
    fn tagged(value: Value, tag: Option<Tag>) -> Value {
        let Some(tag) = tag else { return value };
        let name = match (tag.handle.as_str(), tag.suffix.as_str()) {
            ("!", suffix) => suffix.to_owned(),
            ("", suffix) if suffix.starts_with('!') => suffix[1..].to_owned(),
            _ => return value,
        };
        let (key, value) = match (name.as_str(), value) {
            ("Ref", v) => ("Ref".to_owned(), v),
            ("Condition", v) => ("Condition".to_owned(), v),
            ("GetAtt", Value::String(s)) => {
                let parts = match s.split_once('.') {
                    Some((r, a)) => vec![Value::String(r.to_owned()), Value::String(a.to_owned())],
                    None => vec![Value::String(s)],
                };
                ("Fn::GetAtt".to_owned(), Value::Array(parts))
            }
            (other, v) => (format!("Fn::{other}"), v),
        };
        Value::Object(Map::from_iter([(key, value)]))
    }

    impl MarkedEventReceiver for Builder {
        fn on_event(&mut self, event: Event, _mark: Marker) {
            match event {
                Event::Scalar(text, style, anchor, tag) => {
                    let plain_null = style == TScalarStyle::Plain
                        && tag.is_none()
                        && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                    let value = if plain_null { Value::Null } else { tagged(Value::String(text), tag) };
                    self.push(value, anchor);
                }
                Event::SequenceStart(anchor, tag) => self.stack.push((Value::Array(Vec::new()), None, anchor, tag)),
                Event::MappingStart(anchor, tag) => self.stack.push((Value::Object(Map::new()), None, anchor, tag)),
                Event::SequenceEnd | Event::MappingEnd => {
                    if let Some((value, _, anchor, tag)) = self.stack.pop() {
                        self.push(tagged(value, tag), anchor);
                    }
                }
                Event::Alias(anchor) => {
                    let (value, size) = self.anchors.get(&anchor).map_or((&Value::Null, 1), |(v, n)| (v, *n));
                    self.copied += size;
                    if self.copied <= ALIAS_BUDGET {
                        let value = value.clone();
                        self.push(value, 0);
                    }
                }
                _ => {}
            }
        }
    }

    const ALIAS_BUDGET: usize = 1 << 20;

    fn nodes(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(nodes).sum::<usize>(),
            Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
            _ => 1,
        }
    }
    let mut builder = Builder::default();
    Parser::new_from_str(text).load(&mut builder, false).map_err(|e| anyhow::anyhow!("not YAML: {e}"))?;
    if builder.copied > ALIAS_BUDGET {
        bail!("its YAML aliases expand to more than {ALIAS_BUDGET} values");
    }
    builder.documents.into_iter().next().context("an empty YAML file")
}
