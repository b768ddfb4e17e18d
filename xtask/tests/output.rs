//! What users read: every line about a container names it uniquely (CDK names every service's
//! container `web`), progress is drawn on a terminal and nowhere else, and a re-run that changed
//! nothing says so in a line instead of repeating the advice.

mod common;

use common::*;

/// Three services as CDK's `ApplicationLoadBalancedFargateService` makes them: every container
/// is called `web`.
const THREE_WEBS: &str = r#"
Resources:
  ApiTask:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: web
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/webs-api:latest"
          PortMappings: [{ ContainerPort: 8080 }]
  AdminTask:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: web
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/webs-admin:latest"
          PortMappings: [{ ContainerPort: 3000 }]
  JobsTask:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: web
          Image: !Sub "${AWS::AccountId}.dkr.ecr.${AWS::Region}.amazonaws.com/webs-jobs:latest"
          PortMappings: [{ ContainerPort: 8000 }]
"#;

fn template() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("webs.yaml");
    std::fs::write(&path, THREE_WEBS).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn three_containers_of_one_name_are_told_apart_in_text_and_json() {
    let bed = bed();
    let (_dir, file) = template();
    let names = ["ApiTask/web", "AdminTask/web", "JobsTask/web"];

    let (code, stdout, stderr) = xtask(&["publish", "--from", &file, "--dry-run"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in names {
        assert_eq!(stdout.lines().filter(|l| l.starts_with(&format!("{name} "))).count(), 1, "{name}: {stdout}");
    }
    let (code, stdout, _) = xtask(&["publish", "--from", &file, "--dry-run", "--output", "json"], &bed.env());
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut found: Vec<&str> =
        report["from"].as_array().unwrap().iter().map(|f| f["container"].as_str().unwrap()).collect();
    found.sort();
    assert_eq!(found, ["AdminTask/web", "ApiTask/web", "JobsTask/web"]);

    let (code, stdout, stderr) = xtask(&["verify", "--from", &file], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for name in names {
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with(&format!("{name}: healthy"))).count(),
            1,
            "{name}: {stdout}"
        );
    }
    let (code, stdout, _) = xtask(&["verify", "--from", &file, "--output", "json"], &bed.env());
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut verified: Vec<&str> =
        report["containers"].as_array().unwrap().iter().map(|v| v["container"].as_str().unwrap()).collect();
    verified.sort();
    assert_eq!(verified, ["AdminTask/web", "ApiTask/web", "JobsTask/web"]);
    let admin = report["containers"].as_array().unwrap().iter().find(|v| v["container"] == "AdminTask/web").unwrap();
    assert_eq!(admin["task"], "AdminTask");
}

#[test]
fn progress_is_drawn_on_a_terminal_only_and_a_rerun_that_changed_nothing_is_short() {
    let bed = bed();
    // In a log (stderr not a terminal): plain lines, no bar, no cursor movement.
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "drawn-a,drawn-b"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains('\r') && !stderr.contains('\u{1b}') && !stderr.contains("publishing ["), "{stderr:?}");
    assert!(
        stdout.contains("Keep the task definition written for the real image"),
        "the first run gives the advice: {stdout}"
    );

    // On a terminal (`script` gives the run a pseudo-terminal), the bar counts the repositories.
    let mut command = std::process::Command::new("script");
    let line = format!("{XTASK} status --containers drawn-a,drawn-b");
    command.args(["-qefc", &line, "/dev/null"]).envs(bed.env());
    let output = command.output().expect("script (bsdutils)");
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{seen}");
    assert!(seen.contains("reading [") && seen.contains("/2"), "no progress drawn on a terminal: {seen:?}");

    // Nothing changed: one line per repository and one that says so, not the advice again.
    let (code, stdout, stderr) = xtask(&["publish", "--containers", "drawn-a,drawn-b"], &bed.env());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("Nothing changed: 2 repositories already up to date."), "{stdout}");
    assert!(
        !stdout.contains("Keep the task definition") && stdout.lines().filter(|l| !l.is_empty()).count() == 4,
        "a header, a line per repository, the summary: {stdout}"
    );
}
