//! `isnad witness status` and `isnad audit verify-fork`: the witnessing
//! state of a running node, and the independent check of fork evidence
//! (spec/witness.md).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use isnad_log::witness::{ForkError, ForkEvidence};
use isnad_log::VerifierKey;
use serde_json::Value;

use crate::client::{Client, NodeRef};

/// `isnad audit verify-fork` exit status: the evidence verifies and shows a
/// fork (verified, with a warning).
pub(crate) const FORK_PROVEN: u8 = crate::exit::WARNING;
/// `isnad audit verify-fork` exit status: both checkpoints verify and are
/// consistent, so the log did not fork.
pub(crate) const NO_FORK: u8 = crate::exit::OK;
/// `isnad audit verify-fork` exit status: the evidence does not verify.
pub(crate) const EVIDENCE_BAD: u8 = crate::exit::FAILED;
/// `isnad witness status` exit status when fork evidence is recorded.
pub(crate) const FORK_RECORDED: u8 = crate::exit::WARNING;

/// `isnad witness …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WitnessCommand {
    /// What this node witnesses, its own checkpoint's cosignatures, and fork evidence.
    #[command(
        after_help = "Example:\n  isnad witness status --config /var/lib/isnad/config.toml\n\n\
Exit status: 0 no fork evidence recorded, 3 fork evidence recorded (check each\n\
file with `isnad audit verify-fork FILE --verifier-key KEY`), 1 the node cannot be reached."
    )]
    Status {
        #[command(flatten)]
        node: NodeRef,
        /// Print JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(cmd: WitnessCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WitnessCommand::Status { node, json } => status(&node, json),
    }
}

fn status(node: &NodeRef, json: bool) -> anyhow::Result<ExitCode> {
    let v = Client::new(node)?.json("GET", "/v1/witness", None)?;
    let forks = v["forks"].as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let own = &v["own"];
        println!(
            "own checkpoint: size {}, cosigned by {} of {} witnesses (quorum {}): {}",
            own["size"],
            own["cosigned_by"].as_array().map_or(0, Vec::len),
            own["witnesses"].as_array().map_or(0, Vec::len),
            own["quorum"],
            if own["witnessed"] == Value::Bool(true) {
                "witnessed"
            } else {
                "NOT witnessed"
            }
        );
        println!(
            "serving as a witness: {}",
            if v["serving"] == Value::Bool(true) {
                "yes"
            } else {
                "no"
            }
        );
        for w in v["witnessed"].as_array().into_iter().flatten() {
            println!(
                "  witnessed {} at size {} (root {})",
                w["origin"].as_str().unwrap_or("?"),
                w["size"],
                w["root"].as_str().unwrap_or("?")
            );
        }
        for f in &forks {
            println!("FORK EVIDENCE: {}", f.as_str().unwrap_or("?"));
        }
    }
    Ok(if forks.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FORK_RECORDED)
    })
}

/// `isnad audit verify-fork FILE --verifier-key KEY`: exit 3 fork proven,
/// 0 consistent (no fork), 2 the evidence does not verify.
pub(crate) fn verify_fork(file: &Path, log_key: &VerifierKey) -> anyhow::Result<ExitCode> {
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let evidence = match ForkEvidence::parse(&data) {
        Ok(e) => e,
        Err(e) => {
            println!("FAILED: {} is not fork evidence: {e}", file.display());
            return Ok(ExitCode::from(EVIDENCE_BAD));
        }
    };
    match evidence.verify(log_key) {
        Ok(proof) => {
            println!("FORK PROVEN for {}: {}", log_key.name(), proof.describe());
            Ok(ExitCode::from(FORK_PROVEN))
        }
        Err(e @ ForkError::Consistent) => {
            println!("OK: no fork: {e}");
            Ok(ExitCode::from(NO_FORK))
        }
        Err(e) => {
            println!(
                "FAILED: {} does not verify under {}+{:08x}: {e}",
                file.display(),
                log_key.name(),
                log_key.key_id()
            );
            Ok(ExitCode::from(EVIDENCE_BAD))
        }
    }
}
