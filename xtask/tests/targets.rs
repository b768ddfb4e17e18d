//! Publish, status and teardown across accounts and regions in one run: moto serves every region,
//! and other accounts through STS AssumeRole from profiles in a test `~/.aws/config`; each
//! (account, region) target has a registry of its own on the test bed.

use std::process::{Command, Output};

use testbed::{Accounts, Fault, FaultyEcr, Moto};

const DEV: &str = "111111111111";
const PROD: &str = "222222222222";
const STAGING: &str = "333333333333";
const REGIONS: [&str; 2] = ["eu-west-1", "us-east-1"];

/// moto, a registry per target, and an AWS config whose profiles assume roles in other accounts.
struct World {
    accounts: Accounts,
    throttler: FaultyEcr,
}

impl World {
    fn start() -> World {
        let moto = Moto::start().expect("moto (`bash .ci/install`)");
        // The staging account's ECR API throttles its first calls.
        let throttle = |operation| Fault {
            operation,
            repository: None,
            status: 400,
            error_type: "ThrottlingException",
            message: "Rate exceeded",
            times: Some(2),
        };
        let throttler =
            FaultyEcr::start(moto.port, vec![throttle("DescribeRepositories"), throttle("CreateRepository")]).unwrap();
        let profiles = [("dev", DEV, None), ("prod", PROD, None), ("staging", STAGING, Some(throttler.endpoint()))];
        let targets =
            [(DEV, REGIONS[0]), (DEV, REGIONS[1]), (PROD, REGIONS[0]), (PROD, REGIONS[1]), (STAGING, REGIONS[0])];
        let accounts = Accounts::start(moto, &profiles, &targets).expect("the test bed (`bash .ci/install`)");
        World { accounts, throttler }
    }

    /// `xtask args` with only this world's AWS configuration: no credentials in the environment.
    fn xtask(&self, args: &[&str]) -> (i32, String, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
        self.accounts.configure(&mut command);
        let Output { status, stdout, stderr } = command.args(args).output().expect("run xtask");
        (
            status.code().unwrap(),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }

    /// Repository names in one account and region, read from moto as that account.
    async fn repositories(&self, account: &str, region: &str) -> Vec<String> {
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .endpoint_url(self.accounts.moto.endpoint())
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await;
        let assumed = aws_sdk_sts_credentials(&base, account).await;
        let config = aws_sdk_ecr::config::Builder::from(&base).credentials_provider(assumed).build();
        let listed =
            aws_sdk_ecr::Client::from_conf(config).describe_repositories().send().await.expect("describe_repositories");
        let mut names: Vec<String> =
            listed.repositories().iter().filter_map(|r| r.repository_name().map(str::to_owned)).collect();
        names.sort();
        names
    }
}

/// Credentials for `account`, by assuming its role through moto's STS.
async fn aws_sdk_sts_credentials(base: &aws_config::SdkConfig, account: &str) -> aws_sdk_ecr::config::Credentials {
    let provider = aws_config::sts::AssumeRoleProvider::builder(format!("arn:aws:iam::{account}:role/deploy"))
        .session_name("tests")
        .configure(base)
        .build()
        .await;
    aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider)
        .await
        .expect("assume role in moto")
}

/// The table row of `container` in `account` and `region`.
fn row_in<'a>(stdout: &'a str, container: &str, account: &str, region: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() > 3 && words[0] == container && words[1] == account && words[2] == region
        })
        .unwrap_or_else(|| panic!("no row for {container} in {account} {region}:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_accounts_times_two_regions_with_a_bad_and_a_throttled_target() {
    let world = World::start();
    let names = "orders,billing";

    // --dry-run: the whole plan, from read-only calls.
    let (code, stdout, stderr) = world.xtask(&[
        "publish",
        "--containers",
        names,
        "--profile",
        "dev,prod",
        "--region",
        "eu-west-1,us-east-1",
        "--dry-run",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for account in [DEV, PROD] {
        for region in REGIONS {
            for name in ["orders", "billing"] {
                assert!(row_in(&stdout, name, account, region).contains("would create"), "{stdout}");
            }
            assert!(world.repositories(account, region).await.is_empty(), "a dry run created something");
        }
    }

    // Two accounts times two regions, plus a profile with no credentials: its row says why and how
    // to fix it, every other target finishes.
    let (code, stdout, stderr) = world.xtask(&[
        "publish",
        "--containers",
        names,
        "--profile",
        "dev,prod,nocreds",
        "--region",
        "eu-west-1,us-east-1",
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for account in [DEV, PROD] {
        for region in REGIONS {
            for name in ["orders", "billing"] {
                assert!(row_in(&stdout, name, account, region).contains("created"), "{stdout}");
            }
            assert_eq!(world.repositories(account, region).await, ["billing", "orders"]);
        }
    }
    let bad: Vec<&str> = stdout.lines().filter(|l| l.starts_with("*: ")).collect();
    assert_eq!(bad.len(), 2, "one line per failed target:\n{stdout}");
    for line in bad {
        assert!(
            line.contains("profile nocreds")
                && line.contains("no AWS credentials")
                && line.contains("aws sso login --profile nocreds"),
            "{line}"
        );
        assert!(line.len() < 400 && !line.contains("CredentialsNotLoaded"), "not one clear line: {line}");
    }
    // One build and one smoke test for all of them; blobs uploaded once per registry.
    assert_eq!(stderr.matches("healthy after").count(), 2, "one proof per platform:\n{stderr}");

    // A re-run converges: everything is up to date, the bad target still named.
    let (code, stdout, stderr) =
        world.xtask(&["publish", "--containers", names, "--profile", "dev,prod", "--region", "eu-west-1,us-east-1"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("up to date  ")).count(), 8, "{stdout}");
    assert!(!stderr.contains("healthy after"), "an up-to-date run smoke-tested: {stderr}");

    // A targets file for pairs that are not a cross product, with a throttled target: the SDK's
    // adaptive retry backs off and the run succeeds.
    let file = world.accounts.dir().join("targets.toml");
    std::fs::write(&file, "[[target]]\nprofile = \"staging\"\nregion = \"eu-west-1\"\n\n[[target]]\nprofile = \"dev\"\nregion = \"us-east-1\"\n").unwrap();
    let (code, stdout, stderr) =
        world.xtask(&["publish", "--containers", "orders", "--targets", file.to_str().unwrap(), "--output", "json"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let document: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows: Vec<(String, String, String)> = document["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["account"].as_str().unwrap().to_owned(),
                c["region"].as_str().unwrap().to_owned(),
                c["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(rows.contains(&(STAGING.into(), "eu-west-1".into(), "created".into())), "{rows:?}");
    assert!(
        world.throttler.injected.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the staging target was never throttled"
    );
    assert!(rows.contains(&(DEV.into(), "us-east-1".into(), "up-to-date".into())), "{rows:?}");
    assert_eq!(document["targets"].as_array().unwrap().len(), 2);

    // status across targets: one table with account and region columns.
    let (code, stdout, stderr) =
        world.xtask(&["status", "--containers", names, "--profile", "dev,prod", "--region", "eu-west-1,us-east-1"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(row_in(&stdout, "orders", PROD, "us-east-1").contains("placeholder"), "{stdout}");
    assert!(stdout.contains("8 of 8 repositories still serve the placeholder"), "{stdout}");

    // teardown across targets.
    let (code, stdout, stderr) = world.xtask(&[
        "teardown",
        "--containers",
        names,
        "--profile",
        "dev,prod",
        "--region",
        "eu-west-1,us-east-1",
        "--yes",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("] deleted: ").count(), 8, "{stdout}");
    for account in [DEV, PROD] {
        for region in REGIONS {
            assert!(world.repositories(account, region).await.is_empty());
        }
    }
}

#[test]
fn bad_target_lists_are_one_line_and_exit_2() {
    let world = World::start();
    for (args, expected) in [
        (vec!["status", "--region", " , "], "--region \" , \" names nothing"),
        (vec!["status", "--region", "EU_WEST"], "region \"EU_WEST\" is not a region name"),
        (vec!["status", "--targets", "/nonexistent/targets.toml"], "cannot read the targets file"),
    ] {
        let (code, stdout, stderr) = world.xtask(&args);
        assert_eq!(code, 2, "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(expected) && stderr.trim().lines().count() == 1, "{args:?}: {stderr}");
    }
    let file = world.accounts.dir().join("broken.toml");
    std::fs::write(&file, "[[target]]\nprofil = \"dev\"\n").unwrap();
    let (code, _, stderr) = world.xtask(&["status", "--targets", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not a list of targets") && stderr.contains("[[target]]"), "{stderr}");
    // With one target and no credentials: one line, exit 2, the sources tried named.
    let (code, _, stderr) = world.xtask(&["status", "--profile", "nocreds"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no AWS credentials; tried profile \"nocreds\"") && stderr.trim().lines().count() == 1,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicate_pushes_to_the_source_and_writes_ecr_fan_out() {
    let world = World::start();
    let args = ["publish", "--containers", "fanout", "--profile", "dev,prod", "--region", "eu-west-1", "--replicate"];
    let (code, stdout, stderr) = world.xtask(&args);
    // moto implements replication rules and registry policies, not creation templates: those
    // lines name the call that failed, and the run says so with exit 1.
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(row_in(&stdout, "fanout", DEV, "eu-west-1").contains("created"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("fanout ") && l.contains(PROD)), "pushed to a destination: {stdout}");
    assert!(world.repositories(PROD, "eu-west-1").await.is_empty());
    assert!(
        stderr
            .contains(&format!("[{DEV} eu-west-1] replication: replication rule: changed: fanout to {PROD}/eu-west-1")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "[{PROD} eu-west-1] replication: registry policy: changed: account {DEV} may replicate"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("creation template fanout: failed: ECR CreateRepositoryCreationTemplate failed")
            || stderr.contains("creation template fanout: failed: ECR DescribeRepositoryCreationTemplates failed"),
        "{stderr}"
    );

    // What moto kept: the rule in the source registry, the statement in the destination's policy.
    let (code, stdout, stderr) = world.xtask(&[
        "publish",
        "--containers",
        "fanout",
        "--profile",
        "dev,prod",
        "--region",
        "eu-west-1",
        "--replicate",
        "--dry-run",
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("replication rule: up-to-date") && stderr.contains("registry policy: up-to-date"),
        "a re-run must change nothing: {stderr}"
    );

    let (code, _, stderr) = world.xtask(&["publish", "--containers", "fanout", "--profile", "dev", "--replicate"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--replicate needs at least two targets"), "{stderr}");
}
