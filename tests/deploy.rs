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

/// Kinds a node makes itself (a case system never submits them).
const NODE_MADE: [&str; 3] = ["receipt", "error", "relay"];

#[test]
fn example_payloads_cover_every_kind_and_match_messages_cddl() {
    use isnad_envelope::{
        body_from_json, claims_bytes, AgencyId, Header, Kind, Message, MessageId,
    };
    let dir = root().join("deploy/examples");
    let tmp = tempfile::tempdir().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    let mut claims_files = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    for path in &names {
        let stem = path.file_stem().unwrap().to_str().unwrap();
        // `mla-status-refused.json` is an mla-status: the longest kind name
        // the file name starts with.
        let kind = Kind::ALL
            .into_iter()
            .filter(|k| stem == k.as_str() || stem.starts_with(&format!("{}-", k.as_str())))
            .max_by_key(|k| k.as_str().len())
            .unwrap_or_else(|| panic!("{stem}.json names no message kind"));
        let text = std::fs::read_to_string(path).unwrap();
        // What `isnad send --payload` (the node's API) does with the file.
        let body = body_from_json(kind, &text)
            .unwrap_or_else(|e| panic!("{} is refused: {e}", path.display()));
        let msg = Message {
            header: Header {
                id: MessageId::from_bytes([7; 16]),
                sender: AgencyId::new("iq.moj.ca").unwrap(),
                recipient: AgencyId::new("fr.mj.bepi").unwrap(),
                created: 1_790_000_000,
                expires: 1_790_000_000 + 7 * 86400,
            },
            body,
        };
        let out = tmp.path().join(format!("{stem}.cbor"));
        std::fs::write(&out, claims_bytes(&msg).unwrap()).unwrap();
        claims_files.push(out);
        covered.insert(kind.as_str());
    }
    let wanted: std::collections::BTreeSet<&str> = Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| !NODE_MADE.contains(k))
        .collect();
    assert_eq!(
        covered, wanted,
        "deploy/examples/ must hold one payload per kind a client sends"
    );

    // The claims they become, against spec/messages.cddl (pycddl, with the
    // interop script's work-arounds for that validator).
    let probe = Command::new("python3")
        .args(["-c", "import pycddl, cbor2, pycose"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = "python3 lacks pycddl/cbor2/pycose (pip install \"pycddl==0.6.4\" \"cbor2>=5.4,<6\" \"pycose==1.1.0\")";
        if std::env::var("ISNAD_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("the CDDL check of deploy/examples cannot run: {why}");
        }
        eprintln!("SKIPPED the CDDL half of this test: {why}");
        return;
    }
    let script = r#"
import sys
sys.path.insert(0, sys.argv[1])
from cose_interop import Cddl, without_extensions
cddl = Cddl()
bad = 0
for path in sys.argv[2:]:
    ok, why = cddl.valid("isnad-claims", without_extensions(open(path, "rb").read()))
    print(("ok  " if ok else "FAIL"), path.rsplit("/", 1)[-1], why)
    bad += not ok
sys.exit(1 if bad else 0)
"#;
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(root().join("tests/interop"))
        .args(&claims_files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "examples do not match spec/messages.cddl:\n{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        stdout.matches("ok  ").count(),
        claims_files.len(),
        "{stdout}"
    );
}

#[test]
fn completions_and_manual_pages_come_from_the_cli_definition() {
    let bin = env!("CARGO_BIN_EXE_isnad");
    let run = |args: &[&str]| {
        let o = Command::new(bin).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "isnad {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    // Every command is completed, down to nested ones.
    for word in [
        "audit",
        "verify-fork",
        "node",
        "trust",
        "add-partner",
        "completions",
        "man",
    ] {
        assert!(bash.contains(word), "bash completions lack {word}");
    }
    let o = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(run(&["completions", "zsh"]).starts_with("#compdef isnad"));
    assert!(run(&["completions", "fish"]).contains("complete -c isnad"));
    let page = run(&["man"]);
    assert!(page.contains(".TH isnad 1"), "{page}");
    assert!(
        page.contains("isnad\\-node(1)"),
        "no SEE ALSO of node: {page}"
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--out", dir.path().to_str().unwrap()]);
    for page in [
        "isnad.1",
        "isnad-node-run.1",
        "isnad-audit-verify.1",
        "isnad-trust-add-partner.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    let run_page = std::fs::read_to_string(dir.path().join("isnad-node-run.1")).unwrap();
    assert!(run_page.contains("\\-\\-config"), "{run_page}");
}
