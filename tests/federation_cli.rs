//! `isnad directory …` and `isnad trust …` end to end, running the real
//! binary in temporary directories.
#![allow(clippy::unwrap_used)] // Tests panic on failure by design.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_isnad");

const AR_NAME: &str = "وزارة العدل — السلطة المركزية";
const EN_NAME: &str = "Ministry of Justice — Central Authority";

fn isnad(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `args`, asserting exit 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = isnad(args);
    assert_eq!(code(&o), 0, "isnad {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// A country's root, one initialised node, a draft with it and a rule.
struct Country {
    root: PathBuf,
    node: PathBuf,
    draft: PathBuf,
    fingerprint: String,
}

fn country(dir: &Path, cc: &str, agency: &str, port: u16) -> Country {
    let root = dir.join(format!("{cc}-root"));
    let out = ok(&["directory", "root-init", "--country", cc, "--out", p(&root)]);
    let fingerprint = out
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .unwrap_or_else(|| panic!("no fingerprint printed: {out}"))
        .to_owned();
    let node = dir.join(agency);
    ok(&[
        "init",
        "--dir",
        p(&node),
        "--agency",
        agency,
        "--country",
        cc,
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let draft = dir.join(format!("{cc}.json"));
    ok(&[
        "directory",
        "add-node",
        "--draft",
        p(&draft),
        "--node",
        p(&node),
        "--role",
        "central-authority",
        "--endpoint",
        &format!("127.0.0.1:{port}"),
        "--name",
        &format!("ar={AR_NAME}"),
        "--name",
        &format!("en={EN_NAME}"),
    ]);
    ok(&[
        "directory",
        "allow",
        "--draft",
        p(&draft),
        "--id",
        &format!("{}-ca", cc.to_lowercase()),
        "--from-role",
        "central-authority",
        "--to-role",
        "central-authority",
        "--kind",
        "mla-request",
    ]);
    Country {
        root,
        node,
        draft,
        fingerprint,
    }
}

fn sign(c: &Country, version: u64, out: &Path) {
    ok(&[
        "directory",
        "sign",
        "--root-key",
        p(&c.root.join("root.key.pem")),
        "--draft",
        p(&c.draft),
        "--version",
        &version.to_string(),
        "--out",
        p(out),
    ]);
}

#[test]
fn root_init_writes_a_private_key_0600_and_prints_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let c = country(dir.path(), "IQ", "iq.moj.ca", 17501);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(c.root.join("root.key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "root.key.pem mode {mode:o}");
    }
    // Eight groups of four hex digits, matching what trust init shows.
    let groups: Vec<&str> = c.fingerprint.split(' ').collect();
    assert_eq!(groups.len(), 8, "{}", c.fingerprint);
    assert!(groups
        .iter()
        .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_hexdigit())));
    let trust = c.node.join("trust");
    let out = ok(&[
        "trust",
        "init",
        "--trust-dir",
        p(&trust),
        "--country",
        "IQ",
        "--root",
        p(&c.root.join("root.pub.cose")),
    ]);
    assert!(out.contains(&c.fingerprint), "{out}");
}

#[test]
fn sign_show_and_verify_round_trip_with_arabic_and_latin_names() {
    let dir = tempfile::tempdir().unwrap();
    let iq = country(dir.path(), "IQ", "iq.moj.ca", 17511);
    let fr = country(dir.path(), "FR", "fr.mj.bepi", 17512);
    let signed = dir.path().join("iq-v1.cose");
    sign(&iq, 1, &signed);
    let iq_root = iq.root.join("root.pub.cose");
    let fr_root = fr.root.join("root.pub.cose");

    let shown = ok(&["directory", "show", p(&signed), "--root", p(&iq_root)]);
    assert!(shown.contains("directory of IQ — version 1"), "{shown}");
    assert!(shown.contains(&format!("name (ar): {AR_NAME}")), "{shown}");
    assert!(shown.contains(&format!("name (en): {EN_NAME}")), "{shown}");
    assert!(shown.contains("iq-ca: role central-authority → role central-authority: mla-request"));
    assert!(shown.contains("audit log key: iq.moj.ca/audit+"), "{shown}");

    let out = ok(&["directory", "verify", p(&signed), "--root", p(&iq_root)]);
    assert!(
        out.starts_with("valid: IQ directory version 1, 1 agency"),
        "{out}"
    );

    // Another country's root: exit 2 with the reason.
    let o = isnad(&["directory", "verify", p(&signed), "--root", p(&fr_root)]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains("invalid (wrong-root)"),
        "{}",
        stderr(&o)
    );
    // Outside the validity window.
    let o = isnad(&[
        "directory",
        "verify",
        p(&signed),
        "--root",
        p(&iq_root),
        "--now",
        "1",
    ]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains("invalid (not-yet-valid)"),
        "{}",
        stderr(&o)
    );
    // A changed byte: the signature fails.
    let mut bytes = std::fs::read(&signed).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = dir.path().join("tampered.cose");
    std::fs::write(&tampered, &bytes).unwrap();
    let o = isnad(&["directory", "verify", p(&tampered), "--root", p(&iq_root)]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains("invalid (bad-signature)"),
        "{}",
        stderr(&o)
    );
    // A missing file is a usage/IO error, not a verdict.
    let o = isnad(&[
        "directory",
        "verify",
        p(&dir.path().join("missing.cose")),
        "--root",
        p(&iq_root),
    ]);
    assert_eq!(code(&o), 1, "{o:?}");
    // show also refuses the wrong root.
    let o = isnad(&["directory", "show", p(&signed), "--root", p(&fr_root)]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("does not verify against this root"));
}

#[test]
fn trust_import_refuses_rollback_and_add_partner_refuses_a_second_root() {
    let dir = tempfile::tempdir().unwrap();
    let iq = country(dir.path(), "IQ", "iq.moj.ca", 17521);
    let fr = country(dir.path(), "FR", "fr.mj.bepi", 17522);
    let trust = iq.node.join("trust");
    ok(&[
        "trust",
        "init",
        "--trust-dir",
        p(&trust),
        "--country",
        "IQ",
        "--root",
        p(&iq.root.join("root.pub.cose")),
    ]);
    let v1 = dir.path().join("iq-v1.cose");
    let v2 = dir.path().join("iq-v2.cose");
    sign(&iq, 1, &v1);
    sign(&iq, 2, &v2);
    let out = ok(&["trust", "import", "--trust-dir", p(&trust), p(&v1)]);
    assert!(out.contains("holding IQ directory version 1"), "{out}");
    assert!(out.contains("agency added: iq.moj.ca"), "{out}");
    let out = ok(&["trust", "import", "--trust-dir", p(&trust), p(&v2)]);
    assert!(out.contains("holding IQ directory version 2"), "{out}");
    let out = ok(&["trust", "import", "--trust-dir", p(&trust), p(&v2)]);
    assert!(out.contains("already held"), "{out}");

    let o = isnad(&["trust", "import", "--trust-dir", p(&trust), p(&v1)]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(
        stderr(&o)
            .contains("version 1 is older than the version 2 already held (rollback refused)"),
        "{}",
        stderr(&o)
    );
    let held = std::fs::read(trust.join("directories/iq.cose")).unwrap();
    assert_eq!(held, std::fs::read(&v2).unwrap(), "v2 still held");

    // A partner directory before its root is trusted: unknown root.
    let fr1 = dir.path().join("fr-v1.cose");
    sign(&fr, 1, &fr1);
    let o = isnad(&["trust", "import", "--trust-dir", p(&trust), p(&fr1)]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(
        stderr(&o).contains("isnad trust add-partner"),
        "{}",
        stderr(&o)
    );

    let fr_root = fr.root.join("root.pub.cose");
    let out = ok(&[
        "trust",
        "add-partner",
        "--trust-dir",
        p(&trust),
        "--root",
        p(&fr_root),
        "--country",
        "FR",
    ]);
    assert!(out.contains(&fr.fingerprint), "{out}");
    let out = ok(&["trust", "import", "--trust-dir", p(&trust), p(&fr1)]);
    assert!(out.contains("holding FR directory version 1"), "{out}");
    // The same root again is fine; a different root for FR is refused.
    ok(&[
        "trust",
        "add-partner",
        "--trust-dir",
        p(&trust),
        "--root",
        p(&fr_root),
        "--country",
        "FR",
    ]);
    let o = isnad(&[
        "trust",
        "add-partner",
        "--trust-dir",
        p(&trust),
        "--root",
        p(&iq.root.join("root.pub.cose")),
        "--country",
        "FR",
    ]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(
        stderr(&o).contains("a different root is already trusted for fr"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(trust.join("roots/fr.cose")).unwrap(),
        std::fs::read(&fr_root).unwrap(),
        "the FR root is unchanged"
    );
    let out = ok(&["trust", "list", "--trust-dir", p(&trust)]);
    assert!(
        out.contains(&format!("root FR: {}", fr.fingerprint)),
        "{out}"
    );
    assert!(
        out.contains(&format!("root IQ (own): {}", iq.fingerprint)),
        "{out}"
    );
    assert!(out.contains("directory IQ v2"), "{out}");
}
