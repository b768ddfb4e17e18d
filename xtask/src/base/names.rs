//! Image and repository names: ECR's rules, which are also Docker's for a repository path.

use anyhow::{Result, bail};

/// Checks `name` against ECR's repository-name rules: 2-256 characters; lowercase letters and
/// digits, separated by `.`, `_`, `__` or runs of `-`; namespaces separated by `/`.
pub fn check_repository(name: &str) -> Result<()> {
    let fix = "use 2-256 lowercase letters, digits and . _ - / (e.g. my-svc-staging)";
    if name.len() < 2 || name.len() > 256 {
        bail!("invalid repository name {name:?}: it has {} characters; {fix}", name.len());
    }
    for component in name.split('/') {
        if !component_ok(component) {
            bail!("invalid repository name {name:?}: {}; {fix}", component_problem(component));
        }
    }
    Ok(())
}

fn component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn component_problem(component: &str) -> String {
    if component.is_empty() {
        "it has an empty path component (a leading, trailing or double /)".to_owned()
    } else if let Some(c) =
        component.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c)))
    {
        format!("{c:?} is not allowed")
    } else {
        format!("{component:?} must start and end with a letter or digit and use single . or _, __ or -")
    }
}

/// Checks an image tag: up to 128 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid tag {tag:?}: use up to 128 letters, digits, _ . - (not starting with . or -)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_names() {
        for good in ["ab", "my-svc-staging", "team/api", "a.b", "a_b", "a__b", "a---b", "x1/y2/z3", &"a".repeat(256)] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "a",
            "",
            "My-Svc",
            "a//b",
            "-ab",
            "ab-",
            "/ab",
            "ab/",
            "a..b",
            "a___b",
            "a b",
            "a:b",
            "a-_b",
            &"a".repeat(257),
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_repository("My-Svc").unwrap_err().to_string().contains("'M' is not allowed"));
    }

    #[test]
    fn tags() {
        assert!(check_tag("latest").is_ok() && check_tag("v1.2_3-amd64").is_ok());
        assert!(check_tag("").is_err() && check_tag("-x").is_err() && check_tag("a/b").is_err());
    }
}
