//! Deployment files: the compose file's structure and the set-up script's
//! syntax always; the container image only where a Docker engine answers
//! (the test prints which it did and why).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

use std::path::{Path, PathBuf};
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
        if std::env::var("ISNAD_SKIP_INTEROP").as_deref() != Ok("1") {
            panic!(
                "the CDDL check of deploy/examples cannot run: {why}; \
                 install them (README, \"Tests\") or opt out with ISNAD_SKIP_INTEROP=1"
            );
        }
        eprintln!("SKIPPED the CDDL half of this test (ISNAD_SKIP_INTEROP=1): {why}");
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
    // From a file: the script is over the 128 KiB limit of one argument.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), &bash).unwrap();
    let o = Command::new("bash")
        .arg("-n")
        .arg(script.path())
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

/// The uid of the image's `isnad` user; the tests run the service as it.
const SERVICE_UID: u32 = 10001;

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `setpriv` arguments that run a command as the service user (as root), or
/// nothing (as anyone else: the command runs as the current user).
fn as_service_user() -> Vec<String> {
    if running_as_root() {
        [
            "setpriv",
            &format!("--reuid={SERVICE_UID}"),
            &format!("--regid={SERVICE_UID}"),
            "--clear-groups",
        ]
        .map(String::from)
        .to_vec()
    } else {
        Vec::new()
    }
}

/// Every file and directory under `dir` belongs to the service user.
fn assert_owned_by_service_user(dir: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    if !running_as_root() {
        return;
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        assert_eq!(
            m.uid(),
            SERVICE_UID,
            "{} is owned by uid {}",
            d.display(),
            m.uid()
        );
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

/// A temporary directory other users may traverse (the service user must
/// reach its files under it).
fn open_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    t
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Runs `sh -c LINE` in `cwd` with `path_dir` first on PATH; returns
/// (success, stdout, stderr).
fn sh(line: &str, cwd: &Path, path_dir: &Path) -> (bool, String, String) {
    let path = format!(
        "{}:{}",
        path_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("sh")
        .args(["-c", line])
        .current_dir(cwd)
        .env("PATH", path)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A node process started as the service user; killed if still running.
struct Service(std::process::Child, PathBuf);

impl Service {
    fn start(argv: &[String], cwd: &Path, env: &[(String, String)], log: &Path) -> Self {
        let mut all = as_service_user();
        all.extend(argv.iter().cloned());
        let err = std::fs::File::create(log).unwrap();
        let child = Command::new(&all[0])
            .args(&all[1..])
            .current_dir(cwd)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Self(child, log.to_owned())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }

    /// Waits until the local API of `config` answers `isnad outbox`.
    fn wait_api(&mut self, config: &Path) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let o = Command::new(env!("CARGO_BIN_EXE_isnad"))
                .args(["outbox", "--json", "--config"])
                .arg(config)
                .output()
                .unwrap();
            if o.status.success() {
                return;
            }
            if let Some(status) = self.0.try_wait().unwrap() {
                panic!("the node exited ({status}):\n{}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the API never answered:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// SIGTERM (as systemd and the container engine stop it); a clean exit
    /// within 10 s.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "exit after SIGTERM: {status}\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit 10 s after SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The commands of deploy/README.md steps 1 to 4 for one node, in order,
/// verbatim (the test checks they are in the README). `useradd` is not run:
/// the service user is uid 10001 without a passwd entry.
const SYSTEMD_PATH: &[&str] = &[
    "install -m 0755 target/release/isnad /usr/local/bin/isnad",
    "install -d /usr/local/share/man/man1 && isnad man --out /usr/local/share/man/man1",
    "install -d /usr/share/bash-completion/completions && isnad completions bash > /usr/share/bash-completion/completions/isnad",
    "install -d -m 0700 -o isnad -g isnad /var/lib/isnad",
    "sudo -u isnad isnad init --dir /var/lib/isnad --agency iq.moi.ahtd --country IQ --listen 0.0.0.0:7401",
    "isnad directory root-init --country IQ --out iq-root          # once per country",
    "isnad directory add-node --draft iq.json --node /var/lib/isnad --role law-enforcement \\\n  --endpoint moi.example.iq:7401 --name ar='مديرية مكافحة الاتجار بالبشر' --name en='Anti-Trafficking Directorate'",
    "isnad directory allow --draft iq.json --id iq-internal --from-country iq --to-country iq",
    "isnad directory sign --root-key iq-root/root.key.pem --draft iq.json --version 1 --valid-days 90 --out iq-v1.cose",
    "isnad directory show iq-v1.cose --root iq-root/root.pub.cose",
    "sudo -u isnad isnad trust init --trust-dir /var/lib/isnad/trust --country IQ --root iq-root/root.pub.cose",
    "sudo -u isnad isnad trust import --trust-dir /var/lib/isnad/trust iq-v1.cose",
];

/// A documented line as run on this machine: system paths under `fake`,
/// the service user as uid 10001, loopback addresses.
fn localize(line: &str, fake: &Path, quic: u16, api: u16) -> String {
    let f = fake.display();
    let user = as_service_user().join(" ");
    let owner = if running_as_root() {
        format!("-o {SERVICE_UID} -g {SERVICE_UID}")
    } else {
        String::new()
    };
    line.replace("/usr/", &format!("{f}/usr/"))
        .replace("/var/lib/isnad", &format!("{f}/var/lib/isnad"))
        .replace("sudo -u isnad ", &format!("{user} "))
        .replace("-o isnad -g isnad", &owner)
        // Linked, not copied: the debug binary is some 200 MB.
        .replace(
            "install -m 0755 target/release/isnad ",
            &format!("ln -s {} ", env!("CARGO_BIN_EXE_isnad")),
        )
        .replace(
            "--listen 0.0.0.0:7401",
            &format!("--listen 127.0.0.1:{quic} --api 127.0.0.1:{api}"),
        )
}

#[test]
fn systemd_path_works_as_documented() {
    if !running_as_root() {
        eprintln!(
            "NOT TESTED AS A SERVICE USER: this test runs as uid != 0, so it follows the \
             systemd path as the current user (no setpriv, no chown); run it as root for the full check"
        );
    }
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    let unit_text = std::fs::read_to_string(root().join("deploy/systemd/isnad.service")).unwrap();
    for line in SYSTEMD_PATH {
        assert!(
            readme.contains(line),
            "deploy/README.md no longer says `{line}`: update this test"
        );
    }
    for line in [
        SYSTEMD_PATH[0],
        SYSTEMD_PATH[1],
        SYSTEMD_PATH[3],
        SYSTEMD_PATH[4],
    ] {
        assert!(
            unit_text.contains(&format!("#   {line}\n")),
            "the unit's header lacks `{line}`"
        );
    }
    let t = open_tempdir();
    let fake = t.path().join("machine");
    let offline = t.path().join("offline");
    std::fs::create_dir_all(fake.join("usr/local/bin")).unwrap();
    std::fs::create_dir_all(fake.join("var/lib")).unwrap();
    std::fs::create_dir_all(&offline).unwrap();
    let bin_dir = fake.join("usr/local/bin");
    let (quic, api) = (free_port(true), free_port(false));
    let home = fake.join("var/lib/isnad");

    let run = |line: &str| {
        let (ok, out, err) = sh(&localize(line, &fake, quic, api), &offline, &bin_dir);
        assert!(ok, "`{line}` failed:\n{out}{err}");
    };
    for line in &SYSTEMD_PATH[..3] {
        run(line);
    }
    // The order the README used to give: init before the directory exists.
    // As the service user it cannot create it; the error names the path
    // and says what to do.
    if running_as_root() {
        let (ok, _, err) = sh(
            &localize(SYSTEMD_PATH[4], &fake, quic, api),
            &offline,
            &bin_dir,
        );
        assert!(!ok);
        assert!(err.contains(&home.display().to_string()), "{err}");
        assert!(
            err.contains("install -d -m 0700 -o isnad -g isnad"),
            "{err}"
        );
    }
    for line in &SYSTEMD_PATH[3..] {
        run(line);
    }
    assert_owned_by_service_user(&home);
    assert!(fake
        .join("usr/local/share/man/man1/isnad-node-run.1")
        .is_file());
    assert!(fake
        .join("usr/share/bash-completion/completions/isnad")
        .is_file());

    // The unit, checked by systemd itself, with its ExecStart pointing at
    // the installed binary and the installed manual pages on MANPATH (the
    // unit's Documentation= names them).
    let installed = fake.join("usr/local/bin/isnad");
    let unit = t.path().join("isnad.service");
    std::fs::write(
        &unit,
        unit_text.replace("/usr/local/bin/isnad", &installed.display().to_string()),
    )
    .unwrap();
    match Command::new("systemd-analyze")
        .args(["verify"])
        .arg(&unit)
        .env("MANPATH", fake.join("usr/local/share/man"))
        .output()
    {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            // verify exits 0 on unknown keys and bad values: any output is a finding.
            assert!(
                o.status.success() && err.trim().is_empty(),
                "systemd-analyze verify:\n{err}"
            );
        }
        // Missing, the check fails unless explicitly waived: a skipped
        // check must not pass silently.
        Err(e) if std::env::var("ISNAD_SKIP_SYSTEMD_CHECK").as_deref() == Ok("1") => eprintln!(
            "NOT CHECKED (ISNAD_SKIP_SYSTEMD_CHECK=1): systemd-analyze cannot be run ({e})"
        ),
        Err(e) => panic!(
            "systemd-analyze cannot be run ({e}): install the `systemd` package \
             (apt-get install systemd; .ci/run does) to check the unit, or set \
             ISNAD_SKIP_SYSTEMD_CHECK=1 to waive this check"
        ),
    }

    // Started the way the unit starts it: its User, WorkingDirectory,
    // UMask, Environment and ExecStart.
    let service = |key: &str| -> Vec<String> {
        unit_text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(service("User"), ["isnad"]);
    let cwd = PathBuf::from(localize(&service("WorkingDirectory")[0], &fake, quic, api));
    let umask = &service("UMask")[0];
    let env: Vec<(String, String)> = service("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let exec = localize(&service("ExecStart")[0], &fake, quic, api);
    let argv: Vec<String> = ["sh", "-c", &format!("umask {umask} && exec {exec}")]
        .map(String::from)
        .to_vec();
    let mut node = Service::start(&argv, &cwd, &env, &t.path().join("node.log"));
    let config = home.join("config.toml");
    node.wait_api(&config);
    let log = node.log();
    // Followed literally, the README leaves nothing to warn about.
    assert!(
        !log.contains("WARNING"),
        "the documented node warns:\n{log}"
    );
    assert!(log.contains("node running"), "{log}");
    node.stop();
    assert_owned_by_service_user(&home);
}

#[test]
fn compose_setup_runs_against_the_binary_as_compose_runs_it() {
    let compose_path = root().join("deploy/compose/compose.yaml");
    let o = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&compose_path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "PyYAML is needed (pip install pyyaml): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let compose: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let setup = &compose["services"]["setup"];
    // The image's user is the one setup hands the volumes to.
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("--uid {SERVICE_UID} ")),
        "the image's isnad user is not uid {SERVICE_UID}"
    );
    assert_eq!(
        setup["user"], "0",
        "setup must start as root to chown the fresh volumes"
    );
    assert_eq!(setup["environment"]["ISNAD_UID"], SERVICE_UID.to_string());
    // Root with only what handing over the volumes and dropping to the
    // user takes.
    assert_eq!(setup["cap_drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        setup["cap_add"],
        serde_json::json!(["CHOWN", "SETUID", "SETGID"])
    );
    // Volume targets as the engine creates them: owned by root.
    let t = open_tempdir();
    let fake = t.path();
    let mut targets = Vec::new();
    for v in setup["volumes"].as_array().unwrap() {
        let v = v.as_str().unwrap();
        let (name, target) = v.split_once(':').unwrap();
        if compose["volumes"].get(name).is_some() {
            targets.push(target.to_owned());
            std::fs::create_dir_all(fake.join(target.trim_start_matches('/'))).unwrap();
        }
    }
    targets.sort();
    assert_eq!(
        targets,
        ["/nodes/fr-mj", "/nodes/iq-moi", "/nodes/iq-moj", "/roots"],
        "setup.sh's default paths"
    );
    for n in ["iq-moi", "iq-moj", "fr-mj"] {
        let vols = &compose["services"][n]["volumes"];
        assert!(
            vols.as_array()
                .unwrap()
                .iter()
                .any(|v| v == "../examples:/examples:ro"),
            "{n} lacks the examples"
        );
        assert!(
            compose["services"][n].get("user").is_none(),
            "{n} must run as the image's user"
        );
    }
    let bin_dir = t.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_isnad"), bin_dir.join("isnad")).unwrap();
    let script = root().join("deploy/compose/setup.sh");
    // No container network here: the service names do not resolve, so the
    // directories name loopback endpoints instead (setup.sh's only hook).
    let nodes = ["iq-moi", "iq-moj", "fr-mj"].map(|n| (n, free_port(true), free_port(false)));
    let run_setup = || {
        // As root: with only the capabilities the compose file leaves it
        // (cap_drop ALL, cap_add CHOWN SETUID SETGID, no-new-privileges).
        let mut c = if running_as_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--bounding-set=-all,+chown,+setuid,+setgid",
                "--inh-caps=-all",
                "--no-new-privs",
                "sh",
            ]);
            c
        } else {
            Command::new("sh")
        };
        for (n, quic, _) in nodes {
            let var = format!("ISNAD_ENDPOINT_{}", n.replace('-', "_").to_uppercase());
            c.env(var, format!("127.0.0.1:{quic}"));
        }
        c.arg(&script)
            .current_dir(fake)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("ISNAD_ROOTS", fake.join("roots"))
            .env("ISNAD_NODES", fake.join("nodes"));
        if running_as_root() {
            c.env("ISNAD_UID", SERVICE_UID.to_string());
        } else {
            eprintln!("NOT TESTED: handing the volumes to uid {SERVICE_UID} needs root; setup.sh runs as the current user");
        }
        let o = c.output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "setup.sh failed:\n{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    assert!(run_setup().contains("federation set up"));
    assert!(
        run_setup().contains("already set up"),
        "setup.sh is not idempotent"
    );
    assert_owned_by_service_user(&fake.join("roots"));
    for n in ["iq-moi", "iq-moj", "fr-mj"] {
        assert_owned_by_service_user(&fake.join("nodes").join(n));
    }

    // The nodes started from their volumes as the compose file starts them,
    // on loopback (in their containers they listen on 0.0.0.0:7401).
    let mut running = Vec::new();
    for (n, quic, api) in nodes {
        let home = fake.join("nodes").join(n);
        let config = home.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let text = text
            .replace("0.0.0.0:7401", &format!("127.0.0.1:{quic}"))
            .replace("127.0.0.1:7480", &format!("127.0.0.1:{api}"));
        std::fs::write(&config, text).unwrap();
        let command: Vec<String> = compose["services"][n]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("/var/lib/isnad", &home.display().to_string())
            })
            .collect();
        let mut argv = vec![env!("CARGO_BIN_EXE_isnad").to_owned()];
        argv.extend(command);
        let rust_log = compose["x-node"]["environment"]["RUST_LOG"]
            .as_str()
            .unwrap();
        let env = [("RUST_LOG".to_owned(), rust_log.to_owned())];
        let node = Service::start(&argv, &home, &env, &t.path().join(format!("{n}.log")));
        running.push((node, config));
    }
    for (node, config) in &mut running {
        node.wait_api(config);
        let log = node.log();
        assert!(!log.contains("WARNING"), "a compose node warns:\n{log}");
    }
    let home = fake.join("nodes/iq-moj");

    // deploy/README's send command, inside the container (as its user).
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    let prefix = "docker compose -f deploy/compose/compose.yaml exec iq-moj ";
    let line = readme
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(" isnad send "))
        .expect("deploy/README.md shows a compose send command");
    let line = line[prefix.len()..]
        .replace("/var/lib/isnad", &home.display().to_string())
        .replace(
            "/examples/",
            &format!("{}/", root().join("deploy/examples").display()),
        );
    let line = format!("{} {line}", as_service_user().join(" "));
    let (ok, out, err) = sh(&line, fake, &bin_dir);
    assert!(ok, "`{line}`:\n{out}{err}");
    let id = out.trim();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "no message id: {out}"
    );
    // ... and fr.mj.bepi has it: delivered with a verified receipt.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let o = Command::new(env!("CARGO_BIN_EXE_isnad"))
            .args(["status", "--json", "--config"])
            .arg(home.join("config.toml"))
            .arg(id)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        if v["state"] == "delivered" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered after 20 s: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (node, _) in running {
        node.stop();
    }
}
