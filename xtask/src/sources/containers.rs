//! `--containers a,b:8080`: repository names checked against ECR's rules, each with the ports
//! given with it.

use anyhow::{Result, bail};

use crate::base::{Usage, names};

/// Splits the comma-separated list: spaces trimmed, empty entries and duplicates dropped, and
/// every name checked before anything is changed. A name may carry ports (`api:8080:9090`).
pub fn parse_containers(list: &str) -> Result<Vec<String>> {
    Ok(container_specs(list)?.into_iter().map(|(name, _)| name).collect())
}

/// Each container's name and the ports given with it.
pub fn container_specs(list: &str) -> Result<Vec<(String, Vec<u16>)>> {
    let mut specs: Vec<(String, Vec<u16>)> = Vec::new();
    for spec in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let mut parts = spec.split(':');
        let name = parts.next().unwrap_or_default();
        names::check_repository(name).map_err(|e| Usage(format!("{e}")))?;
        let ports = parts
            .map(|p| match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => Ok(port),
                _ => Err(Usage(format!("--containers {spec:?}: {p:?} is not a port; use name:8080"))),
            })
            .collect::<Result<Vec<u16>, Usage>>()?;
        match specs.iter_mut().find(|(n, _)| n == name) {
            Some((_, known)) => known.extend(ports.into_iter().filter(|p| !known.contains(p)).collect::<Vec<_>>()),
            None => specs.push((name.to_owned(), ports)),
        }
    }
    if specs.is_empty() {
        bail!(Usage("no container names: pass --containers my-svc-staging,my-svc-prod".into()));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_lists() {
        assert_eq!(parse_containers(" a1 , b2,a1,, ").unwrap(), ["a1", "b2"]);
        for bad in ["", " , ", "Upper", "x", "a//b", "-ab"] {
            let error = parse_containers(bad).unwrap_err();
            assert!(error.downcast_ref::<Usage>().is_some(), "{bad}: {error}");
        }
        let long = "a".repeat(257);
        assert!(parse_containers(&format!("ok1,{long}")).unwrap_err().to_string().contains("257 characters"));
    }
}
