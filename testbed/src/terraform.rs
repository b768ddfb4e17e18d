//! The real Terraform: `terraform` on PATH with the AWS provider from the filesystem mirror this
//! machine image carries (it cannot be downloaded here), in a directory of its own, the provider
//! pointed at moto. Neither is a Debian package, so `.ci/install` cannot add them: a machine
//! without them fails loudly, saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Where images of this machine's kind put the provider mirror (the folder holding
/// `registry.terraform.io`); `TF_PROVIDER_MIRROR` names another.
const MIRRORS: &[&str] = &["/opt/tf-plugins", "/usr/share/terraform/plugins", "/usr/local/share/terraform/plugins"];

/// A Terraform working directory whose AWS provider talks to moto.
pub struct Terraform {
    dir: tempfile::TempDir,
    cli_config: PathBuf,
}

impl Terraform {
    /// A directory with the CLI config (the mirror, nothing direct) and a `provider.tf` whose
    /// endpoints are `endpoint` (moto, or a proxy in front of it).
    pub fn new(endpoint: &str) -> Result<Terraform> {
        let version = Command::new("terraform").arg("version").output().context(
            "terraform is not on PATH: this machine image carries Terraform 1.11 and the AWS provider in a filesystem mirror; \
             on another machine install both (see docs/testing.md)",
        )?;
        if !version.status.success() {
            bail!("`terraform version` failed: {}", String::from_utf8_lossy(&version.stderr));
        }
        let mirror = mirror()?;
        let dir = tempfile::tempdir()?;
        let cli_config = dir.path().join("cli.tfrc");
        std::fs::write(
            &cli_config,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/*/*\"]\n  }}\n  direct {{\n    exclude = [\"registry.terraform.io/*/*\"]\n  }}\n}}\n",
                mirror.display()
            ),
        )?;
        // moto answers every service on one endpoint; skip what only real AWS can answer.
        let endpoints: String = ["ecr", "ecs", "ec2", "elbv2", "iam", "sts", "cloudformation"]
            .iter()
            .map(|s| format!("    {s} = \"{endpoint}\"\n"))
            .collect();
        std::fs::write(
            dir.path().join("provider.tf"),
            format!(
                "terraform {{\n  required_providers {{\n    aws = {{ source = \"hashicorp/aws\", version = \"~> 5.0\" }}\n  }}\n}}\n\n\
                 provider \"aws\" {{\n  region                      = \"eu-west-1\"\n  access_key                  = \"testing\"\n  \
                 secret_key                  = \"testing\"\n  skip_credentials_validation = true\n  skip_requesting_account_id  = true\n  \
                 skip_metadata_api_check     = true\n  endpoints {{\n{endpoints}  }}\n}}\n"
            ),
        )?;
        Ok(Terraform { dir, cli_config })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` in the working directory.
    pub fn file(&self, name: &str, text: &str) -> Result<()> {
        Ok(std::fs::write(self.dir.path().join(name), text)?)
    }

    /// The environment for any command run here (terraform itself, or a script that runs it).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TF_CLI_CONFIG_FILE", self.cli_config.display().to_string()),
            ("TF_IN_AUTOMATION", "1".to_owned()),
            ("CHECKPOINT_DISABLE", "1".to_owned()),
        ]
    }

    /// `terraform ARGS` here, with `env` added; fails with its output when it fails.
    pub fn run(&self, args: &[&str], env: &[(&str, String)]) -> Result<Output> {
        let output = Command::new("terraform")
            .args(args)
            .arg("-no-color")
            .current_dir(self.dir.path())
            .envs(self.env())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .context("running terraform")?;
        if !output.status.success() {
            bail!(
                "terraform {} failed:\n{}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(output)
    }
}

/// The folder holding `registry.terraform.io/hashicorp/aws/...`.
fn mirror() -> Result<PathBuf> {
    let holds_aws = |dir: &Path| dir.join("registry.terraform.io/hashicorp/aws").is_dir();
    if let Ok(dir) = std::env::var("TF_PROVIDER_MIRROR") {
        let dir = PathBuf::from(dir);
        if holds_aws(&dir) {
            return Ok(dir);
        }
        bail!("TF_PROVIDER_MIRROR={} holds no registry.terraform.io/hashicorp/aws", dir.display());
    }
    if let Some(dir) = MIRRORS.iter().map(PathBuf::from).find(|d| holds_aws(d)) {
        return Ok(dir);
    }
    // Anywhere else on the machine: the provider binary's path names its mirror.
    let found = Command::new("find")
        .args(["/", "-xdev", "-name", "terraform-provider-aws_*", "-path", "*registry.terraform.io/hashicorp/aws/*"])
        .output()
        .context("looking for the AWS provider with find")?;
    let text = String::from_utf8_lossy(&found.stdout);
    let mirror =
        text.lines().find_map(|line| line.split_once("/registry.terraform.io/").map(|(dir, _)| PathBuf::from(dir)));
    mirror.context(
        "the Terraform AWS provider is in no filesystem mirror on this machine (`find / -name 'terraform-provider-aws_*'` finds \
         nothing): this machine image carries it under /opt/tf-plugins; elsewhere put a mirror there or name it with TF_PROVIDER_MIRROR",
    )
}
