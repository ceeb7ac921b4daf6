//! Attachment transfer between nodes (spec/transport.md §10): the
//! ciphertext goes on its own stream, every chunk is checked against the
//! ciphertext root before it is written, a bad chunk is asked for again by
//! index, hostile senders are refused, quotas and free space are checked
//! before anything is accepted, and a transfer resumes from the
//! receiver's durable point after a dropped connection or a restart.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_attach::{
    seal, verify_ciphertext, AttachmentMeta, ChunkSize, ChunkTree, MediaType, TreeHash,
};
use isnad_envelope::ErrorCode;
use isnad_node::store::OutState;
use isnad_node::{PushError, MAX_AGAIN};
use isnad_wire::attach::{encode_open, AgainReason, Answer, ChunkHead};
use ring::rand::SystemRandom;
use support::*;

/// An attachment sealed in memory, with its tree, for a raw sender.
struct Raw {
    meta: AttachmentMeta,
    ct: Vec<u8>,
    tree: ChunkTree,
}

impl Raw {
    fn new(size: usize, chunk: u32, fill: u8) -> Result<Self, Box<dyn std::error::Error>> {
        let plain = vec![fill; size];
        let mut ct = Vec::new();
        let sealed = seal(
            &plain[..],
            &mut ct,
            ChunkSize::new(chunk)?,
            &SystemRandom::new(),
        )?;
        let l = sealed.layout();
        let meta = AttachmentMeta::new(
            l.chunk_size(),
            l.ciphertext_size(),
            sealed.ciphertext_root(),
        )?;
        let tree = verify_ciphertext(&meta, &ct[..], true)?.ok_or("no tree")?;
        Ok(Self { meta, ct, tree })
    }

    fn chunks(&self) -> u64 {
        self.meta.layout().chunks()
    }

    fn chunk(&self, i: u64) -> &[u8] {
        let l = self.meta.layout();
        let at = l.ciphertext_offset(i) as usize;
        &self.ct[at..at + l.ciphertext_chunk_len(i).unwrap_or(0) as usize]
    }

    /// The chunk frame of chunk `i` with `bytes` in place of its own.
    fn frame_with(&self, i: u64, bytes: &[u8]) -> Vec<u8> {
        let proof = self.tree.proof(i.min(self.chunks() - 1)).expect("proof");
        let mut f = ChunkHead::new(i, bytes.len() as u32, &proof)
            .encode()
            .to_vec();
        f.extend_from_slice(&proof.encode());
        f.extend_from_slice(bytes);
        f
    }

    fn frame(&self, i: u64) -> Vec<u8> {
        self.frame_with(i, self.chunk(i))
    }
}

async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut p = [0u8; 2];
    recv.read_exact(&mut p).await?;
    let mut body = vec![0u8; Answer::body_len(p)?];
    recv.read_exact(&mut body).await?;
    Ok(Answer::decode(&body)?)
}

/// Opens an attachment stream for `meta` and returns the first answer.
async fn open(
    conn: &quinn::Connection,
    meta: &AttachmentMeta,
) -> Result<(quinn::SendStream, quinn::RecvStream, Answer), Box<dyn std::error::Error>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&encode_open(meta)).await?;
    let first = read_answer(&mut recv).await?;
    Ok((send, recv, first))
}

fn refused(a: &Answer) -> Option<(ErrorCode, String)> {
    match a {
        Answer::Refused { code, detail } => Some((*code, detail.clone())),
        _ => None,
    }
}

/// 256 MiB pushed between two nodes: the process's RSS stays within a
/// bound of its level before the push (both nodes run in this process), a
/// 1 KiB message sent during the transfer is delivered before it ends, and
/// the receiver holds the same ciphertext, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_transfer_runs_in_bounded_memory_beside_a_message() -> TestResult {
    let (tmp, _dir, [_a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let file = tmp.path().join("extraction.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        for _ in 0..256 {
            f.write_all(&block)?;
        }
        f.flush()?;
    }
    let desc = na
        .stage_outgoing(&file, MediaType::new("application/octet-stream")?)
        .await?;
    assert_eq!(desc.size(), 256 << 20);
    let root = desc.ciphertext_root();
    // Warm the connection so its setup is not counted as transfer memory.
    let warm = na.submit(b.id.clone(), intel("warm-up"), None).await?;
    wait_state(&na, &warm, OutState::Delivered, 10).await?;
    let before = rss_bytes()?;
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::SeqCst) {
                if let Ok(r) = rss_bytes() {
                    peak.fetch_max(r, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let push = {
        let (na, to) = (na.clone(), b.id.clone());
        tokio::spawn(async move {
            let r = na.push_attachment(&to, &root).await;
            (r, Instant::now())
        })
    };
    // A message sent while the transfer runs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    let msg = na
        .submit(b.id.clone(), intel(&"m".repeat(1024)), None)
        .await?;
    wait_state(&na, &msg, OutState::Delivered, 20).await?;
    let delivered_in = sent_at.elapsed();
    let (report, ended) = push.await?;
    let report = report?;
    done.store(true, Ordering::SeqCst);
    sampler.await?;
    let took = ended - started;
    let growth = peak.load(Ordering::SeqCst).saturating_sub(before);
    eprintln!(
        "256 MiB transfer: {took:?} ({:.0} MB/s), RSS growth {} KiB, 1 KiB message delivered in {delivered_in:?}",
        (256u64 << 20) as f64 / took.as_secs_f64() / 1e6,
        growth / 1024
    );
    assert!(
        ended > sent_at + delivered_in,
        "the message waited for the transfer: delivered in {delivered_in:?}, transfer took {took:?}"
    );
    assert!(
        growth < 64 << 20,
        "RSS grew by {growth} bytes during a 256 MiB transfer"
    );
    assert_eq!(report.resumed_from, 0);
    assert_eq!(report.chunks_sent, 1024);
    assert!(report.again.is_empty(), "{report:?}");
    let staged = nb.staged(&root).ok_or("not staged at the receiver")?;
    let ours = na.staged(&root).ok_or("not staged at the sender")?;
    assert_eq!(staged.meta, ours.meta);
    let tree = verify_ciphertext(&staged.meta, std::fs::File::open(&staged.path)?, false);
    assert!(
        tree.is_ok(),
        "the received ciphertext does not check: {tree:?}"
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// A chunk with a flipped bit is refused, named by its index, not written,
/// and the attachment completes once that chunk alone is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_is_asked_for_again_by_index() -> TestResult {
    let (tmp, dir, [a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let raw = Raw::new(1 << 20, 1 << 16, 3)?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let (mut send, mut recv, first) = open(&conn, &raw.meta).await?;
    assert_eq!(first, Answer::Resume { next: 0 });
    for i in 0..raw.chunks() {
        if i == 5 {
            let mut bad = raw.chunk(5).to_vec();
            bad[1000] ^= 0x01;
            send.write_all(&raw.frame_with(5, &bad)).await?;
        } else {
            send.write_all(&raw.frame(i)).await?;
        }
    }
    assert_eq!(
        read_answer(&mut recv).await?,
        Answer::Again {
            index: 5,
            reason: AgainReason::Mismatch
        }
    );
    assert!(nb.staged(&raw.meta.ciphertext_root()).is_none());
    send.write_all(&raw.frame(5)).await?;
    assert_eq!(read_answer(&mut recv).await?, Answer::Complete);
    send.finish()?;
    let staged = nb.staged(&raw.meta.ciphertext_root()).ok_or("not staged")?;
    assert_eq!(std::fs::read(&staged.path)?, raw.ct);
    drop(tmp);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Hostile senders: a truncated final chunk and a chunk of another
/// attachment are asked for again; a chunk past the declared size, a
/// chunk longer than the chunk size, data after the last chunk and a
/// sender that keeps sending bad chunks are refused; none leaves a
/// complete attachment behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_senders_are_refused() -> TestResult {
    let (_tmp, dir, [a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let raw = Raw::new(300_000, 1 << 16, 1)?;
    let other = Raw::new(300_000, 1 << 16, 2)?;
    let n = raw.chunks();
    let root = raw.meta.ciphertext_root();

    // A truncated final chunk, and chunk 2 of another attachment.
    let (mut send, mut recv, first) = open(&conn, &raw.meta).await?;
    assert_eq!(first, Answer::Resume { next: 0 });
    send.write_all(&raw.frame(0)).await?;
    send.write_all(&raw.frame(1)).await?;
    send.write_all(&raw.frame_with(2, other.chunk(2))).await?;
    assert_eq!(
        read_answer(&mut recv).await?,
        Answer::Again {
            index: 2,
            reason: AgainReason::Mismatch
        }
    );
    send.write_all(&raw.frame(3)).await?;
    let last = raw.chunk(n - 1);
    send.write_all(&raw.frame_with(n - 1, &last[..last.len() - 1]))
        .await?;
    assert_eq!(
        read_answer(&mut recv).await?,
        Answer::Again {
            index: n - 1,
            reason: AgainReason::Length
        }
    );
    assert!(nb.staged(&root).is_none(), "staged with chunks missing");
    // The sender gives up half-way (FIN): nothing is complete.
    send.finish()?;
    let a2 = read_answer(&mut recv).await?;
    assert_eq!(
        refused(&a2).map(|r| r.0),
        Some(ErrorCode::Malformed),
        "{a2:?}"
    );
    assert!(nb.staged(&root).is_none());

    // A chunk past the declared size (the sender declared less than it sends).
    let (mut send, mut recv, first) = open(&conn, &raw.meta).await?;
    let Answer::Resume { next } = first else {
        return Err(format!("{first:?}").into());
    };
    assert!(next <= 2, "resume point {next}: chunk 2 was never good");
    send.write_all(&raw.frame_with(n, raw.chunk(0))).await?;
    let a3 = read_answer(&mut recv).await?;
    let (code, detail) = refused(&a3).ok_or("not refused")?;
    assert_eq!(code, ErrorCode::TooLarge, "{detail}");
    assert!(detail.contains("beyond the declared size"), "{detail}");

    // A chunk longer than a full chunk is refused from its header.
    let (mut send, mut recv, _) = open(&conn, &raw.meta).await?;
    let long = vec![0u8; (1 << 16) + 17];
    send.write_all(&raw.frame_with(next, &long)).await?;
    let a4 = read_answer(&mut recv).await?;
    assert_eq!(
        refused(&a4).map(|r| r.0),
        Some(ErrorCode::TooLarge),
        "{a4:?}"
    );

    // Data after the last chunk: the attachment is complete (every chunk
    // checked) and the extra bytes are refused.
    let (mut send, mut recv, first) = open(&conn, &raw.meta).await?;
    let Answer::Resume { next } = first else {
        return Err(format!("{first:?}").into());
    };
    for i in next..n {
        send.write_all(&raw.frame(i)).await?;
    }
    assert_eq!(read_answer(&mut recv).await?, Answer::Complete);
    send.write_all(&raw.frame(0)).await?;
    let a5 = read_answer(&mut recv).await?;
    let (code, detail) = refused(&a5).ok_or("not refused")?;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(detail.contains("after the last chunk"), "{detail}");
    assert_eq!(
        std::fs::read(nb.staged(&root).ok_or("not staged")?.path)?,
        raw.ct
    );

    // A sender that keeps sending bad chunks is cut off.
    let bad = Raw::new(64 * 40, 64, 9)?;
    let (mut send, mut recv, _) = open(&conn, &bad.meta).await?;
    let mut refusal = None;
    for i in 0..bad.chunks() {
        let mut c = bad.chunk(i).to_vec();
        c[0] ^= 0x80;
        if send.write_all(&bad.frame_with(i, &c)).await.is_err() {
            break;
        }
    }
    for _ in 0..=MAX_AGAIN + 1 {
        match read_answer(&mut recv).await? {
            Answer::Again { .. } => continue,
            other => {
                refusal = refused(&other);
                break;
            }
        }
    }
    assert_eq!(refusal.map(|r| r.0), Some(ErrorCode::Unauthentic));
    assert!(nb.staged(&bad.meta.ciphertext_root()).is_none());
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Quotas and free space are checked before anything is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_space_are_checked_before_accepting() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start_with(&b, &dir, tmp.path(), |c| {
        c.attachments.max_attachment_bytes = 200_000;
        c.attachments.max_peer_bytes = 250_000;
    })
    .await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let big = Raw::new(300_000, 1 << 16, 1)?;
    let (_s, _r, first) = open(&conn, &big.meta).await?;
    let (code, detail) = refused(&first).ok_or("not refused")?;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(detail.contains("per attachment"), "{detail}");

    // The first of two 150 kB attachments fits the per-peer quota.
    let one = Raw::new(150_000, 1 << 16, 1)?;
    let (mut send, mut recv, first) = open(&conn, &one.meta).await?;
    assert_eq!(first, Answer::Resume { next: 0 });
    for i in 0..one.chunks() {
        send.write_all(&one.frame(i)).await?;
    }
    assert_eq!(read_answer(&mut recv).await?, Answer::Complete);
    send.finish()?;
    let two = Raw::new(150_000, 1 << 16, 2)?;
    let (_s, _r, first) = open(&conn, &two.meta).await?;
    let (code, detail) = refused(&first).ok_or("not refused")?;
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(detail.contains("per-peer quota"), "{detail}");

    // Not enough disk space: refused before any chunk, with the reason.
    nb.set_free_space_probe(Arc::new(|_| Ok(50_000)));
    let small = Raw::new(60_000, 1 << 16, 3)?;
    let (_s, _r, first) = open(&conn, &small.meta).await?;
    let (code, detail) = refused(&first).ok_or("not refused")?;
    assert_eq!(code, ErrorCode::Unavailable);
    assert!(detail.contains("disk space"), "{detail}");
    assert!(nb.staged(&small.meta.ciphertext_root()).is_none());
    // Nothing of the refused one is left to count against the quota.
    let meta = tmp
        .path()
        .join(b.id.as_str())
        .join("attachments")
        .join(format!("{}.meta", small.meta.ciphertext_root().to_hex()));
    assert!(
        !meta.exists(),
        "a refused attachment left {}",
        meta.display()
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// The durable point the receiver names after `conn` dropped: read from
/// its `.held` file (8 bytes, big-endian).
/// Pushes `root` to `peer`, retrying while the receiver still holds the
/// stream the test's raw client closed (it learns of the close
/// asynchronously: `unavailable`, "being received on another stream", is
/// the answer a real sender retries).
async fn push_once_released(
    node: &isnad_node::NodeHandle,
    peer: &isnad_envelope::AgencyId,
    root: &TreeHash,
) -> Result<isnad_node::PushReport, PushError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match node.push_attachment(peer, root).await {
            Err(PushError::Refused {
                code: ErrorCode::Unavailable,
                detail,
            }) if detail.contains("another stream") && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

fn held(home: &std::path::Path, root: &TreeHash) -> u64 {
    let p = home
        .join("attachments")
        .join(format!("{}.held", root.to_hex()));
    std::fs::read(p)
        .ok()
        .and_then(|b| {
            b.get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
        })
        .unwrap_or(0)
}

/// Stages an 8 MiB file (32 chunks of 256 KiB) at `na`.
async fn stage_8_mib(
    na: &isnad_node::NodeHandle,
    tmp: &std::path::Path,
) -> Result<(TreeHash, Raw), Box<dyn std::error::Error>> {
    let file = tmp.join("statement.pdf");
    std::fs::write(&file, vec![0x5a; 8 << 20])?;
    let desc = na
        .stage_outgoing(&file, MediaType::new("application/pdf")?)
        .await?;
    let root = desc.ciphertext_root();
    let staged = na.staged(&root).ok_or("not staged")?;
    let ct = std::fs::read(&staged.path)?;
    let tree = verify_ciphertext(&staged.meta, &ct[..], true)?.ok_or("no tree")?;
    Ok((
        root,
        Raw {
            meta: staged.meta,
            ct,
            tree,
        },
    ))
}

/// A connection dropped mid-transfer: the next push resumes from the
/// receiver's durable point, re-sending at most one sync interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_from_the_durable_point() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start_with(&b, &dir, tmp.path(), |c| {
        c.attachments.sync_every_bytes = 1 << 20; // 4 chunks
    })
    .await?;
    let (root, raw) = stage_8_mib(&na, tmp.path()).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let (mut send, _recv, first) = open(&conn, &raw.meta).await?;
    assert_eq!(first, Answer::Resume { next: 0 });
    for i in 0..20 {
        send.write_all(&raw.frame(i)).await?;
    }
    let home = tmp.path().join(b.id.as_str());
    until("16 chunks durable", 10, || Ok(held(&home, &root) >= 16)).await?;
    conn.close(0u32.into(), b"gone");
    let report = push_once_released(&na, &b.id, &root).await?;
    eprintln!(
        "resumed from chunk {} of 32: {report:?}",
        report.resumed_from
    );
    assert!(
        (16..=20).contains(&report.resumed_from),
        "resumed from {}",
        report.resumed_from
    );
    // Re-sent: only what was not durable, at most one sync interval.
    let resent = 20 - report.resumed_from.min(20);
    assert!(resent <= 4, "{resent} chunks sent twice");
    assert_eq!(report.chunks_sent, 32 - report.resumed_from);
    assert_eq!(
        std::fs::read(nb.staged(&root).ok_or("not staged")?.path)?,
        raw.ct
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// The receiving node stops mid-transfer and starts again on the same
/// directory: the push resumes from what it made durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_receiver_resumes() -> TestResult {
    let (tmp, dir, [a, b]) = listed(["iq.moi.ahtd", "fr.mj.bepi"])?;
    let na = start(&a, &dir, tmp.path()).await?;
    let edit = |c: &mut isnad_node::config::Config| c.attachments.sync_every_bytes = 1 << 20;
    let nb = start_with(&b, &dir, tmp.path(), edit).await?;
    let (root, raw) = stage_8_mib(&na, tmp.path()).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let (mut send, _recv, _) = open(&conn, &raw.meta).await?;
    for i in 0..12 {
        send.write_all(&raw.frame(i)).await?;
    }
    let home = tmp.path().join(b.id.as_str());
    until("8 chunks durable", 10, || Ok(held(&home, &root) >= 8)).await?;
    conn.close(0u32.into(), b"gone");
    nb.shutdown().await;
    drop(nb);
    let nb = start_with(&b, &dir, tmp.path(), edit).await?;
    let report = na.push_attachment(&b.id, &root).await?;
    assert!(report.resumed_from >= 8, "{report:?}");
    assert_eq!(
        std::fs::read(nb.staged(&root).ok_or("not staged")?.path)?,
        raw.ct
    );
    // Staged data no message took up is removed after its lifetime.
    assert_eq!(nb.sweep_attachments().await?, 0);
    nb.shutdown().await;
    drop(nb);
    // With a lifetime of 0 s the node removes it by itself at start.
    let nb = start_with(&b, &dir, tmp.path(), |c| {
        c.attachments.unreferenced_secs = 0
    })
    .await?;
    let dir_of = home.join("attachments");
    until("every file of the staged attachment removed", 10, || {
        Ok(std::fs::read_dir(&dir_of)?.count() == 0)
    })
    .await?;
    assert!(nb.staged(&root).is_none());
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Pushing a root that is not staged is a typed error, not a transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushing_an_unknown_root_is_refused_locally() -> TestResult {
    let (_tmp, _dir, [_a, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let r = na
        .push_attachment(&b.id, &TreeHash::from_bytes([1; 32]))
        .await;
    assert!(matches!(r, Err(PushError::Unknown(_))), "{r:?}");
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
