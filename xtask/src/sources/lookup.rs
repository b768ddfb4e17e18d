//! The lookup `--containers NAME` makes: the registered task definitions that pull NAME's
//! repository, read at a cost that does not grow with the account. ECS lists task definitions by
//! name only (`ListTaskDefinitions` sorts by family name and revision, `sort=DESC` reverses that;
//! nothing lists them by when they were registered), so the lookup reads where such a definition
//! is: the families named like the repository (`ListTaskDefinitionFamilies` with `familyPrefix`),
//! then the definitions of the services that are being deployed now (a service waiting for its
//! image is one), whatever their families are called. Every read is bounded; a throttled or
//! refused call leaves its part unread and is named, never failing the publish.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{Service as EcsService, TaskDefinition, TaskDefinitionFamilyStatus};
use futures_util::StreamExt;

use crate::base::service::SERVICES_PER_CALL;
use crate::clients::aws::{error_code, service_call_failed};
use crate::sources::cluster;
use crate::sources::registered::found_in;
use crate::sources::stack::Found;

/// Families listed for one prefix (two pages); a prefix with more is narrowed to whole names.
const FAMILIES_PER_PREFIX: usize = 200;
/// Clusters whose services are listed, and services described (10 a call).
const MAX_CLUSTERS: usize = 10;
const MAX_SERVICES: usize = 100;
/// Task definitions described in all: the calls that cost one each.
const MAX_DEFINITIONS: usize = 20;
const AT_ONCE: usize = 5;
/// However ECS answers, the lookup ends by then with what it has read.
const DEADLINE: Duration = Duration::from_secs(10);

/// What `--containers NAME` found registered: the definitions that pull each repository.
pub struct Lookup {
    pub found: Vec<Found>,
    pub read: Read,
    pub took: Duration,
    /// The calls that failed (refused, throttled past the retries, unreachable), each kind once:
    /// what they would have read was not.
    pub problems: Vec<String>,
}

/// How much of the account the lookup read, for its one line.
#[derive(Default)]
pub struct Read {
    /// Families named like a repository, listed by prefix.
    pub families: usize,
    /// A prefix matched more families than are listed.
    pub families_cut: bool,
    pub clusters: usize,
    pub clusters_listed: usize,
    pub services: usize,
    pub services_listed: usize,
    pub definitions: usize,
    /// Definitions that were candidates but over the bound.
    pub definitions_left: usize,
    /// The deadline passed before the lookup was done.
    pub out_of_time: bool,
}

impl fmt::Display for Read {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "read: {} named like it{}, {} of {} in {}, {}",
            plural(self.families, "family", "families"),
            if self.families_cut { " (the first of many)" } else { "" },
            self.services,
            plural(self.services_listed, "service", "services"),
            if self.clusters == self.clusters_listed {
                plural(self.clusters, "cluster", "clusters")
            } else {
                format!("{} of {} clusters", self.clusters, self.clusters_listed)
            },
            plural(self.definitions, "task definition", "task definitions"),
        )?;
        write!(f, "; not read: families named otherwise that no service being deployed runs")?;
        if self.definitions_left > 0 {
            write!(f, ", {} more definition(s) over the bound of {MAX_DEFINITIONS}", self.definitions_left)?;
        }
        if self.out_of_time {
            write!(f, ", what was not answered within {} s", DEADLINE.as_secs())?;
        }
        Ok(())
    }
}

/// The latest ACTIVE revision of each family named like one of `repositories` and the definitions
/// of the services being deployed, where their containers pull one of `repositories`. Each step
/// runs only while a repository is still unanswered.
pub async fn pulling(repositories: &[String], config: &aws_config::SdkConfig) -> Lookup {
    let started = Instant::now();
    let mut look = Looking::new(repositories, config);
    let finished = tokio::time::timeout(DEADLINE, look.run()).await.is_ok();
    look.read.out_of_time = !finished;
    Lookup { found: look.found, read: look.read, took: started.elapsed(), problems: look.problems }
}

struct Looking<'a> {
    repositories: &'a [String],
    ecs: aws_sdk_ecs::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    found: Vec<Found>,
    read: Read,
    problems: Vec<String>,
    /// Definitions read, as `family:revision` and as asked.
    seen: BTreeSet<String>,
}

impl<'a> Looking<'a> {
    fn new(repositories: &'a [String], config: &aws_config::SdkConfig) -> Self {
        // A help, not a step: a throttled call is tried again after a jittered backoff, at most
        // twice, so the lookup draws little on the account's token bucket and never stalls
        // (adaptive retries were tried: after one throttle their client-side limiter let a call
        // through every two seconds, past the deadline); an endpoint that does not answer is not
        // waited on through the run's patient retries (publish reports it when it connects to ECR).
        let ecs = aws_sdk_ecs::Client::from_conf(
            aws_sdk_ecs::config::Builder::from(config)
                .retry_config(
                    aws_config::retry::RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(200)),
                )
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(Duration::from_secs(5))
                        .build(),
                )
                .build(),
        );
        Looking {
            repositories,
            ecs,
            elbv2: aws_sdk_elasticloadbalancingv2::Client::new(config),
            found: Vec::new(),
            read: Read::default(),
            problems: Vec::new(),
            seen: BTreeSet::new(),
        }
    }

    async fn run(&mut self) {
        // Both listings at once: the clusters cost one call, and save a round trip when the
        // families named like the repositories do not answer.
        let (families, clusters) =
            tokio::join!(families_named_like(&self.ecs, self.repositories), clusters(&self.ecs, self.repositories));
        let (families, cut, problems) = families;
        (self.read.families, self.read.families_cut) = (families.len(), cut);
        for problem in problems {
            self.problem(problem);
        }
        self.describe(families.into_iter().map(Candidate::family).collect()).await;
        if self.missing().is_empty() {
            return;
        }
        let candidates = self.services_deploying(clusters).await;
        self.describe(candidates).await;
    }

    fn missing(&self) -> Vec<&String> {
        self.repositories.iter().filter(|r| !self.found.iter().any(|f| f.repository() == Some(r.as_str()))).collect()
    }

    /// Keeps one problem per call that failed.
    fn problem(&mut self, problem: String) {
        let call = problem.split(':').next().unwrap_or_default().to_owned();
        if !self.problems.iter().any(|p| p.starts_with(&call)) {
            self.problems.push(problem);
        }
    }

    /// The task definitions of the services that are being deployed (a deployment in progress or
    /// failed, or fewer tasks running than desired: a service waiting for its image is one) and
    /// of those named like a repository, the former first.
    async fn services_deploying(&mut self, clusters: Result<(Vec<String>, usize), String>) -> Vec<Candidate> {
        let clusters = match clusters {
            Ok((clusters, total)) => {
                (self.read.clusters, self.read.clusters_listed) = (clusters.len(), total);
                clusters
            }
            Err(problem) => {
                self.problem(problem);
                return Vec::new();
            }
        };
        let ecs = self.ecs.clone();
        let ecs = &ecs;
        let listed: Vec<_> = futures_util::stream::iter(clusters)
            .map(|cluster| async move {
                let listed = ecs.list_services().cluster(&cluster).max_results(100).send().await;
                (cluster, listed)
            })
            .buffered(AT_ONCE)
            .collect()
            .await;
        let mut services: Vec<(String, String)> = Vec::new();
        for (cluster, listed) in listed {
            match listed {
                Ok(page) => services.extend(page.service_arns().iter().map(|arn| (cluster.clone(), arn.clone()))),
                Err(e) if error_code(&e) == Some("ClusterNotFoundException") => {}
                Err(e) => self.problem(format!("{:#}", service_call_failed("ECS", "ListServices", e))),
            }
        }
        self.read.services_listed = services.len();
        services.sort_by_key(|(_, arn)| !self.repositories.iter().any(|r| named_like(last_segment(arn), r)));
        services.truncate(MAX_SERVICES);
        self.read.services = services.len();

        let mut batches: Vec<(String, Vec<String>)> = Vec::new();
        for (cluster, arn) in services {
            match batches.last_mut() {
                Some((last, batch)) if *last == cluster && batch.len() < SERVICES_PER_CALL => batch.push(arn),
                _ => batches.push((cluster, vec![arn])),
            }
        }
        let described: Vec<_> = futures_util::stream::iter(batches)
            .map(|(cluster, batch)| async move {
                ecs.describe_services().cluster(cluster).set_services(Some(batch)).send().await
            })
            .buffered(AT_ONCE)
            .collect()
            .await;
        let mut candidates: Vec<(bool, Candidate)> = Vec::new();
        for answer in described {
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    self.problem(format!("{:#}", service_call_failed("ECS", "DescribeServices", e)));
                    continue;
                }
            };
            for service in answer.services() {
                let deploying = deploying(service);
                let name = service.service_name().unwrap_or_default();
                let definitions = service
                    .deployments()
                    .iter()
                    .filter_map(|d| d.task_definition())
                    .chain(service.task_definition())
                    .map(str::to_owned);
                for definition in definitions {
                    let family = family_of(&definition);
                    let named = self.repositories.iter().any(|r| named_like(name, r) || named_like(&family, r));
                    if (deploying || named) && !candidates.iter().any(|(_, c)| c.definition == definition) {
                        let cluster = last_segment(service.cluster_arn().unwrap_or_default()).to_owned();
                        candidates.push((
                            !deploying,
                            Candidate {
                                definition,
                                how: format!("run by service {name} in cluster {cluster}"),
                                balancers: service.load_balancers().to_vec(),
                            },
                        ));
                    }
                }
            }
        }
        candidates.sort_by_key(|(steady, _)| *steady);
        candidates.into_iter().map(|(_, candidate)| candidate).collect()
    }

    /// Describes each definition not read yet, up to the bound, and keeps the containers of
    /// those that pull a repository still looked for, with what a service's target groups check.
    async fn describe(&mut self, candidates: Vec<Candidate>) {
        let fresh: Vec<_> =
            candidates.into_iter().filter(|c| !self.seen.contains(&short_name(&c.definition))).collect();
        let budget = MAX_DEFINITIONS.saturating_sub(self.read.definitions);
        self.read.definitions_left += fresh.len().saturating_sub(budget);
        let ecs = self.ecs.clone();
        let ecs = &ecs;
        let described: Vec<_> = futures_util::stream::iter(fresh.into_iter().take(budget))
            .map(|candidate| async move {
                let answer = ecs.describe_task_definition().task_definition(&candidate.definition).send().await;
                (candidate, answer)
            })
            .buffered(AT_ONCE)
            .collect()
            .await;
        let missing: Vec<String> = self.missing().into_iter().cloned().collect();
        for (candidate, answer) in described {
            self.read.definitions += 1;
            self.seen.insert(short_name(&candidate.definition));
            let task: TaskDefinition = match answer {
                Ok(output) => match output.task_definition {
                    Some(task) => task,
                    None => continue,
                },
                Err(e) => {
                    self.problem(format!("{:#}", service_call_failed("ECS", "DescribeTaskDefinition", e)));
                    continue;
                }
            };
            self.seen.insert(format!("{}:{}", task.family().unwrap_or_default(), task.revision()));
            let pulls = |f: &Found| f.repository().is_some_and(|r| missing.iter().any(|name| name == r));
            let mut found: Vec<Found> = found_in(&task, &candidate.how).into_iter().filter(pulls).collect();
            if found.is_empty() {
                continue;
            }
            if !candidate.balancers.is_empty() {
                match cluster::target_group_checks(&self.elbv2, &candidate.balancers).await {
                    Ok(checks) => {
                        for f in &mut found {
                            if let Some((check, https)) = checks.get(&f.container.name) {
                                f.container.load_balancer = Some(check.clone());
                                f.https = *https;
                            }
                        }
                    }
                    Err(e) => self.problem(format!("{e:#}")),
                }
            }
            // Only the containers that pull it; the task's others are known as its sidecars.
            self.found.extend(found);
        }
    }
}

/// A task definition to read, how it was come to, and the load balancers of the service that runs it.
struct Candidate {
    definition: String,
    how: String,
    balancers: Vec<aws_sdk_ecs::types::LoadBalancer>,
}

impl Candidate {
    fn family(family: String) -> Candidate {
        Candidate { definition: family, how: "pulls the repository".to_owned(), balancers: Vec::new() }
    }
}

/// The families named like a repository, closest first: listed by each repository's leading
/// words as written and in PascalCase (`my-svc`, `MySvc` for `my-svc-staging`), narrowed to the
/// whole name where the leading words match too many. Also whether a listing was cut short, and
/// the calls that failed.
async fn families_named_like(ecs: &aws_sdk_ecs::Client, repositories: &[String]) -> (Vec<String>, bool, Vec<String>) {
    let mut asked: Vec<String> = Vec::new();
    for prefix in repositories.iter().flat_map(|r| leading_prefixes(r)) {
        if !asked.contains(&prefix) {
            asked.push(prefix);
        }
    }
    let (mut families, mut cut, mut problems) = (Vec::new(), false, Vec::new());
    for round in 0..2 {
        let listed: Vec<_> = futures_util::stream::iter(std::mem::take(&mut asked))
            .map(|prefix| async move {
                let listed = families_with(ecs, &prefix).await;
                (prefix, listed)
            })
            .buffered(AT_ONCE)
            .collect()
            .await;
        for (prefix, listed) in listed {
            match listed {
                Ok((names, more)) => {
                    if more && round == 0 {
                        for whole in repositories.iter().flat_map(|r| whole_prefixes(r)) {
                            if whole.starts_with(&prefix) && whole != prefix && !asked.contains(&whole) {
                                asked.push(whole);
                            }
                        }
                    }
                    cut |= more;
                    families.extend(names);
                }
                Err(problem) => problems.push(problem),
            }
        }
    }
    families.sort();
    families.dedup();
    families.retain(|family| repositories.iter().any(|r| named_like(family, r)));
    families.sort_by_key(|family| {
        let rank = repositories.iter().map(|r| closeness(family, r)).min().unwrap_or(usize::MAX);
        (rank, family.len(), family.clone())
    });
    (families, cut, problems)
}

/// Up to `FAMILIES_PER_PREFIX` ACTIVE families starting with `prefix`, and whether there are more.
async fn families_with(ecs: &aws_sdk_ecs::Client, prefix: &str) -> Result<(Vec<String>, bool), String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = ecs
            .list_task_definition_families()
            .family_prefix(prefix)
            .status(TaskDefinitionFamilyStatus::Active)
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("{:#}", service_call_failed("ECS", "ListTaskDefinitionFamilies", e)))?;
        names.extend(page.families().iter().cloned());
        token = page.next_token().map(str::to_owned);
        if names.len() >= FAMILIES_PER_PREFIX {
            let more = names.len() > FAMILIES_PER_PREFIX || token.is_some();
            names.truncate(FAMILIES_PER_PREFIX);
            return Ok((names, more));
        }
        if token.is_none() {
            return Ok((names, false));
        }
    }
}

/// The first page of clusters (ARNs), those named like a repository first, at most
/// `MAX_CLUSTERS`, and how many the page listed.
async fn clusters(ecs: &aws_sdk_ecs::Client, repositories: &[String]) -> Result<(Vec<String>, usize), String> {
    let listed = ecs
        .list_clusters()
        .max_results(100)
        .send()
        .await
        .map_err(|e| format!("{:#}", service_call_failed("ECS", "ListClusters", e)))?;
    let mut clusters = listed.cluster_arns().to_vec();
    let total = clusters.len();
    clusters.sort_by_key(|arn| !repositories.iter().any(|r| named_like(last_segment(arn), r)));
    clusters.truncate(MAX_CLUSTERS);
    Ok((clusters, total))
}

/// Whether a service is being deployed: a deployment in progress or failed, more than one
/// deployment, or fewer tasks running than desired (a service waiting for its image).
fn deploying(service: &EcsService) -> bool {
    use aws_sdk_ecs::types::DeploymentRolloutState;
    let deployments = service.deployments();
    deployments.len() > 1
        || service.running_count() < service.desired_count()
        || deployments.iter().any(|d| {
            matches!(d.rollout_state(), Some(DeploymentRolloutState::InProgress | DeploymentRolloutState::Failed))
        })
}

/// `family:revision` of a definition named by ARN, or the name as given.
fn short_name(definition: &str) -> String {
    definition.rsplit_once(":task-definition/").map_or(definition, |(_, name)| name).to_owned()
}

fn family_of(definition: &str) -> String {
    let name = short_name(definition);
    name.rsplit_once(':').map_or(name.clone(), |(family, _)| family.to_owned())
}

/// What follows the last `/` of an ARN or name.
fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The words of a repository's last segment (`my`, `svc`, `staging` for `team/my-svc.staging`).
fn words(repository: &str) -> Vec<&str> {
    last_segment(repository).split(['-', '_', '.']).filter(|w| !w.is_empty()).collect()
}

fn pascal(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// The prefixes families named like `repository` start with: its leading words up to three
/// letters or digits (`my-svc` of `my-svc-staging`, `payments` of `payments`), as written and
/// in PascalCase (CDK and CloudFormation name families after the stack).
fn leading_prefixes(repository: &str) -> Vec<String> {
    let words = words(repository);
    let mut count = 0;
    let mut taken = 0;
    while taken < words.len() && count < 3 {
        count += words[taken].len();
        taken += 1;
    }
    prefixes_of(&words[..taken])
}

/// The same for every word of the name, to narrow a leading word that matches too many.
fn whole_prefixes(repository: &str) -> Vec<String> {
    prefixes_of(&words(repository))
}

fn prefixes_of(words: &[&str]) -> Vec<String> {
    if words.is_empty() {
        return Vec::new();
    }
    // Family names allow letters, digits, hyphens and underscores: a dot is written as a hyphen.
    let written = words.join("-");
    let mut prefixes = vec![written];
    let camel = pascal(words);
    if !prefixes.contains(&camel) {
        prefixes.push(camel);
    }
    prefixes
}

fn plain(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether a family is named like a repository: one contains the other's last path segment,
/// ignoring case and separators (`team/api` and `api-service`, `my_svc` and `MySvcTask`).
pub fn named_like(family: &str, repository: &str) -> bool {
    let (family, repository) = (plain(family), plain(last_segment(repository)));
    !repository.is_empty() && (family.contains(&repository) || repository.contains(&family) && family.len() >= 3)
}

/// 0 for the repository's own name, 1 for a name that starts with it, 2 for any other like it.
fn closeness(family: &str, repository: &str) -> usize {
    let (family, repository) = (plain(family), plain(last_segment(repository)));
    if family == repository {
        0
    } else if family.starts_with(&repository) {
        1
    } else if named_like(&family, &repository) {
        2
    } else {
        usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_named_like_repositories() {
        assert!(named_like("api", "api"));
        assert!(named_like("api-task", "team/api"));
        assert!(named_like("MySvcTaskDef", "my-svc"));
        assert!(named_like("shop", "shop-api"));
        assert!(!named_like("web", "api"));
        assert!(!named_like("a", "shop-api"), "too short to count");
    }

    #[test]
    fn prefixes_are_the_leading_words_as_written_and_in_pascal_case() {
        assert_eq!(leading_prefixes("my-svc-staging"), ["my-svc", "MySvc"]);
        assert_eq!(leading_prefixes("team/payments"), ["payments", "Payments"]);
        assert_eq!(leading_prefixes("a.b_c-api"), ["a-b-c", "ABC"]);
        assert_eq!(whole_prefixes("my-svc-staging"), ["my-svc-staging", "MySvcStaging"]);
        assert_eq!(leading_prefixes("42"), ["42"]);
    }

    #[test]
    fn the_closest_family_comes_first() {
        assert_eq!(closeness("payments", "payments"), 0);
        assert_eq!(closeness("PaymentsTaskDef", "payments"), 1);
        assert_eq!(closeness("shop", "shop-api"), 2);
        assert_eq!(closeness("web", "api"), usize::MAX);
    }

    #[test]
    fn names_of_definitions() {
        let arn = "arn:aws:ecs:eu-west-1:123456789012:task-definition/nightly:3";
        assert_eq!(short_name(arn), "nightly:3");
        assert_eq!(family_of(arn), "nightly");
        assert_eq!(family_of("api"), "api");
    }
}
