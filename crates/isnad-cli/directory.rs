//! `isnad directory …`: a country's root key and its signed directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use isnad_envelope::{AgencyId, Kind, SignatureAlgorithm, SigningKey, VerifyingKey};
use isnad_trust::{
    fingerprint, verify_signed, AgencyEntry, Directory, KeyEntry, Role, Rule, Selector,
};
use ring::rand::SystemRandom;

use crate::keys::{write_private, write_public};
use crate::out::{count, utc_secs};

/// Directory commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DirectoryCommand {
    /// Create a country's root signing key (keep it offline).
    #[command(
        after_help = "Example:\n  isnad directory root-init --country IQ --out iq-root\n\n\
Writes root.key.pem (mode 0600), root.pub.cose and root.country (the country\n\
code, which `directory sign` checks against the draft), and prints the\n\
fingerprint partners confirm out of band before trusting it."
    )]
    RootInit {
        /// Two-letter country code.
        #[arg(long)]
        country: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Make the root key in a PKCS#11 token (`--pkcs11` names it);
        /// `root.key.uri` then replaces `root.key.pem`.
        #[command(flatten)]
        token: crate::token::TokenArgs,
    },
    /// Add or update an agency's node in a directory draft (JSON).
    #[command(
        after_help = "Example:\n  isnad directory add-node --draft iq.json --node nodes/moi --role law-enforcement \\\n    \
--endpoint moi.example.iq:7401 --name en='Anti-Trafficking Directorate' --name ar='مديرية مكافحة الاتجار بالبشر'\n\n\
Reads the node's public files written by `isnad init` (keys/sign.pub.cose,\n\
keys/enc.pub.cose, keys/tls.cert.der, keys/log.pub) and its agency id from\n\
its config.toml. Creates the draft if it does not exist."
    )]
    AddNode {
        /// The draft file (JSON).
        #[arg(long)]
        draft: PathBuf,
        /// The node's directory (as made by `isnad init`).
        #[arg(long)]
        node: PathBuf,
        /// Role: central-authority, law-enforcement, prosecution, judicial, financial-intelligence, other.
        #[arg(long)]
        role: String,
        /// Endpoint host:port (repeatable).
        #[arg(long, required = true)]
        endpoint: Vec<String>,
        /// A name as LANG=TEXT (repeatable), e.g. ar='وزارة العدل'.
        #[arg(long)]
        name: Vec<String>,
    },
    /// Add a policy rule to a draft.
    #[command(
        after_help = "Example:\n  isnad directory allow --draft iq.json --id iq-ca-out --from-role central-authority \\\n    \
--to-role central-authority --to-country fr --kind mla-request --kind mla-status"
    )]
    Allow {
        /// The draft file (JSON).
        #[arg(long)]
        draft: PathBuf,
        /// Rule name, quoted in decisions.
        #[arg(long)]
        id: String,
        /// Sender agency.
        #[arg(long)]
        from_agency: Option<AgencyId>,
        /// Sender role.
        #[arg(long)]
        from_role: Option<String>,
        /// Sender country.
        #[arg(long)]
        from_country: Option<String>,
        /// Recipient agency.
        #[arg(long)]
        to_agency: Option<AgencyId>,
        /// Recipient role.
        #[arg(long)]
        to_role: Option<String>,
        /// Recipient country.
        #[arg(long)]
        to_country: Option<String>,
        /// Allowed kind (repeatable; none = all kinds).
        #[arg(long)]
        kind: Vec<String>,
        /// Only when relayed through the central authorities.
        #[arg(long)]
        via_central_authority: bool,
    },
    /// Sign a draft with the root key.
    #[command(
        after_help = "Example:\n  isnad directory sign --root-key iq-root/root.key.pem --draft iq.json --version 2 --valid-days 90 --out iq-v2.cose\n\n\
Refuses to sign when root.country next to the root key (written by\n\
`root-init`) names another country than the draft; warns when it is missing."
    )]
    Sign {
        /// The country's root key: PKCS#8 PEM, or `root.key.uri` naming a
        /// key in a PKCS#11 token (then give the module and PIN source).
        #[arg(long)]
        root_key: PathBuf,
        /// The module and PIN source of a token-held root key.
        #[command(flatten)]
        token: crate::token::TokenArgs,
        /// The draft (JSON).
        #[arg(long)]
        draft: PathBuf,
        /// Version; must be greater than every version published before.
        #[arg(long)]
        version: u64,
        /// Days of validity from now.
        #[arg(long, default_value_t = 90)]
        valid_days: u64,
        /// Output file (signed CBOR).
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a signed directory against a root: signature, strict decoding,
    /// directory rules and validity window (exit 0 valid, 2 invalid, 1 on a
    /// usage or file error).
    #[command(
        after_help = "Example:\n  isnad directory verify fr-v3.cose --root fr-root.pub.cose\n\n\
Does not compare versions: `isnad trust import` refuses rollbacks against the\n\
version a node holds."
    )]
    Verify {
        /// The signed directory.
        file: PathBuf,
        /// The root public key (COSE_Key) it must be signed by.
        #[arg(long)]
        root: PathBuf,
        /// Check the validity window at this time (Unix seconds) instead of now.
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
    /// Print a signed directory in human-readable form, after verifying it against --root.
    #[command(
        after_help = "Example:\n  isnad directory show iq-v2.cose --root iq-root/root.pub.cose"
    )]
    Show {
        /// The signed directory.
        file: PathBuf,
        /// The root public key (COSE_Key) to verify against.
        #[arg(long)]
        root: PathBuf,
    },
}

pub(crate) fn run(cmd: DirectoryCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DirectoryCommand::RootInit {
            country,
            out,
            token,
        } => root_init(&country, &out, &token),
        DirectoryCommand::AddNode {
            draft,
            node,
            role,
            endpoint,
            name,
        } => {
            let mut d = read_draft(&draft, None)?;
            let entry = node_entry(&node, parse_role(&role)?, endpoint, &name)?;
            if d.country.is_empty() {
                d.country = entry.id.country().to_owned();
            }
            if entry.id.country() != d.country {
                anyhow::bail!(
                    "{} does not belong to the {} directory",
                    entry.id,
                    d.country
                );
            }
            let id = entry.id.clone();
            match d.agencies.iter_mut().find(|a| a.id == id) {
                Some(a) => *a = entry,
                None => d.agencies.push(entry),
            }
            write_draft(&draft, &d)?;
            println!("{id} added to {}", draft.display());
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Allow {
            draft,
            id,
            from_agency,
            from_role,
            from_country,
            to_agency,
            to_role,
            to_country,
            kind,
            via_central_authority,
        } => {
            let mut d = read_draft(&draft, None)?;
            let kinds = kind
                .iter()
                .map(|k| Kind::parse(k).with_context(|| format!("unknown kind {k:?}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let sel = |agency: Option<AgencyId>,
                       role: Option<String>,
                       country: Option<String>|
             -> anyhow::Result<Selector> {
                Ok(Selector {
                    agency,
                    role: role.as_deref().map(parse_role).transpose()?,
                    country: country.map(|c| c.to_ascii_lowercase()),
                })
            };
            let rule = Rule {
                id: id.clone(),
                from: sel(from_agency, from_role, from_country)?,
                to: sel(to_agency, to_role, to_country)?,
                kinds,
                via_central_authority,
            };
            d.policy.retain(|r| r.id != id);
            d.policy.push(rule);
            write_draft(&draft, &d)?;
            println!("rule {id} added to {}", draft.display());
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Sign {
            root_key,
            draft,
            version,
            valid_days,
            out,
            token,
        } => {
            let root = token.signing_key_at(&root_key)?;
            let mut d = read_draft(&draft, None)?;
            check_root_country(&root_key, &d.country)?;
            let now = crate::node_cmd::unix_now()?;
            d.version = version;
            d.issued_at = now;
            d.valid_from = now.saturating_sub(300);
            d.valid_until = now + valid_days * 86400;
            let signed = d
                .sign(&root, &SystemRandom::new())
                .context("the draft is not a valid directory")?;
            std::fs::write(&out, &signed)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!(
                "signed {} directory version {version} ({}, {}) → {}",
                d.country,
                count(d.agencies.len() as u64, "agency", "agencies"),
                count(d.policy.len() as u64, "rule", "rules"),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        DirectoryCommand::Verify { file, root, now } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let root = read_verifying_key(&root)?;
            let now = match now {
                Some(t) => t,
                None => crate::node_cmd::unix_now()?,
            };
            match verify_signed(&bytes, &root).and_then(|d| d.current_at(now).map(|()| d)) {
                Ok(d) => {
                    println!(
                        "valid: {} directory version {}, {}, {}, valid from {} until {}",
                        d.country.to_uppercase(),
                        d.version,
                        count(d.agencies.len() as u64, "agency", "agencies"),
                        count(d.policy.len() as u64, "rule", "rules"),
                        utc_secs(d.valid_from),
                        utc_secs(d.valid_until)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("invalid ({}): {e}", e.code());
                    Ok(ExitCode::from(crate::exit::FAILED))
                }
            }
        }
        DirectoryCommand::Show { file, root } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let root = read_verifying_key(&root)?;
            let d = verify_signed(&bytes, &root)
                .context("the directory does not verify against this root")?;
            print!("{}", describe(&d));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn root_init(
    country: &str,
    out: &Path,
    token: &crate::token::TokenArgs,
) -> anyhow::Result<ExitCode> {
    let cc = country.to_ascii_lowercase();
    if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_lowercase()) {
        anyhow::bail!("--country must be a two-letter code, e.g. IQ");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let root = match &token.pkcs11 {
        Some(uri) => {
            isnad_node::token_keys::generate(
                &token.config()?,
                uri,
                isnad_pkcs11::KeyKind::Ed25519,
            )?;
            let root = token.signing_key(uri)?;
            write_public(&out.join("root.key.uri"), format!("{uri}\n").as_bytes())?;
            root
        }
        None => {
            let root = SigningKey::generate(SignatureAlgorithm::Ed25519, &SystemRandom::new())?;
            write_private(&out.join("root.key.pem"), root.to_pkcs8_pem().as_bytes())?;
            root
        }
    };
    write_public(
        &out.join("root.pub.cose"),
        &root.verifying_key().to_cose_key(),
    )?;
    write_public(&out.join(ROOT_COUNTRY), format!("{cc}\n").as_bytes())?;
    println!(
        "root key for {} written to {}",
        cc.to_uppercase(),
        out.display()
    );
    println!("fingerprint: {}", fingerprint(root.verifying_key()));
    if token.pkcs11.is_some() {
        println!("the root key stays in the token (root.key.uri names it); keep the token offline; give root.pub.cose and the fingerprint to partners");
    } else {
        println!("keep root.key.pem offline; give root.pub.cose and the fingerprint to partners");
    }
    Ok(ExitCode::SUCCESS)
}

/// The file next to a root key that names its country (written by `root-init`).
const ROOT_COUNTRY: &str = "root.country";

/// Refuses a root key whose `root.country` names another country than the
/// draft's; warns when the file is missing (roots made before it existed).
fn check_root_country(root_key: &Path, draft_country: &str) -> anyhow::Result<()> {
    let file = root_key.with_file_name(ROOT_COUNTRY);
    let draft_cc = draft_country.to_ascii_lowercase();
    match std::fs::read_to_string(&file) {
        Ok(c) => {
            let root_cc = c.trim().to_ascii_lowercase();
            if root_cc != draft_cc {
                anyhow::bail!(
                    "refusing to sign: {} is the {} root ({} says so), the draft is the {} directory; \
                     sign it with the {} root key",
                    root_key.display(),
                    root_cc.to_uppercase(),
                    file.display(),
                    draft_cc.to_uppercase(),
                    draft_cc.to_uppercase()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "warning: cannot tell which country {} belongs to (no {} next to it); \
                 make sure it is the {} root",
                root_key.display(),
                ROOT_COUNTRY,
                draft_cc.to_uppercase()
            );
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", file.display())),
    }
}

pub(crate) fn read_verifying_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    VerifyingKey::from_cose_key(&b)
        .with_context(|| format!("{} is not a signing public key (COSE_Key)", path.display()))
}

fn parse_role(s: &str) -> anyhow::Result<Role> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .with_context(|| format!("unknown role {s:?}: central-authority, law-enforcement, prosecution, judicial, financial-intelligence, other"))
}

fn read_draft(path: &Path, country: Option<&str>) -> anyhow::Result<Directory> {
    if !path.exists() {
        return Ok(Directory::new(country.unwrap_or("")));
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a directory draft", path.display()))
}

fn write_draft(path: &Path, d: &Directory) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(d)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The directory entry for the node initialised in `node_dir`.
pub(crate) fn node_entry(
    node_dir: &Path,
    role: Role,
    endpoints: Vec<String>,
    names: &[String],
) -> anyhow::Result<AgencyEntry> {
    let cfg = isnad_node::config::Config::load(&node_dir.join("config.toml"))?;
    let keys = &cfg.paths.keys;
    let read = |n: &str| {
        std::fs::read(keys.join(n))
            .with_context(|| format!("cannot read {}", keys.join(n).display()))
    };
    let now = crate::node_cmd::unix_now()?;
    let mut name_map = BTreeMap::new();
    for n in names {
        let (lang, text) = n
            .split_once('=')
            .with_context(|| format!("--name {n:?} must be LANG=TEXT"))?;
        name_map.insert(lang.to_owned(), text.to_owned());
    }
    if name_map.is_empty() {
        name_map.insert("en".into(), cfg.agency.to_string());
    }
    let key = |bytes: Vec<u8>| KeyEntry {
        key: bytes,
        valid_from: now.saturating_sub(300),
        valid_until: None,
        revoked_at: None,
        revocation_reason: None,
    };
    let log_key = std::fs::read_to_string(keys.join("log.pub"))
        .ok()
        .map(|s| s.trim().to_owned());
    Ok(AgencyEntry {
        id: cfg.agency.clone(),
        names: name_map,
        role,
        endpoints,
        tls_spki_sha256: isnad_trust::tls::spki_sha256(&read("tls.cert.der")?)?,
        signing_keys: vec![key(read("sign.pub.cose")?)],
        encryption_keys: vec![key(read("enc.pub.cose")?)],
        log_key,
        witness_key: std::fs::read_to_string(keys.join("witness.pub"))
            .ok()
            .map(|s| s.trim().to_owned()),
    })
}

/// Human-readable rendering of a directory.
pub(crate) fn describe(d: &Directory) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "directory of {} — version {}, valid {} to {}",
        d.country.to_uppercase(),
        d.version,
        utc_secs(d.valid_from),
        utc_secs(d.valid_until)
    );
    for a in &d.agencies {
        let _ = writeln!(
            s,
            "\n  {}  [{}]",
            a.id,
            serde_json::to_value(a.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        );
        for (lang, name) in &a.names {
            let _ = writeln!(s, "    name ({lang}): {name}");
        }
        let _ = writeln!(s, "    endpoints: {}", a.endpoints.join(", "));
        let _ = writeln!(
            s,
            "    TLS SPKI SHA-256: {}",
            a.tls_spki_sha256
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        for (what, keys) in [
            ("signing", &a.signing_keys),
            ("encryption", &a.encryption_keys),
        ] {
            for k in keys.iter() {
                let kid = VerifyingKey::from_cose_key(&k.key)
                    .map(|v| v.key_id())
                    .or_else(|_| {
                        isnad_envelope::EncryptionPublicKey::from_cose_key(&k.key)
                            .map(|e| e.key_id())
                    })
                    .map(|id| id.to_hex()[..16].to_owned())
                    .unwrap_or_else(|_| "?".into());
                let mut line = format!("    {what} key {kid}… from {}", utc_secs(k.valid_from));
                if let Some(u) = k.valid_until {
                    let _ = write!(line, " until {}", utc_secs(u));
                }
                if let Some(r) = k.revoked_at {
                    let _ = write!(
                        line,
                        " REVOKED at {} ({})",
                        utc_secs(r),
                        k.revocation_reason.as_deref().unwrap_or("no reason given")
                    );
                }
                let _ = writeln!(s, "{line}");
            }
        }
        if let Some(l) = &a.log_key {
            let _ = writeln!(s, "    audit log key: {l}");
        }
    }
    if !d.policy.is_empty() {
        let _ = writeln!(s, "\n  policy:");
        for r in &d.policy {
            let kinds = if r.kinds.is_empty() {
                "all kinds".to_owned()
            } else {
                r.kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                s,
                "    {}: {} → {}: {kinds}{}",
                r.id,
                describe_selector(&r.from),
                describe_selector(&r.to),
                if r.via_central_authority {
                    " (via central authorities)"
                } else {
                    ""
                }
            );
        }
    }
    s
}

/// A policy selector as text: `any`, or its fields joined with `, `.
fn describe_selector(sel: &Selector) -> String {
    let mut parts = Vec::new();
    if let Some(a) = &sel.agency {
        parts.push(format!("agency {a}"));
    }
    if let Some(r) = sel.role {
        let role = serde_json::to_value(r)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        parts.push(format!("role {role}"));
    }
    if let Some(c) = &sel.country {
        parts.push(format!("country {}", c.to_uppercase()));
    }
    if parts.is_empty() {
        "any agency".to_owned()
    } else {
        parts.join(", ")
    }
}
