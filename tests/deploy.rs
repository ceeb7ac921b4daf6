//! Deployment files: the compose file's structure and the set-up script's
//! syntax always; the container image only where a Docker engine answers
//! (the test prints which it did and why).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn compose_file_is_well_formed() {
    let compose = root().join("deploy/compose/compose.yaml");
    // `docker compose config` where the plugin exists; otherwise a structural
    // check with Python's YAML parser (always present on the CI machine).
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if plugin {
        let o = Command::new("docker")
            .args(["compose", "-f"])
            .arg(&compose)
            .args(["config", "-q"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "docker compose config: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        return;
    }
    let yaml = Command::new("python3")
        .args(["-c", "import yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !yaml {
        eprintln!("SKIPPED: neither docker compose nor PyYAML (pip install pyyaml) is available to check the compose file");
        return;
    }
    eprintln!("docker compose is not installed: checking the compose file with PyYAML instead");
    let script = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]
assert set(s) == {"setup", "iq-moi", "iq-moj", "fr-mj"}, s.keys()
for n in ("iq-moi", "iq-moj", "fr-mj"):
    svc = s[n]
    assert svc["image"] == "isnad:dev"
    assert svc["depends_on"]["setup"]["condition"] == "service_completed_successfully"
    assert svc["command"][:2] == ["node", "run"]
    assert any(v.endswith(":/var/lib/isnad") for v in svc["volumes"])
    assert "ALL" in svc["cap_drop"] and svc["read_only"] is True
for v in ("roots", "iq-moi", "iq-moj", "fr-mj"):
    assert v in c["volumes"]
print("compose ok")
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&compose)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn setup_script_parses_and_uses_existing_commands() {
    let script = root().join("deploy/compose/setup.sh");
    let o = Command::new("sh").arg("-n").arg(&script).output().unwrap();
    assert!(
        o.status.success(),
        "sh -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Every `isnad <group> <command>` the script uses exists in the binary.
    let text = std::fs::read_to_string(&script).unwrap();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("isnad "))
    {
        let words: Vec<&str> = line.split_whitespace().take(3).collect();
        let mut args: Vec<&str> = words[1..]
            .iter()
            .copied()
            .filter(|w| !w.starts_with('-'))
            .collect();
        args.push("--help");
        let o = Command::new(env!("CARGO_BIN_EXE_isnad"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "setup.sh uses `{line}` but `isnad {}` does not exist",
            args.join(" ")
        );
    }
}

#[test]
fn container_image_builds_where_an_engine_runs() {
    let engine = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        eprintln!("SKIPPED: no Docker engine answers `docker info` on this machine; the image build is not tested here");
        return;
    }
    let o = Command::new("docker")
        .args(["build", "-f", "deploy/Dockerfile", "-t", "isnad:test", "."])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
