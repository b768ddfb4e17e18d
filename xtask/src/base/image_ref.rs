//! Image references as task definitions write them: the ECR repository one names in the user's
//! account (AWS's own images and a pipeline's templates apart), and the tag or digest it pulls.

/// Accounts whose ECR repositories hold AWS's own images, which tasks pull from there and never
/// from the user's account: App Mesh's Envoy (its documented regional accounts) and AWS for Fluent
/// Bit (FireLens).
const AWS_IMAGE_ACCOUNTS: &[(&str, &str)] = &[
    ("840364872350", "App Mesh's Envoy"),
    ("772975370895", "App Mesh's Envoy"),
    ("919366029133", "App Mesh's Envoy"),
    ("909464085924", "App Mesh's Envoy"),
    ("924023996002", "App Mesh's Envoy"),
    ("856666278305", "App Mesh's Envoy"),
    ("422531588944", "App Mesh's Envoy"),
    ("906394416424", "AWS for Fluent Bit"),
];

/// What AWS image `image` is, when it is pulled from one of AWS's own accounts.
pub fn aws_image(image: &str) -> Option<&'static str> {
    let account = image.split_once('.')?.0;
    AWS_IMAGE_ACCOUNTS.iter().find(|(id, _)| *id == account).map(|(_, what)| *what)
}

/// Whether `image` is a template a pipeline fills in (CodePipeline's `<IMAGE1_NAME>`, `IMAGE`,
/// `${IMAGE_URI}`, `{{ image }}`): image references are lower-case but for their tag.
pub fn is_template(image: &str) -> bool {
    let name = image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(image, |(name, _)| name);
    let name = name.split('@').next().unwrap_or(name);
    image.contains("${") || image.contains("{{") || image.contains('<') || name.bytes().any(|b| b.is_ascii_uppercase())
}

/// A word a template fills in: `${AWS_ACCOUNT_ID}`, `$ACCOUNT`, `<ACCOUNT_ID>`, `{{account}}`, `ACCOUNT_ID`.
fn is_template_word(word: &str) -> bool {
    let wrapped = (word.starts_with("${") || word.starts_with("{{") || word.starts_with('<'))
        && (word.ends_with('}') || word.ends_with('>'));
    let variable =
        word.starts_with('$') && word.len() > 1 && word[1..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let capitals = word.bytes().any(|b| b.is_ascii_uppercase())
        && word.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    wrapped || variable || capitals
}

/// Why publish leaves a container's image alone, when it is no ECR repository of the user's.
pub fn not_ours(image: &str) -> String {
    match aws_image(image) {
        Some(what) => format!("AWS's own image ({what}), pulled from AWS's account"),
        None if is_template(image) => {
            "a template the pipeline fills in, so its repository is not known here: name it with --containers REPOSITORY".to_owned()
        }
        None if ecr_repository(image).is_some() => {
            "another account's ECR repository (publish fills the account the task definition is registered in)".to_owned()
        }
        None => "not an ECR repository".to_owned(),
    }
}

/// The repository an ECR image URI names (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG|@DIGEST]`),
/// in the user's account: none for AWS's own images.
pub fn ecr_repository(image: &str) -> Option<String> {
    let (host, rest) = image.split_once('/')?;
    let parts: Vec<&str> = host.split('.').collect();
    // CI templates leave the account and region to be filled in (`${AWS_ACCOUNT_ID}`, `ACCOUNT_ID`,
    // `<REGION>`): the repository is named all the same, and publish fills it where it publishes.
    let account = parts[0].bytes().all(|b| b.is_ascii_digit()) || is_template_word(parts[0]);
    let is_ecr = parts.len() >= 6 && parts[1] == "dkr" && parts[2].starts_with("ecr") && account;
    if !is_ecr || !host.contains(".amazonaws.com") || aws_image(image).is_some() {
        return None;
    }
    let repository = rest.split('@').next()?;
    let repository = match repository.rsplit_once(':') {
        Some((name, _tag)) => name,
        None => repository,
    };
    crate::base::names::check_repository(repository).ok()?;
    Some(repository.to_owned())
}

/// What an image reference says to pull, after the repository.
#[derive(Clone, Debug, PartialEq)]
pub enum TagRef {
    /// A tag, `latest` when the reference names none.
    Tag(String),
    /// `repo@sha256:...`: that exact image, which a placeholder cannot be.
    Digest(String),
    /// A tag that is not one yet (`${Tag}`, a Terraform interpolation): as the file writes it.
    Unknown(String),
}

/// The tag or digest `image` names (`123.dkr.ecr.eu-west-1.amazonaws.com/api:1.0.0` -> `1.0.0`).
pub fn image_tag(image: &str) -> TagRef {
    let last = image.rsplit('/').next().unwrap_or(image);
    if let Some((_, digest)) = image.rsplit_once('@').filter(|(_, d)| !d.contains('/')) {
        return TagRef::Digest(digest.to_owned());
    }
    match last.split_once(':') {
        None => TagRef::Tag("latest".to_owned()),
        Some((_, tag)) if is_tag(tag) => TagRef::Tag(tag.to_owned()),
        Some((_, tag)) => TagRef::Unknown(tag.to_owned()),
    }
}

/// A tag as registries take it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_uris() {
        assert_eq!(
            ecr_repository("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api:latest").as_deref(),
            Some("team/api")
        );
        assert_eq!(
            ecr_repository("123456789012.dkr.ecr.us-east-1.amazonaws.com/web@sha256:ab").as_deref(),
            Some("web")
        );
        assert_eq!(ecr_repository("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/web").as_deref(), Some("web"));
        for other in [
            "public.ecr.aws/e9f6t9n0/digital-workspace:latest",
            "nginx:latest",
            "${image_uri}",
            "cloudposse/default-backend",
            "ghcr.io/a/b",
            "840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.27.3.0-prod",
            "906394416424.dkr.ecr.eu-west-1.amazonaws.com/aws-for-fluent-bit:stable",
        ] {
            assert_eq!(ecr_repository(other), None, "{other}");
        }
        assert!(
            not_ours("840364872350.dkr.ecr.us-west-2.amazonaws.com/aws-appmesh-envoy:v1.27.3.0-prod")
                .contains("App Mesh's Envoy")
        );
        // A CI template's account and region are filled in where it is deployed; its repository is named.
        for (template, repository) in [
            ("ACCOUNT_ID.dkr.ecr.REGION.amazonaws.com/credit-cashflow-engine:latest", "credit-cashflow-engine"),
            ("${AWS_ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/team/app:${IMAGE_TAG}", "team/app"),
            ("$ACCOUNT.dkr.ecr.eu-west-1.amazonaws.com/web", "web"),
            ("<ACCOUNT_ID>.dkr.ecr.<REGION>.amazonaws.com/api:1.2", "api"),
        ] {
            assert_eq!(ecr_repository(template).as_deref(), Some(repository), "{template}");
        }
        assert_eq!(ecr_repository("${AWS_ACCOUNT_ID}.dkr.ecr.${AWS_REGION}.amazonaws.com/${REPOSITORY}:latest"), None);
        assert_eq!(
            ecr_repository("example.dkr.ecr.eu-west-1.amazonaws.com/web"),
            None,
            "a lower-case word is no template"
        );
        // The user's own copy of an AWS image is theirs.
        assert_eq!(
            ecr_repository("123456789012.dkr.ecr.eu-west-1.amazonaws.com/aws-for-fluent-bit:stable").as_deref(),
            Some("aws-for-fluent-bit")
        );
    }

    #[test]
    fn templates_a_pipeline_fills_in() {
        for template in [
            "<IMAGE1_NAME>",
            "IMAGE",
            "<BACKEND_IMAGE>",
            "${IMAGE_URI}",
            "{{ image }}",
            "REPOSITORY_URI:latest",
            "ACCOUNT.dkr.ecr.REGION.amazonaws.com/${REPO}:v1",
        ] {
            assert!(is_template(template), "{template}");
            assert!(not_ours(template).contains("--containers REPOSITORY"), "{template}");
        }
        for image in [
            "nginx:Latest",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api:RC1",
            "ghcr.io/a/b@sha256:ab",
            "localhost:5000/app",
        ] {
            assert!(!is_template(image), "{image}");
        }
    }

    #[test]
    fn tags_of_image_references() {
        let tag = |image: &str| image_tag(image);
        assert_eq!(tag("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api:1.0.0"), TagRef::Tag("1.0.0".into()));
        assert_eq!(tag("123456789012.dkr.ecr.eu-west-1.amazonaws.com/api"), TagRef::Tag("latest".into()));
        assert_eq!(tag("localhost:5000/api"), TagRef::Tag("latest".into()));
        assert_eq!(tag("123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:back-end"), TagRef::Tag("back-end".into()));
        assert_eq!(tag("1.dkr.ecr.eu-west-1.amazonaws.com/api@sha256:abc"), TagRef::Digest("sha256:abc".into()));
        assert_eq!(tag("1.dkr.ecr.eu-west-1.amazonaws.com/api:${Tag}"), TagRef::Unknown("${Tag}".into()));
        assert!(
            is_tag("v1.2.3_rc-1") && is_tag("dce3f1a") && !is_tag("-x") && !is_tag("") && !is_tag(&"a".repeat(129))
        );
    }
}
