//! `isnad note verify`: any C2SP signed note against trusted keys, and the
//! `--witness-key`/`--witness-quorum` options the audit commands share
//! (spec/witness.md §9).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::note::{self, VerifierKey};
use isnad_log::quorum::{check_witness_quorum, QuorumCheck, QuorumError};
use isnad_log::Checkpoint;

/// Signed-note commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum NoteCommand {
    /// Verify a C2SP signed note (a checkpoint of any log, Isnad's or another's).
    #[command(after_help = "Examples:\n  \
isnad note verify checkpoint --key keys/iq.moj.ca-log.pub\n  \
isnad note verify checkpoint --key 'sum.golang.org+033de0ae+Ac4z…' --key w1.pub --quorum 2\n\n\
Each --key is a verifier key (name+keyid+base64) or a file holding one; a key\n\
of type 0x01 checks a note signature, a key of type 0x04 a tlog-cosignature.\n\
A line by a given key that does not verify fails the note; lines by other\n\
keys are ignored and counted. --quorum K requires valid signatures by at least\n\
K of the given keys (default 1). --text prints only the verified note text.\n\
Exit status: 0 verified, 1 usage or IO error, 2 verification failed.")]
    Verify {
        /// The note file.
        file: PathBuf,
        /// A trusted verifier key, or a file holding one (repeatable).
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        /// Valid signatures required, by distinct given keys.
        #[arg(long, default_value_t = 1)]
        quorum: usize,
        /// Print only the verified text (nothing if it does not verify).
        #[arg(long)]
        text: bool,
    },
}

pub(crate) fn run(cmd: NoteCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        NoteCommand::Verify {
            file,
            keys,
            quorum,
            text,
        } => verify(&file, &keys, quorum, text),
    }
}

/// A verifier key given on the command line: the key itself, or a file.
pub(crate) fn read_key(arg: &str) -> anyhow::Result<VerifierKey> {
    if let Ok(k) = VerifierKey::parse(arg.trim()) {
        return Ok(k);
    }
    let s = std::fs::read_to_string(arg).with_context(|| {
        format!("{arg} is neither a verifier key (name+keyid+key) nor a readable file")
    })?;
    VerifierKey::parse(s.trim())
        .with_context(|| format!("{arg} does not hold a verifier key (name+keyid+key)"))
}

fn read_note(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = Vec::new();
    f.take(note::MAX_NOTE_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(buf)
}

fn verify(
    file: &Path,
    keys: &[String],
    quorum: usize,
    text_only: bool,
) -> anyhow::Result<ExitCode> {
    let mut keys: Vec<VerifierKey> = keys
        .iter()
        .map(|k| read_key(k))
        .collect::<anyhow::Result<_>>()?;
    // The same key given twice is one key (spec/witness.md §9, rule 3).
    let mut seen = std::collections::HashSet::new();
    keys.retain(|k| seen.insert((k.name().to_owned(), k.key_id())));
    if quorum == 0 || quorum > keys.len() {
        anyhow::bail!(
            "--quorum must be between 1 and the number of distinct --key keys ({})",
            keys.len()
        );
    }
    let bytes = read_note(file)?;
    let verified = match note::open(&bytes, &keys) {
        Ok(v) => v,
        Err(e) => {
            if !text_only {
                println!("FAILED: {}: {e}", file.display());
            }
            return Ok(ExitCode::from(crate::exit::FAILED));
        }
    };
    if verified.signatures.len() < quorum {
        if !text_only {
            println!(
                "FAILED: {}: signed by {} of the given keys, quorum {quorum}",
                file.display(),
                verified.signatures.len()
            );
        }
        return Ok(ExitCode::from(crate::exit::FAILED));
    }
    if text_only {
        print!("{}", verified.text);
        return Ok(ExitCode::SUCCESS);
    }
    for s in &verified.signatures {
        match s.timestamp {
            Some(ts) => println!(
                "cosigned by {}+{:08x} at {} (tlog-cosignature)",
                s.name,
                s.key_id,
                isnad_log::report::utc(ts.saturating_mul(1000))
            ),
            None => println!("signed by {}+{:08x} (Ed25519)", s.name, s.key_id),
        }
    }
    if verified.unknown_signatures > 0 {
        println!(
            "ignored {} by keys not given",
            crate::out::count(
                verified.unknown_signatures as u64,
                "signature line",
                "signature lines"
            )
        );
    }
    if let Ok(cp) = Checkpoint::parse_body(&verified.text) {
        println!(
            "checkpoint: origin {}, {}, root {}",
            cp.origin,
            crate::out::count(cp.size, "entry", "entries"),
            cp.root.to_base64()
        );
    }
    println!(
        "OK: {} verified ({} of {} given keys)",
        file.display(),
        verified.signatures.len(),
        keys.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// The witness options of `audit verify`, `cross-check` and `report`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WitnessArgs {
    /// A trusted witness cosigner key (type 0x04), or a file holding one
    /// (repeatable). The export's checkpoint must carry a quorum of valid
    /// cosignatures by these keys.
    #[arg(long = "witness-key")]
    pub(crate) witness_keys: Vec<String>,
    /// Cosignatures required, by distinct --witness-key keys (default: all of them).
    #[arg(long, requires = "witness_keys")]
    pub(crate) witness_quorum: Option<usize>,
}

impl WitnessArgs {
    /// The trusted keys and quorum, or `None` when no witness key was given.
    pub(crate) fn load(&self) -> anyhow::Result<Option<(Vec<VerifierKey>, usize)>> {
        if self.witness_keys.is_empty() {
            return Ok(None);
        }
        let keys: Vec<VerifierKey> = self
            .witness_keys
            .iter()
            .map(|k| read_key(k))
            .collect::<anyhow::Result<_>>()?;
        if let Some(k) = keys
            .iter()
            .find(|k| k.key_type() != note::TYPE_COSIGNATURE_V1)
        {
            anyhow::bail!(
                "--witness-key {}+{:08x} is not a witness cosigner key (type 0x04)",
                k.name(),
                k.key_id()
            );
        }
        let quorum = self.witness_quorum.unwrap_or(0);
        if quorum > keys.len() {
            anyhow::bail!(
                "--witness-quorum {quorum} is larger than the {} --witness-key options",
                keys.len()
            );
        }
        Ok(Some((keys, quorum)))
    }
}

/// Checks the witness quorum on the checkpoint of the export in `dir`,
/// which `verified` says was verified under `log_key`: the file is read
/// again and must be that same checkpoint.
pub(crate) fn check_export(
    dir: &Path,
    log_key: &VerifierKey,
    verified: &Checkpoint,
    keys: &[VerifierKey],
    quorum: usize,
) -> anyhow::Result<Result<QuorumCheck, QuorumError>> {
    let bytes = read_note(&dir.join(isnad_log::tiles::CHECKPOINT_PATH))?;
    let result = check_witness_quorum(&bytes, log_key, keys, quorum);
    if let Ok(w) = &result {
        if &w.checkpoint != verified {
            anyhow::bail!(
                "the checkpoint of {} changed while it was being verified",
                dir.display()
            );
        }
    }
    Ok(result)
}

/// One line saying who cosigned.
pub(crate) fn describe(w: &QuorumCheck) -> String {
    let names: Vec<&str> = w.cosigned_by.iter().map(|c| c.name.as_str()).collect();
    format!(
        "witnessed: cosigned by {} of {} trusted witnesses (quorum {}): {}",
        w.cosigned_by.len(),
        w.listed,
        w.quorum,
        names.join(", ")
    )
}
