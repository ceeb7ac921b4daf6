//! Witnessing (spec/witness.md), both roles:
//!
//! * as a **witness**, the node answers `add-checkpoint` requests from
//!   federated partners: the origin must be the TLS peer's `<agency>/audit`
//!   log, the decision is [`isnad_log::witness::add_checkpoint`], made inside
//!   one redb write transaction and committed durably before the answer; a
//!   proven fork is refused, its evidence written to `<state>/forks/`,
//!   logged at error level, counted and appended to the audit log;
//! * as a **log operator**, after each checkpoint it asks the configured
//!   witnesses to cosign it, with a consistency proof from the size each one
//!   last cosigned (retrying once per conflict with the size the witness
//!   reports), verifies and stores their cosignatures and logs
//!   `checkpoint-cosigned`; the checkpoint is witnessed when k of n did.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use isnad_envelope::AgencyId;
use isnad_log::witness::{add_checkpoint, AddCheckpoint, ForkEvidence, WitnessError, Witnessed};
use isnad_log::{note, Entry, EventType, SignedCheckpoint};
use isnad_wire::{Op, Response, WitnessCode};

use super::inner::Inner;
use super::types::now;
use crate::exchange;
use crate::store::witness::WitnessSubmitted;
use crate::store::StoreError;
use crate::witnessing::{Latest, OwnCheckpoint, WitnessStatus, WitnessedLog};

/// Add-checkpoint attempts for one checkpoint and witness (conflicts retried).
const MAX_ATTEMPTS: usize = 3;

// ---------------------------------------------------------------------------
// Witness role

fn refusal(code: WitnessCode, detail: &str) -> Response {
    Response::WitnessRefused {
        code,
        known_size: None,
        detail: Some(detail.to_owned()),
    }
}

/// Answers one add-checkpoint request from `peer`.
pub(super) async fn serve(inner: &Inner, peer: &AgencyId, payload: Vec<u8>) -> Response {
    let response = decide(inner, peer, payload).await;
    if !matches!(response, Response::Cosigned(_)) {
        inner.metrics.witness_refused.inc();
    }
    response
}

async fn decide(inner: &Inner, peer: &AgencyId, payload: Vec<u8>) -> Response {
    let key = match &inner.witness.key {
        Some(k) if inner.config.witness.serve => Arc::clone(k),
        _ => {
            return refusal(
                WitnessCode::UnknownLog,
                "this node does not serve as a witness",
            )
        }
    };
    let req = match AddCheckpoint::parse(&payload) {
        Ok(r) => r,
        Err(e) => return refusal(WitnessCode::BadRequest, &e.to_string()),
    };
    let Some(log_key) = inner.directory.log_key(peer) else {
        return refusal(
            WitnessCode::UnknownLog,
            "the directory lists no log-key for your agency",
        );
    };
    let (secs, ms) = now();
    let origin = log_key.name().to_owned();
    // Read, decide and write in one transaction: concurrent requests for one
    // origin run one after another on the store's writer thread, and the new
    // state is durable before anyone sees the cosignature.
    let decided = inner
        .store
        .decide_witnessed(origin, move |note| {
            let stored = note.map(stored_state).transpose()?;
            let r = add_checkpoint(&key, &log_key, stored.as_ref(), &req, secs);
            let new = match &r {
                Ok(c) if stored.as_ref().map(|s| &s.checkpoint) != Some(&c.state.checkpoint) => {
                    Some(c.state.note.clone())
                }
                _ => None,
            };
            Ok((r, new))
        })
        .await;
    match decided {
        Err(e) => {
            tracing::error!(error = %e, "cannot record witness state");
            refusal(WitnessCode::Unavailable, "try again later")
        }
        Ok(Ok(c)) => {
            inner.metrics.witness_cosigned.inc();
            let cp = &c.state.checkpoint;
            let e = exchange::witness_cosigned(peer, &cp.origin, cp.size, &cp.root.to_base64(), ms);
            if let Err(err) = inner.append(e).await {
                tracing::error!(error = %err, "could not log a witness cosignature");
            }
            Response::Cosigned(c.cosignature.into_bytes())
        }
        Ok(Err(WitnessError::Conflict { known_size })) => Response::WitnessRefused {
            code: WitnessCode::Conflict,
            known_size: Some(known_size),
            detail: None,
        },
        Ok(Err(WitnessError::Fork(evidence))) => {
            record_fork(inner, peer, &evidence, ms).await;
            refusal(
                WitnessCode::Inconsistent,
                "the checkpoint contradicts one this witness cosigned; fork evidence recorded",
            )
        }
        Ok(Err(WitnessError::BadProof)) => refusal(
            WitnessCode::Inconsistent,
            "the consistency proof does not verify",
        ),
        Ok(Err(WitnessError::Unauthentic(detail))) => {
            tracing::info!(%peer, %detail, "add-checkpoint: checkpoint signature refused");
            Response::WitnessRefused {
                code: WitnessCode::Unauthentic,
                known_size: None,
                detail: None,
            }
        }
        Ok(Err(e @ WitnessError::UnknownLog { .. })) => {
            refusal(WitnessCode::UnknownLog, &e.to_string())
        }
        Ok(Err(WitnessError::Crypto)) => refusal(WitnessCode::Unavailable, "try again later"),
        Ok(Err(e)) => refusal(WitnessCode::BadRequest, &e.to_string()),
    }
}

fn stored_state(note: &str) -> Result<Witnessed, StoreError> {
    Witnessed::from_stored_note(note).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Writes the evidence (once per distinct evidence), raises the alert.
async fn record_fork(inner: &Inner, peer: &AgencyId, evidence: &ForkEvidence, ms: u64) {
    let text = evidence.to_text();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let name = format!("{}.fork", hex::encode(&digest.as_ref()[..16]));
    let path = inner.witness.forks_dir.join(&name);
    let dir = inner.witness.forks_dir.clone();
    let file = path.clone();
    let written = tokio::task::spawn_blocking(move || write_durably(&dir, &file, text.as_bytes()))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
    tracing::error!(
        %peer,
        evidence = %path.display(),
        what = %evidence.summary(),
        "FORK: a partner's audit log signed a checkpoint inconsistent with one this node witnessed"
    );
    match written {
        Ok(false) => return, // the same evidence was recorded before
        Ok(true) => {}
        Err(e) => tracing::error!(error = %e, "cannot write fork evidence"),
    }
    inner.metrics.witness_forks.inc();
    let e = exchange::fork_detected(
        peer,
        evidence.summary(),
        name,
        &hex::encode(digest.as_ref()),
        ms,
    );
    if let Err(err) = inner.append(e).await {
        tracing::error!(error = %err, "could not log fork evidence");
    }
}

/// Creates `file` with `bytes`, fsyncs it and its directory; `false` if it existed.
fn write_durably(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(true)
}

// ---------------------------------------------------------------------------
// Log-operator role

/// Called after each signed checkpoint: resets the collected cosignatures
/// for a new note and submits it to the configured witnesses in the background.
pub(super) fn after_checkpoint(inner: &Arc<Inner>, signed: &SignedCheckpoint) {
    if let Ok(mut l) = inner.witness.latest.lock() {
        if l.note.as_deref() != Some(signed.note.as_str()) {
            *l = Latest {
                note: Some(signed.note.clone()),
                size: signed.checkpoint.size,
                cosignatures: BTreeMap::new(),
            };
        }
    }
    if inner.config.witness.witnesses.is_empty() {
        return;
    }
    let task = Arc::clone(inner);
    let note = signed.note.clone();
    let size = signed.checkpoint.size;
    inner.spawn(async move {
        let inner = task;
        let _one_at_a_time = inner.witness.submitting.lock().await;
        let current = inner
            .witness
            .latest
            .lock()
            .map(|l| l.note.as_deref() == Some(note.as_str()))
            .unwrap_or(false);
        if !current {
            return; // a newer checkpoint was signed meanwhile; it is submitted instead
        }
        for w in inner.config.witness.witnesses.clone() {
            if let Err(e) = submit(&inner, &w, &note, size).await {
                tracing::warn!(witness = %w, size, error = %e, "witness did not cosign our checkpoint");
            }
        }
    });
}

async fn submit(inner: &Inner, witness: &AgencyId, note: &str, size: u64) -> Result<(), String> {
    let peer = inner
        .directory
        .peer(witness)
        .ok_or("it is not in any trusted directory")?;
    let wkey = inner
        .directory
        .witness_key(witness)
        .ok_or("its directory entry has no witness-key")?;
    let mut old = inner
        .store
        .witness_submitted(witness)
        .map_err(|e| format!("stored witness record unreadable: {e}"))?
        .map_or(0, |s| s.size);
    for _ in 0..MAX_ATTEMPTS {
        if old > size {
            return Err(format!(
                "it cosigned size {old} of our log, more than this checkpoint's {size}: \
                 was the log restored from an old backup?"
            ));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            let log = Arc::clone(&inner.audit);
            tokio::task::spawn_blocking(move || log.consistency_proof(old, size))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        let req = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note.to_owned(),
        };
        let answer = inner
            .exchange(
                witness,
                &peer,
                Op::AddCheckpoint,
                req.to_text().into_bytes(),
            )
            .await;
        let answer = answer?;
        match answer {
            Response::Cosigned(lines) => {
                let lines = String::from_utf8(lines).map_err(|_| "cosignature is not UTF-8")?;
                let prefix = format!("\u{2014} {} ", wkey.name());
                let line: String = lines
                    .split_inclusive('\n')
                    .filter(|l| l.starts_with(&prefix))
                    .collect();
                let timestamp = note::verify_cosignature(format!("{note}{line}").as_bytes(), &wkey)
                    .map_err(|e| format!("invalid cosignature: {e}"))?;
                return record_cosignature(inner, witness, note, size, line, timestamp).await;
            }
            Response::WitnessRefused {
                code: WitnessCode::Conflict,
                known_size: Some(k),
                ..
            } => old = k,
            Response::WitnessRefused { code, detail, .. } => {
                return Err(format!(
                    "refused: {code}{}",
                    detail.map(|d| format!(": {d}")).unwrap_or_default()
                ))
            }
            other => return Err(format!("unexpected answer {other:?}")),
        }
    }
    Err("it kept reporting another size (conflict)".into())
}

async fn record_cosignature(
    inner: &Inner,
    witness: &AgencyId,
    note: &str,
    size: u64,
    line: String,
    timestamp: u64,
) -> Result<(), String> {
    let rec = WitnessSubmitted {
        size,
        note: note.to_owned(),
        cosignature: line.clone(),
    };
    inner
        .store
        .set_witness_submitted(witness, rec)
        .await
        .map_err(|e| e.to_string())?;
    let e = exchange::checkpoint_cosigned(&witness.to_string(), size, timestamp, now().1);
    inner.append(e).await.map_err(|e| e.to_string())?;
    let required = inner.config.witness.required();
    if let Ok(mut l) = inner.witness.latest.lock() {
        if l.note.as_deref() == Some(note) {
            l.cosignatures.insert(witness.clone(), line);
            if l.cosignatures.len() >= required {
                inner.metrics.witnessed_size.set(l.size);
            }
        }
    }
    tracing::info!(%witness, size, "checkpoint cosigned");
    Ok(())
}

/// Whether the entries `from..to` of the log are all `checkpoint-cosigned`
/// records (a short run of them; anything unreadable counts as real growth).
pub(super) fn only_cosignatures(log: &isnad_log::Log, from: u64, to: u64) -> bool {
    from < to
        && to - from <= 256
        && (from..to).all(|i| {
            log.entry_bytes(i)
                .ok()
                .and_then(|b| Entry::decode(&b).ok())
                .is_some_and(|e| e.event == EventType::CheckpointCosigned)
        })
}

/// The witnessing status for the API and CLI.
pub(super) fn status(inner: &Inner) -> Result<WitnessStatus, StoreError> {
    let mut witnessed = Vec::new();
    for (origin, note) in inner.store.witnessed_logs()? {
        let s = stored_state(&note)?;
        witnessed.push(WitnessedLog {
            origin,
            size: s.checkpoint.size,
            root: s.checkpoint.root.to_base64(),
        });
    }
    let mut forks: Vec<String> = std::fs::read_dir(&inner.witness.forks_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "fork"))
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    forks.sort();
    let cfg = &inner.config.witness;
    let (size, cosigned_by) = inner
        .witness
        .latest
        .lock()
        .map(|l| {
            (
                l.size,
                l.cosignatures
                    .keys()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default();
    Ok(WitnessStatus {
        serving: cfg.serve && inner.witness.key.is_some(),
        witness_key: inner.witness.key.as_ref().map(|k| k.verifier().to_string()),
        witnessed,
        forks,
        own: OwnCheckpoint {
            size,
            witnessed: !cfg.witnesses.is_empty() && cosigned_by.len() >= cfg.required(),
            cosigned_by,
            witnesses: cfg.witnesses.iter().map(|a| a.to_string()).collect(),
            quorum: cfg.required(),
        },
    })
}
