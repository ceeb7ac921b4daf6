//! `isnad audit …`: log keys, export, mirroring a served log, verification,
//! inclusion proofs, the cross-log audit and the auditor's report.
//!
//! Exit codes: the table of `crate::exit` (README, "Exit codes"): 0 verified
//! / done, 1 usage or IO error (bad arguments, unreadable key or file), 2
//! verification failed or the cross-check has findings, 3 a fork shown.
//!
//! Key options: `--signer-key` is the log's private key (only `export`
//! takes it), `--verifier-key` the public key an auditor trusts. The old
//! `--log-key` (both meanings) is a hidden, deprecated alias of each.

pub(crate) mod crosscheck;
mod sync;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::note::{SignerKey, VerifierKey};
use isnad_log::{AuditError, Entry, EventType, Log, TlogProof};

/// File names written by `isnad audit keygen` inside `--out`.
const LOG_KEY: &str = "log.key";
const LOG_PUB: &str = "log.pub";

/// Exit code for a verification failure.
const VERIFY_FAILED: u8 = crate::exit::FAILED;

/// Audit-log commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum AuditCommand {
    /// Create a log signing key (checkpoint origin = key name).
    #[command(
        after_help = "Example:\n  isnad audit keygen --name iq.moi.ahtd/audit --out keys/\n\n\
Writes log.key (signer key PRIVATE+KEY+..., mode 0600) and log.pub (the\n\
verifier key name+keyid+key to give auditors). Existing files are never\n\
overwritten."
    )]
    Keygen {
        /// Key name and checkpoint origin, by convention `<agency-id>/audit`.
        #[arg(long)]
        name: String,
        /// Directory to write log.key and log.pub into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a checkpoint of the log and export it in the C2SP tlog-tiles layout.
    #[command(
        after_help = "Examples:\n  isnad audit export --config /etc/isnad/config.toml --out /srv/exports/2026-12-01\n  \
isnad audit export --log /var/lib/isnad/audit --signer-key keys/log.key --out export/\n\n\
With --config the running node writes the export itself (its log has one\n\
owner) through its local API, into --out on the node's machine: a new\n\
directory (its parent must exist) or an empty one, never overwritten. The\n\
checkpoint is signed now, or with --latest is the node's latest checkpoint\n\
with the witness cosignatures collected for it. --log works only while the\n\
node is stopped."
    )]
    Export {
        /// The running node's config file (its api.listen and api.token_file are used).
        #[arg(long, conflicts_with_all = ["log", "signer_key"], required_unless_present = "log")]
        config: Option<PathBuf>,
        /// With --config: export at the node's latest checkpoint (with its
        /// witness cosignatures) instead of signing a new one.
        #[arg(long, requires = "config")]
        latest: bool,
        /// The log directory of a stopped node.
        #[arg(long, requires = "signer_key")]
        log: Option<PathBuf>,
        /// The log's private signer key file, log.key (written by `isnad
        /// audit keygen`; formerly --log-key).
        #[arg(long, alias = "log-key", requires = "log")]
        signer_key: Option<PathBuf>,
        /// Output directory: new, or an existing empty directory (never
        /// overwritten, links not followed).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an export offline: entries, tiles, root, signature, consistency.
    #[command(
        after_help = "Example:\n  isnad audit verify export/ --verifier-key log.pub --previous old-checkpoint\n\n\
With --previous (a checkpoint verified before, e.g. the one a mirror held\n\
before `isnad audit sync`) only what is new since it is checked: the entries\n\
after it and the tiles above them, tied to both roots (the consistency proof).\n\
With --witness-key (repeatable) the checkpoint must also carry valid\n\
cosignatures by --witness-quorum of those witness keys (default: all); a\n\
cosignature line of a given witness key that does not verify fails the export.\n\
Exit status: 0 verified, 1 usage or IO error, 2 verification failed."
    )]
    Verify {
        /// The export directory.
        dir: PathBuf,
        /// File holding the log's public verifier key, log.pub
        /// (name+keyid+key; formerly --log-key).
        #[arg(long, alias = "log-key")]
        verifier_key: PathBuf,
        /// A previously trusted checkpoint file: the export must extend it,
        /// and only what is new since it is checked.
        #[arg(long)]
        previous: Option<PathBuf>,
        #[command(flatten)]
        witness: crate::note::WitnessArgs,
    },
    /// Mirror a log a node serves (tlog-tiles over HTTP), fetching only what is new.
    #[command(
        after_help = "Example:\n  isnad audit sync http://10.1.2.3:7481 mirror/iq.moi.ahtd --verifier-key iq.moi.ahtd-log.pub\n\n\
Fetches URL/checkpoint and checks it under --verifier-key (and the witness\n\
quorum with --witness-key); fetches only the tiles and entry bundles DIR\n\
lacks; verifies what is new since DIR/checkpoint (consistency with it and the\n\
new entries), then replaces DIR/checkpoint. DIR is an export directory:\n\
`isnad audit verify DIR --previous OLD-CHECKPOINT` checks it again, and\n\
cross-check and report read it. A log that signed two inconsistent\n\
checkpoints (a fork) is reported and both checkpoints are kept as evidence in\n\
DIR/forks/. Exit status: 0 synced and verified, 1 usage, IO or network error,\n\
2 verification failed (nothing accepted), 3 a fork shown."
    )]
    Sync {
        /// Base URL the node serves its log on (its [log_http] listen address).
        url: String,
        /// The mirror directory (created if missing).
        dir: PathBuf,
        /// File holding the log's public verifier key, log.pub.
        #[arg(long, alias = "log-key")]
        verifier_key: PathBuf,
        #[command(flatten)]
        witness: crate::note::WitnessArgs,
    },
    /// Print a C2SP tlog-proof of inclusion for one entry of an export.
    #[command(
        after_help = "Example:\n  isnad audit prove export/ --index 42 > entry42.tlog-proof\n\n\
The entry bytes travel in the proof's `extra` line. Exit status: 0 proof\n\
printed, 1 usage or IO error (an index not below the export's size too),\n\
2 the export does not match its checkpoint."
    )]
    Prove {
        /// The export directory.
        dir: PathBuf,
        /// Zero-based entry index.
        #[arg(long)]
        index: u64,
    },
    /// Check a tlog-proof against the log key.
    #[command(
        after_help = "Example:\n  isnad audit verify-proof entry42.tlog-proof --verifier-key log.pub\n  \
isnad audit verify-proof entry42.tlog-proof --verifier-key log.pub --leaf-hash 3f2a…\n\n\
The entry is taken from --entry FILE (raw CBOR bytes) if given, else from\n\
the proof's `extra` line; with --leaf-hash only the entry's leaf hash\n\
(SHA-256 of 0x00 and the entry bytes, hex or base64) is proven, and the\n\
proof's extra line is ignored. Exit status: 0 verified, 1 usage or IO\n\
error, 2 verification failed."
    )]
    VerifyProof {
        /// The proof file.
        proof: PathBuf,
        /// File holding the log's public verifier key (formerly --log-key).
        #[arg(long, alias = "log-key")]
        verifier_key: PathBuf,
        /// The entry's raw CBOR bytes (default: the proof's extra data).
        #[arg(long, conflicts_with = "leaf_hash")]
        entry: Option<PathBuf>,
        /// The entry's leaf hash, 64 hex characters or base64, instead of the entry.
        #[arg(long)]
        leaf_hash: Option<String>,
    },
    /// Check fork evidence a witness recorded (spec/witness.md §5).
    #[command(
        after_help = "Example:\n  isnad audit verify-fork state/forks/3f2a….fork --verifier-key fr.mj.bepi-log.pub\n\n\
Exit status: 3 the file proves that the log signed two inconsistent\n\
checkpoints (a fork); 0 both checkpoints verify and are consistent (no\n\
fork); 2 the evidence does not verify (malformed, a checkpoint not signed\n\
by the key, or a bad proof that shows no fork); 1 usage or IO error."
    )]
    VerifyFork {
        /// The fork evidence file.
        file: PathBuf,
        /// File holding the log's public verifier key (formerly --log-key).
        #[arg(long, alias = "log-key")]
        verifier_key: PathBuf,
    },
    /// Pair the two ends of every exchange between two nodes' exports.
    #[command(
        name = "cross-check",
        after_help = "Example:\n  isnad audit cross-check exports/iq.moj.ca exports/fr.mj.bepi \\\n    \
--verifier-key-a keys/iq.moj.ca.pub --verifier-key-b keys/fr.mj.bepi.pub --json\n\n\
Verifies both exports (as `audit verify`), then matches sent/received and\n\
receipt entries by message id, envelope digest and the peer's log index, and\n\
lists findings (sent-not-received, receipt-index-mismatch, digest-mismatch,\n\
time anomalies beyond --skew, ...; spec/cross-check.md). Notices (an export\n\
taken while a message was in flight) do not fail the check.\n\
Exit status: 0 clean, 1 usage or IO error, 2 an export does not verify or\n\
there are findings."
    )]
    CrossCheck {
        /// Export directory of the first log (A).
        a: PathBuf,
        /// Export directory of the second log (B).
        b: PathBuf,
        /// Verifier key file of log A (formerly --log-key-a).
        #[arg(long, alias = "log-key-a")]
        verifier_key_a: PathBuf,
        /// Verifier key file of log B (formerly --log-key-b).
        #[arg(long, alias = "log-key-b")]
        verifier_key_b: PathBuf,
        /// Print the result as JSON (spec/cross-check.md §6).
        #[arg(long)]
        json: bool,
        /// Clock-skew tolerance between and within the logs, in seconds.
        #[arg(long, default_value_t = isnad_log::crosscheck::DEFAULT_SKEW_MS / 1000)]
        skew: u64,
        #[command(flatten)]
        witness: crate::note::WitnessArgs,
    },
    /// Write a self-contained HTML report over one or more exports.
    #[command(
        after_help = "Example:\n  isnad audit report exports/iq.moj.ca exports/fr.mj.bepi \\\n    \
--verifier-key keys/iq.moj.ca.pub --verifier-key keys/fr.mj.bepi.pub --out report.html\n\n\
One --verifier-key per directory, in the same order. Every export is verified;\n\
every two verified logs of different agencies that exchanged messages are\n\
cross-checked. The verdict comes first, on the page and on stdout, with the\n\
trusted keys. The page has inline CSS and SVG only: it opens in a browser\n\
with no network. Exit status: 0 written and all clean, 1 usage or IO error,\n\
2 written, but an export does not verify or a cross-check has findings."
    )]
    Report {
        /// Export directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Verifier key files, one per directory, in order (formerly --log-key).
        #[arg(long = "verifier-key", alias = "log-key", required = true)]
        verifier_keys: Vec<PathBuf>,
        /// Output HTML file.
        #[arg(long)]
        out: PathBuf,
        /// Title of the page.
        #[arg(long, default_value = "Isnad audit report")]
        title: String,
        /// Clock-skew tolerance for the cross-checks, in seconds.
        #[arg(long, default_value_t = isnad_log::crosscheck::DEFAULT_SKEW_MS / 1000)]
        skew: u64,
        #[command(flatten)]
        witness: crate::note::WitnessArgs,
    },
    /// TEST TOOL (hidden): append synthetic entries, printing each durable index.
    #[command(hide = true)]
    AppendTest {
        /// The log directory.
        #[arg(long)]
        log: PathBuf,
        /// Entries per thread (0 = until killed).
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Appending threads.
        #[arg(long, default_value_t = 1)]
        threads: u64,
    },
}

pub(crate) fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Keygen { name, out } => keygen(&name, &out),
        AuditCommand::Export {
            config,
            latest,
            log,
            signer_key,
            out,
        } => match (config, log, signer_key) {
            (Some(config), _, _) => export_live(config, latest, &out),
            (None, Some(log), Some(key)) => export(&log, &key, &out),
            _ => {
                anyhow::bail!(
                    "give --config (running node) or --log and --signer-key (stopped node)"
                )
            }
        },
        AuditCommand::Verify {
            dir,
            verifier_key,
            previous,
            witness,
        } => verify(&dir, &verifier_key, previous.as_deref(), &witness),
        AuditCommand::Sync {
            url,
            dir,
            verifier_key,
            witness,
        } => sync::sync(&url, &dir, &read_verifier(&verifier_key)?, &witness),
        AuditCommand::Prove { dir, index } => prove(&dir, index),
        AuditCommand::VerifyProof {
            proof,
            verifier_key,
            entry,
            leaf_hash,
        } => {
            let leaf = match (entry, leaf_hash) {
                (Some(e), _) => ProvenLeaf::Entry(
                    std::fs::read(&e).with_context(|| format!("cannot read {}", e.display()))?,
                ),
                (None, Some(h)) => ProvenLeaf::Hash(parse_leaf_hash(&h)?),
                (None, None) => ProvenLeaf::Extra,
            };
            verify_proof(&proof, &verifier_key, leaf)
        }
        AuditCommand::VerifyFork { file, verifier_key } => {
            crate::witness::verify_fork(&file, &read_verifier(&verifier_key)?)
        }
        AuditCommand::CrossCheck {
            a,
            b,
            verifier_key_a,
            verifier_key_b,
            json,
            skew,
            witness,
        } => crosscheck::cross_check(
            &a,
            &b,
            &verifier_key_a,
            &verifier_key_b,
            json,
            skew,
            &witness,
        ),
        AuditCommand::Report {
            dirs,
            verifier_keys,
            out,
            title,
            skew,
            witness,
        } => crosscheck::report(&dirs, &verifier_keys, &out, &title, skew, &witness),
        AuditCommand::AppendTest {
            log,
            count,
            threads,
        } => append_test(&log, count, threads),
    }
}

fn keygen(name: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let key = SignerKey::generate(name, &ring::rand::SystemRandom::new())
        .with_context(|| format!("cannot create a log key named {name:?}"))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut secret = key.to_secret_string();
    secret.push('\n');
    write_new(&out.join(LOG_KEY), &secret, true)?;
    write_new(
        &out.join(LOG_PUB),
        &(key.verifier().to_string() + "\n"),
        false,
    )?;
    println!("{}", key.verifier());
    Ok(ExitCode::SUCCESS)
}

fn export(log_dir: &Path, key_file: &Path, out: &Path) -> anyhow::Result<ExitCode> {
    let key = read_signer(key_file)?;
    if !log_dir.join("entries").is_file() {
        anyhow::bail!(
            "{} is not an audit log directory (no entries file)",
            log_dir.display()
        );
    }
    let (log, report) =
        Log::open(log_dir).with_context(|| format!("cannot open log {}", log_dir.display()))?;
    if report.truncated_bytes > 0 {
        eprintln!(
            "recovered: cut {} bytes after the last complete record (preallocated space, or an incomplete final record that was never acknowledged)",
            report.truncated_bytes
        );
    }
    let s = log.export(out, &key).context("export failed")?;
    println!(
        "exported {} ({}, {}) to {}",
        crate::out::count(s.size, "entry", "entries"),
        crate::out::count(s.tiles, "tile", "tiles"),
        crate::out::count(s.bundles, "entry bundle", "entry bundles"),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `isnad audit export --config`: the running node writes the export.
fn export_live(config: PathBuf, latest: bool, out: &Path) -> anyhow::Result<ExitCode> {
    // The CLI runs on the node's machine (the API is loopback only), so a
    // relative --out means relative to here.
    let out =
        std::path::absolute(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let client = crate::client::Client::with_timeout(
        &crate::client::NodeRef { config },
        std::time::Duration::from_secs(3600),
    )?;
    let body = serde_json::json!({
        "out": out,
        "at": if latest { "latest" } else { "new" },
    });
    let v = client.json("POST", "/v1/audit/export", Some(body))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    println!(
        "exported {} ({}, {}, {}) to {}",
        crate::out::count(n("size"), "entry", "entries"),
        crate::out::count(n("tiles"), "tile", "tiles"),
        crate::out::count(n("bundles"), "entry bundle", "entry bundles"),
        crate::out::count(n("cosignatures"), "cosignature", "cosignatures"),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(
    dir: &Path,
    key_file: &Path,
    previous: Option<&Path>,
    witness: &crate::note::WitnessArgs,
) -> anyhow::Result<ExitCode> {
    let key = read_verifier(key_file)?;
    let witnesses = witness.load()?;
    let prev = previous
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let tty = std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let mut progress = |done: u64, total: u64| {
        if !tty || total < 100_000 {
            return;
        }
        let pct = done * 100 / total;
        if pct != last_pct {
            last_pct = pct;
            let bar = "#".repeat((pct / 4) as usize);
            eprint!("\r[{bar:<25}] {pct:>3}% {done}/{total} entries");
            if done == total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        }
    };
    let report = match isnad_log::verify_export(dir, &key, prev.as_deref(), &mut progress) {
        Ok(r) => r,
        Err(AuditError::Directory { path, source }) => {
            anyhow::bail!("cannot read export directory {}: {source}", path.display())
        }
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::from(VERIFY_FAILED));
        }
    };
    let cp = &report.checkpoint;
    if report.is_ok() {
        let witnessed = match &witnesses {
            Some((keys, quorum)) => {
                match crate::note::check_export(dir, &key, cp, keys, *quorum)? {
                    Ok(w) => Some(w),
                    Err(e) => {
                        println!("FAILED: checkpoint: {e}");
                        println!(
                            "verification FAILED: the checkpoint of {} (origin {}) lacks its witness quorum",
                            crate::out::count(cp.size, "entry", "entries"),
                            cp.origin
                        );
                        return Ok(ExitCode::from(VERIFY_FAILED));
                    }
                }
            }
            None => None,
        };
        println!(
            "OK: {}, origin {}, root {}",
            crate::out::count(cp.size, "entry", "entries"),
            cp.origin,
            cp.root.to_base64()
        );
        if let Some(p) = &report.previous {
            println!(
                "consistent with the previous checkpoint of {}; checked the {} from entry {} on",
                crate::out::count(p.size, "entry", "entries"),
                crate::out::count(cp.size - report.checked_from, "entry", "entries"),
                report.checked_from
            );
        }
        if let Some(w) = &witnessed {
            println!("{}", crate::note::describe(w));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        println!("FAILED: {p}");
    }
    if report.problem_count > report.problems.len() as u64 {
        println!(
            "… and {} more",
            crate::out::count(
                report.problem_count - report.problems.len() as u64,
                "problem",
                "problems"
            )
        );
    }
    println!(
        "verification FAILED: {} in the export of {} (origin {})",
        crate::out::count(report.problem_count, "problem", "problems"),
        crate::out::count(cp.size, "entry", "entries"),
        cp.origin
    );
    Ok(ExitCode::from(VERIFY_FAILED))
}

fn prove(dir: &Path, index: u64) -> anyhow::Result<ExitCode> {
    match isnad_log::prove_from_export(dir, index) {
        Ok(p) => {
            print!("{}", p.to_text());
            Ok(ExitCode::SUCCESS)
        }
        Err(AuditError::CheckpointFile { path, source }) => {
            anyhow::bail!("cannot read {}: {source}", path.display())
        }
        Err(e @ AuditError::NoSuchEntry { .. }) => anyhow::bail!(e),
        Err(e) => {
            eprintln!("FAILED: {e}");
            Ok(ExitCode::from(VERIFY_FAILED))
        }
    }
}

/// What `verify-proof` proves is in the log.
enum ProvenLeaf {
    /// The entry in the proof's extra line.
    Extra,
    /// Entry bytes given with --entry.
    Entry(Vec<u8>),
    /// Only a leaf hash, given with --leaf-hash.
    Hash(isnad_log::Hash),
}

/// A leaf hash as 64 hex characters or 44 base64 characters.
fn parse_leaf_hash(s: &str) -> anyhow::Result<isnad_log::Hash> {
    let s = s.trim();
    let h = if s.len() == 64 {
        isnad_log::Hash::from_hex(s)
    } else {
        isnad_log::Hash::from_base64(s)
    };
    h.map_err(|_| {
        anyhow::anyhow!("--leaf-hash {s:?} is not a SHA-256 hash (64 hex or 44 base64 characters)")
    })
}

fn verify_proof(proof: &Path, key_file: &Path, leaf: ProvenLeaf) -> anyhow::Result<ExitCode> {
    let key = read_verifier(key_file)?;
    let text = std::fs::read(proof).with_context(|| format!("cannot read {}", proof.display()))?;
    let parsed = match TlogProof::parse(&text) {
        Ok(p) => p,
        Err(e) => {
            println!("FAILED: {e}");
            return Ok(ExitCode::from(VERIFY_FAILED));
        }
    };
    let leaf = match (leaf, &parsed.extra) {
        (ProvenLeaf::Hash(h), _) => {
            return Ok(match parsed.verify_leaf_hash(&h, &key) {
                Ok(cp) => {
                    println!(
                        "OK: leaf hash {} is entry {} of {} at size {}",
                        h.to_base64(),
                        parsed.index,
                        cp.origin,
                        cp.size
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("FAILED: {e}");
                    ExitCode::from(VERIFY_FAILED)
                }
            });
        }
        (ProvenLeaf::Entry(e), Some(x)) if &e != x => {
            println!("FAILED: --entry differs from the entry in the proof's extra line");
            return Ok(ExitCode::from(VERIFY_FAILED));
        }
        (ProvenLeaf::Entry(e), _) => e,
        (ProvenLeaf::Extra, Some(x)) => x.clone(),
        (ProvenLeaf::Extra, None) => anyhow::bail!(
            "the proof carries no entry; pass it with --entry FILE or --leaf-hash HASH"
        ),
    };
    match parsed.verify(&leaf, &key) {
        Ok(cp) => {
            println!(
                "OK: entry {} is in {} at size {}",
                parsed.index, cp.origin, cp.size
            );
            match Entry::decode(&leaf) {
                Ok(e) => println!(
                    "entry: seq {} time {} event {}{}",
                    e.seq,
                    crate::out::utc(e.time_ms),
                    e.event,
                    e.message_id
                        .map(|m| format!(" message {m}"))
                        .unwrap_or_default()
                ),
                Err(e) => println!("warning: the proven entry does not decode: {e}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::from(VERIFY_FAILED))
        }
    }
}

/// Test tool: appends `count` entries per thread (forever if 0) and prints
/// each index once `append` returned, i.e. once it is durable.
fn append_test(log_dir: &Path, count: u64, threads: u64) -> anyhow::Result<ExitCode> {
    let (log, _) =
        Log::open(log_dir).with_context(|| format!("cannot open log {}", log_dir.display()))?;
    let log = std::sync::Arc::new(log);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut i = 0u64;
                while count == 0 || i < count {
                    let mut e = Entry::new(EventType::LocalAccess, t * 1_000_000_000 + i);
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&t.to_be_bytes());
                    id[8..].copy_from_slice(&i.to_be_bytes());
                    e.message_id = Some(isnad_envelope::MessageId::from_bytes(id));
                    let index = log.append(e)?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{index}")?;
                    out.flush()?;
                    i += 1;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("an appending thread panicked"))??;
    }
    Ok(ExitCode::SUCCESS)
}

fn read_signer(path: &Path) -> anyhow::Result<SignerKey> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read log key {}", path.display()))?;
    SignerKey::parse(s.trim())
        .with_context(|| format!("{} is not a log signer key", path.display()))
}

fn read_verifier(path: &Path) -> anyhow::Result<VerifierKey> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read verifier key {}", path.display()))?;
    VerifierKey::parse(s.trim())
        .with_context(|| format!("{} is not a verifier key (name+keyid+key)", path.display()))
}

fn write_new(path: &Path, contents: &str, secret: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
