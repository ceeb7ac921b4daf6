//! Witnessing over real QUIC on loopback (spec/witness.md): B and C witness
//! A; A's checkpoint gets cosigned by both (2 of 2); then A rewrites its
//! history under the same log key and offers it to the witnesses: they
//! refuse, record fork evidence that verifies independently, and count it.

mod support;

use std::time::Duration;

use isnad_log::witness::{AddCheckpoint, ForkEvidence, ForkProof};
use isnad_log::{merkle, note, Checkpoint, Entry, EventType, SignerKey};
use isnad_node::NodeHandle;
use isnad_wire::{Op, Request, Response, WitnessCode};
use support::*;

/// Waits until A's latest checkpoint has size `size` and is witnessed.
async fn wait_witnessed(node: &NodeHandle, size: u64) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = node.witness_status()?;
        if s.own.size == size && s.own.witnessed {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("checkpoint {size} not witnessed: {s:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Appends entries and signs checkpoints until one has a size of at least
/// `at_least` that is not a power of two (so a rewritten prefix shows in a
/// consistency proof, spec/witness.md §5.2); returns that size.
async fn grow_and_checkpoint(
    n: &NodeHandle,
    log_key: &isnad_log::VerifierKey,
    at_least: u64,
    history: &str,
) -> Result<u64, Box<dyn std::error::Error>> {
    loop {
        let mut e = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000);
        e.reason = Some(history.into());
        n.record(vec![e]).await?;
        let note = n.checkpoint_now().await?;
        let size = isnad_log::open_checkpoint(note.as_bytes(), log_key)?.size;
        if size >= at_least && !size.is_power_of_two() {
            return Ok(size);
        }
    }
}

/// Agencies A and B listed in a fresh directory, and B's node running.
async fn a_and_its_witness_b(
    root: &std::path::Path,
) -> Result<(TestDirectory, Agency, Agency, NodeHandle), Box<dyn std::error::Error>> {
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let nb = start(&b, &dir, root).await?;
    Ok((dir, a, b, nb))
}

fn events(node: &NodeHandle) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for i in 0..node.log().size() {
        out.push(Entry::decode(&node.log().entry_bytes(i)?)?);
    }
    Ok(out)
}

/// Sends one add-checkpoint request as `who` to `to`.
async fn add_checkpoint(
    who: &Agency,
    dir: &TestDirectory,
    to: &Agency,
    req: &AddCheckpoint,
) -> Result<Response, Box<dyn std::error::Error>> {
    let conn = raw_connect(who, dir, to).await?;
    let frame = Request {
        op: Op::AddCheckpoint,
        payload: req.to_text().into_bytes(),
    }
    .encode();
    raw_request(&conn, &frame).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witnessed_log_that_rewrites_its_history_is_caught() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b, c) = (
        agency("iq.moi.ahtd")?,
        agency("fr.mj.bepi")?,
        agency("jo.psd.cid")?,
    );
    for x in [&a, &b, &c] {
        list(&dir, x)?;
    }
    let nb = start(&b, &dir, tmp.path()).await?;
    let nc = start(&c, &dir, tmp.path()).await?;
    let na = start_with(&a, &dir, tmp.path(), |cfg| {
        cfg.witness.witnesses = vec![b.id.clone(), c.id.clone()];
        cfg.witness.quorum = 2;
        cfg.checkpoint.interval_secs = 3600;
    })
    .await?;

    let log_key = SignerKey::parse(&a.log_key)?;
    let m = grow_and_checkpoint(&na, &log_key.verifier(), 3, "history").await?;
    let note_text = na.latest_checkpoint().ok_or("no checkpoint")?;
    wait_witnessed(&na, m).await?;

    // The checkpoint served carries both verified cosignatures.
    let served = na.latest_checkpoint().ok_or("no checkpoint")?;
    assert!(served.starts_with(&note_text) && served.len() > note_text.len());
    for w in [&b, &c] {
        let wkey = SignerKey::parse(&w.witness_key)?.verifier();
        note::verify_cosignature(served.as_bytes(), &wkey)?;
    }
    let status = na.witness_status()?;
    assert_eq!(
        status.own.cosigned_by,
        vec![b.id.to_string(), c.id.to_string()]
    );
    assert_eq!(na.metrics().witnessed_size.get(), m);
    // Each witness stored A's checkpoint and logged witness-cosigned.
    for n in [&nb, &nc] {
        let s = n.witness_status()?;
        let w = s
            .witnessed
            .iter()
            .find(|w| w.origin == "iq.moi.ahtd/audit")
            .ok_or("A not witnessed")?;
        assert_eq!(w.size, m);
        assert!(events(n)?
            .iter()
            .any(|e| e.event == EventType::WitnessCosigned && e.sender.as_ref() == Some(&a.id)));
    }
    // A logged one checkpoint-cosigned entry per witness for size m.
    let cosigned: Vec<_> = events(&na)?
        .into_iter()
        .filter(|e| {
            e.event == EventType::CheckpointCosigned && e.detail.get("size") == Some(&m.to_string())
        })
        .collect();
    assert_eq!(cosigned.len(), 2, "{cosigned:?}");

    // A stale old size is a conflict carrying the size the witness knows.
    let honest = AddCheckpoint {
        old_size: 1,
        proof: na.log().consistency_proof(1, m)?,
        checkpoint: note_text.clone(),
    };
    match add_checkpoint(&a, &dir, &b, &honest).await? {
        Response::WitnessRefused {
            code: WitnessCode::Conflict,
            known_size,
            ..
        } => assert_eq!(known_size, Some(m)),
        other => panic!("expected a conflict, got {other:?}"),
    }

    // A rewrites its history: another tree, signed with its real log key,
    // with an honest consistency proof of the *new* tree.
    let forked = merkle::Tree::from_leaves((0..m + 4).map(|i| merkle::leaf_hash(&i.to_be_bytes())));
    let forked_note = Checkpoint::new(log_key.name(), m + 4, forked.root())?.sign(&log_key)?;
    let fork_req = AddCheckpoint {
        old_size: m,
        proof: forked.consistency_proof(m, m + 4)?,
        checkpoint: forked_note,
    };
    match add_checkpoint(&a, &dir, &b, &fork_req).await? {
        Response::WitnessRefused { code, .. } => assert_eq!(code, WitnessCode::Inconsistent),
        other => panic!("a fork was not refused: {other:?}"),
    }
    // Same size, another root, to C.
    let same_size = AddCheckpoint {
        old_size: m,
        proof: Vec::new(),
        checkpoint: Checkpoint::new(log_key.name(), m, forked.root_at(m)?)?.sign(&log_key)?,
    };
    match add_checkpoint(&a, &dir, &c, &same_size).await? {
        Response::WitnessRefused { code, .. } => assert_eq!(code, WitnessCode::Inconsistent),
        other => panic!("a same-size fork was not refused: {other:?}"),
    }

    // Both witnesses kept their state, recorded evidence that verifies on
    // its own under A's log key, counted and logged the fork.
    let a_log = log_key.verifier();
    for (n, want_same_size) in [(&nb, false), (&nc, true)] {
        let s = n.witness_status()?;
        assert_eq!(s.witnessed[0].size, m, "a witness rolled forward to a fork");
        assert_eq!(s.forks.len(), 1, "{s:?}");
        assert_eq!(n.metrics().witness_forks.get(), 1);
        let evidence = ForkEvidence::parse(&std::fs::read(&s.forks[0])?)?;
        let proof = evidence.verify(&a_log)?;
        assert_eq!(
            matches!(proof, ForkProof::SameSize { .. }),
            want_same_size,
            "{proof:?}"
        );
        assert!(matches!(
            proof,
            ForkProof::SameSize { size, .. } | ForkProof::Diverged { size, .. } if size == m
        ));
        assert!(events(n)?
            .iter()
            .any(|e| e.event == EventType::ForkDetected && e.sender.as_ref() == Some(&a.id)));
        assert!(n
            .metrics()
            .render(0)
            .contains("isnad_witness_forks_total 1"));
    }

    // The same fork offered again is refused again but counted once.
    assert!(matches!(
        add_checkpoint(&a, &dir, &b, &fork_req).await?,
        Response::WitnessRefused {
            code: WitnessCode::Inconsistent,
            ..
        }
    ));
    assert_eq!(nb.metrics().witness_forks.get(), 1);

    // A peer cannot have its checkpoints witnessed under another agency's
    // origin: B asks C to witness A's log.
    let b_req = AddCheckpoint {
        old_size: m,
        proof: Vec::new(),
        checkpoint: note_text,
    };
    assert!(matches!(
        add_checkpoint(&b, &dir, &c, &b_req).await?,
        Response::WitnessRefused {
            code: WitnessCode::UnknownLog,
            ..
        }
    ));

    for n in [na, nb, nc] {
        n.shutdown().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restarted_on_a_rewritten_log_is_caught_by_its_witness() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, a, b, nb) = a_and_its_witness_b(tmp.path()).await?;
    let witnessed_by_b = |cfg: &mut isnad_node::config::Config| {
        cfg.witness.witnesses = vec![b.id.clone()];
        cfg.checkpoint.interval_secs = 3600;
    };
    let log_key = SignerKey::parse(&a.log_key)?.verifier();
    let na = start_with(&a, &dir, tmp.path(), witnessed_by_b).await?;
    let m = grow_and_checkpoint(&na, &log_key, 3, "history").await?;
    wait_witnessed(&na, m).await?;
    na.shutdown().await;
    drop(na);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A starts again on a fresh log and state (its history rewritten), same
    // keys and address, and grows past the size B witnessed. Its own
    // witness client submits the new checkpoint: B answers "conflict, I
    // know size m", A retries with its honest proof from m, and B catches it.
    let elsewhere = tmp.path().join("rewritten");
    let na = start_with(&a, &dir, &elsewhere, witnessed_by_b).await?;
    let n = grow_and_checkpoint(&na, &log_key, m + 2, "another history").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while nb.metrics().witness_forks.get() == 0 {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no fork recorded: {:?}", nb.witness_status()?).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = nb.witness_status()?;
    assert_eq!(
        s.witnessed[0].size, m,
        "the witness followed the rewritten log"
    );
    let evidence = ForkEvidence::parse(&std::fs::read(&s.forks[0])?)?;
    // Which checkpoint of the new log reaches B first depends on timing: one
    // of size m (another root) or a larger one (another prefix). Both prove it.
    match evidence.verify(&log_key)? {
        ForkProof::SameSize { size, .. } => assert_eq!(size, m),
        ForkProof::Diverged {
            size, later_size, ..
        } => {
            assert_eq!(size, m);
            assert!(later_size > m && later_size <= n, "{later_size}");
        }
    }
    assert!(!na.witness_status()?.own.witnessed);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosignature_records_alone_do_not_trigger_new_checkpoints() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, a, b, nb) = a_and_its_witness_b(tmp.path()).await?;
    let na = start_with(&a, &dir, tmp.path(), |cfg| {
        cfg.witness.witnesses = vec![b.id.clone()];
        cfg.checkpoint.interval_secs = 1;
    })
    .await?;
    let mut e = Entry::new(EventType::DirectoryChanged, 1_790_000_000_000);
    e.reason = Some("growth".into());
    na.record(vec![e]).await?;
    // The loop signs size 1 within a second, B cosigns it, A logs that (size 2).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while na.witness_status()?.own.size < 1 || !na.witness_status()?.own.witnessed {
        assert!(tokio::time::Instant::now() < deadline, "never witnessed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let witnessed = na.witness_status()?.own.size;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Several ticks later: no checkpoint for the cosignature records alone.
    assert_eq!(na.witness_status()?.own.size, witnessed);
    assert!(na.log().size() > witnessed);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_node_exports_its_witnessed_checkpoint_with_the_cosignature() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (dir, a, b, nb) = a_and_its_witness_b(tmp.path()).await?;
    let na = start_with(&a, &dir, tmp.path(), |cfg| {
        cfg.witness.witnesses = vec![b.id.clone()];
        cfg.checkpoint.interval_secs = 3600;
    })
    .await?;
    let log_key = SignerKey::parse(&a.log_key)?.verifier();
    let m = grow_and_checkpoint(&na, &log_key, 2, "history").await?;
    wait_witnessed(&na, m).await?;
    // The log grew since (B's checkpoint-cosigned record): `latest` exports
    // the witnessed, older tree, its checkpoint carrying B's cosignature.
    assert!(na.log().size() > m);
    let out = tmp.path().join("witnessed");
    let e = na.export_audit(&out, isnad_node::ExportAt::Latest).await?;
    assert_eq!((e.size, e.cosignatures), (m, 1));
    let written = std::fs::read(out.join("checkpoint"))?;
    assert_eq!(written, e.checkpoint.as_bytes());
    let wkey = SignerKey::parse(&b.witness_key)?.verifier();
    note::verify_cosignature(&written, &wkey)?;
    let report = isnad_log::verify_export(&out, &log_key, None, &mut |_, _| {})?;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.checkpoint.size, m);
    // `new` signs the current tree; the export extends the witnessed one.
    let now = tmp.path().join("now");
    let e = na.export_audit(&now, isnad_node::ExportAt::New).await?;
    // (B may cosign it and A log that at any moment, so the log may be larger.)
    assert!(e.size > m && e.size <= na.log().size());
    let report = isnad_log::verify_export(&now, &log_key, Some(&written), &mut |_, _| {})?;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
