//! What `--from` found, for people (`publish --from --dry-run`'s table) and machines (`--output json`).

use serde_json::Value;

use super::{Found, Kind};
use crate::sources::taskdef;

pub fn print_table(found: &[Found]) {
    let names = taskdef::unique_names(found.iter().map(|f| &f.container));
    let rows: Vec<[String; 6]> = found
        .iter()
        .zip(names)
        .map(|(f, unique)| {
            let c = &f.container;
            let repository = match &f.kind {
                Kind::Ecr(name) => name.clone(),
                Kind::Owned { repository, .. } => format!("{repository} (the stack's)"),
                Kind::Deployed { repository, .. } => format!("{repository} (the stack's, filled)"),
                Kind::Other => format!("{} (not ours)", f.image),
                Kind::Unresolved(_) => "(unresolved)".to_owned(),
            };
            let ports = if c.ports.is_empty() {
                "-".to_owned()
            } else {
                c.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
            };
            let health = c.health_check.as_ref().map_or("-".to_owned(), |h| h.command.join(" "));
            let balancer = c.load_balancer.as_ref().map_or("-".to_owned(), |lb| {
                let port = lb.port.or(c.ports.first().copied()).map_or(String::new(), |p| format!(":{p}"));
                format!("GET {port}{} {}", lb.path.as_deref().unwrap_or("/"), lb.matcher.as_deref().unwrap_or("200"))
            });
            [unique, repository, ports, health, balancer, f.boots()]
        })
        .collect();
    let header = ["CONTAINER", "REPOSITORY", "PORTS", "HEALTH CHECK", "LOAD BALANCER", "BOOTS"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    for f in found {
        if let Some(said) = f.left_alone() {
            println!("{said}");
        }
    }
    println!();
}

/// What was found, for `--output json`.
pub fn to_json(found: &[Found]) -> Value {
    let names = taskdef::unique_names(found.iter().map(|f| &f.container));
    Value::Array(
        found
            .iter()
            .zip(names)
            .map(|(f, unique)| {
                let (kind, repository, why) = match &f.kind {
                    Kind::Ecr(name) => ("ecr", Some(name.as_str()), None),
                    Kind::Owned { repository, .. } => ("created-by-the-stack", Some(repository.as_str()), None),
                    Kind::Deployed { repository, .. } => ("created-by-the-deployed-stack", Some(repository.as_str()), None),
                    Kind::Other => ("not-ours", None, None),
                    Kind::Unresolved(why) => ("unresolved", None, Some(why.as_str())),
                };
                let c = &f.container;
                serde_json::json!({
                    "container": unique,
                    "name": c.name,
                    "task": c.task,
                    "location": f.location,
                    "image": f.image,
                    "kind": kind,
                    "repository": repository,
                    "unresolved": why,
                    "ports": c.ports,
                    "health_check": c.health_check.as_ref().map(|h| &h.command),
                    "load_balancer": c.load_balancer.as_ref().map(|lb| serde_json::json!({ "path": lb.path, "port": lb.port, "matcher": lb.matcher })),
                    "boots": f.boots(),
                })
            })
            .collect(),
    )
}
