//! Every `cargo xtask` command shown in README.md and docs/ parses with the current flags, so the
//! docs cannot rot; the recipes themselves are run as written by `recipes.rs`.

mod common;

use std::path::Path;

use common::XTASK;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Each `cargo xtask ...` command in `text`: in code blocks (fenced or indented), and in inline
/// code spans, cut where the shell or HCL around it ends it.
fn commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let code = fenced || line.starts_with("    ");
        let pieces: Vec<&str> = if code { vec![line] } else { line.split('`').skip(1).step_by(2).collect() };
        for piece in pieces {
            let mut rest = piece;
            while let Some(at) = rest.find("cargo xtask") {
                let after = &rest[at + "cargo xtask".len()..];
                // Inside an HCL string (`command = "cargo xtask ..."`) the quote ends it.
                let quoted = rest[..at].ends_with('"');
                let stops: &[&str] = if quoted { &["\""] } else { &[" &", ")", "  #", " | ", " > "] };
                let end = stops.iter().filter_map(|stop| after.find(stop)).min().unwrap_or(after.len());
                let command = after[..end].trim();
                // `cargo xtask` alone, or before a closing backtick, names the tool, not a task.
                if command.starts_with(|c: char| c.is_ascii_lowercase()) {
                    found.push(command.to_owned());
                }
                rest = &after[end..];
            }
        }
    }
    found
}

/// Shell words, quotes removed; the docs' `[optional]` brackets and `...` dropped.
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ') => words.push(std::mem::take(&mut word)),
            _ => word.push(c),
        }
    }
    words.push(word);
    words.into_iter().map(|w| w.replace(['[', ']'], "")).filter(|w| !w.is_empty() && w != "..." && w != "\\").collect()
}

#[test]
fn every_command_the_docs_show_parses() {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<_> =
        std::fs::read_dir(Path::new(ROOT).join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.sort();
    files.extend(docs.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")));
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in &files {
        for command in commands(&std::fs::read_to_string(file).unwrap()) {
            let mut args = words(&command);
            // A task named in prose (`cargo xtask verify`) is checked to exist.
            if args.len() == 1 {
                args.push("--help".to_owned());
            }
            let output = std::process::Command::new(XTASK).args(&args).env("XTASK_PARSE_ONLY", "1").output().unwrap();
            checked += 1;
            if !output.status.success() {
                failures.push(format!(
                    "{}: cargo xtask {command}\n{}",
                    file.display(),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} commands do not parse:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 40, "only {checked} commands found: is the extraction broken?");
}

#[test]
fn the_extraction_finds_commands_where_the_docs_write_them() {
    let text = "    cargo xtask publish --containers a,b   # a comment\n\
                ```sh\n(cd \"$X\" && cargo xtask publish --from \"$OLDPWD/plan.json\")\ncdk deploy S &\n```\n\
                Run `cargo xtask status --from cdk.out` or `cargo xtask teardown --containers a [--force]`; `cargo xtask verify`.\n\
                \x20   command = \"cargo xtask publish --task-definition ${a.b.arn}\"\n";
    assert_eq!(
        commands(text),
        [
            "publish --containers a,b",
            "publish --from \"$OLDPWD/plan.json\"",
            "status --from cdk.out",
            "teardown --containers a [--force]",
            "verify",
            "publish --task-definition ${a.b.arn}"
        ]
    );
    assert_eq!(
        words("teardown --containers a [--force] [more.json ...]"),
        ["teardown", "--containers", "a", "--force", "more.json"]
    );
}
