//! Attachment transfer over QUIC (spec/transport.md §10): a sender pushes
//! an attachment's ciphertext to the next hop on its own stream, the
//! receiver checks every chunk against the ciphertext root before writing
//! it and stages it in the [`AttachStore`](crate::attach_store).
//!
//! Both directions hold one chunk (and its proof) in memory at a time;
//! the receiver reads the next chunk only after the previous one is
//! written, so QUIC flow control (the stream and connection receive
//! windows) makes a slow disk at the receiver slow the sender. An
//! attachment stream has a lower send priority than message streams, so
//! a large transfer does not hold up a message on the same connection.
//!
//! Failures: a chunk that fails its check is not written and asked for
//! again by index (`again`), at most [`MAX_AGAIN`] times per stream; a
//! chunk past the declared size, a frame that does not parse, or a chunk
//! out of turn ends the stream with `refused`. A stream that ends early
//! (the connection dropped, the sender gone) keeps what is durable: the
//! next push of the same root resumes there.

use std::sync::Arc;
use std::time::Duration;

use isnad_attach::{
    AttachmentDescriptor, ChunkTree, ChunkVerifier, InclusionProof, MediaType, OpenError, TreeHash,
};
use isnad_envelope::{AgencyId, ErrorCode};
use isnad_wire::attach::{
    decode_open_meta, encode_open, open_meta_len, AgainReason, Answer, ChunkHead, CHUNK_HEAD_LEN,
    OPEN_HEAD_LEN,
};

use crate::admission::REFUSED;
use crate::attach_store::{AttachStore, Receiving, Slot, StageError, Staged};
use crate::node::inner::Inner;
use crate::NodeHandle;

/// Chunks refused (`again`) in one stream before the receiver gives up on
/// the sender (`unauthentic`).
pub const MAX_AGAIN: usize = 16;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The receiver's durable resume point when the stream opened.
    pub resumed_from: u64,
    /// Chunks written to the stream (re-sent ones included).
    pub chunks_sent: u64,
    /// Ciphertext bytes written to the stream (re-sent ones included).
    pub bytes_sent: u64,
    /// Chunks the receiver asked for again, in order.
    pub again: Vec<u64>,
}

/// Why a push failed. Temporary failures (all but `Unknown` and a final
/// refusal) are worth retrying: the receiver keeps what is durable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// No complete attachment with this root is staged here.
    #[error("no staged attachment with ciphertext root {0}")]
    Unknown(String),
    /// The peer is not in any trusted directory.
    #[error("peer {0} is not in any trusted directory")]
    UnknownPeer(AgencyId),
    /// The local attachment store failed.
    #[error("attachment store: {0}")]
    Store(#[from] std::io::Error),
    /// No connection, or the stream broke; retry.
    #[error("transfer to the peer failed: {0}")]
    Transport(String),
    /// The receiver refused the transfer.
    #[error("the receiver refused the attachment: {code}: {detail}")]
    Refused {
        /// Its code (`too-large`, `unavailable`, `malformed`, `unauthentic`).
        code: ErrorCode,
        /// Its detail.
        detail: String,
    },
}

impl NodeHandle {
    /// Seals the file at `path` into the local attachment store (streamed,
    /// constant memory) and returns its descriptor, key included, for the
    /// message body. Push it with [`NodeHandle::push_attachment`].
    pub async fn stage_outgoing(
        &self,
        path: &std::path::Path,
        media_type: MediaType,
    ) -> Result<AttachmentDescriptor, StageError> {
        let inner = Arc::clone(&self.inner);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            inner.attachments.stage_file(&path, &media_type, &inner.rng)
        })
        .await
        .map_err(|e| StageError::Store(std::io::Error::other(e.to_string())))?
    }

    /// Pushes the staged attachment `root` to `peer` on its own stream,
    /// from the peer's durable resume point, until the peer holds every
    /// chunk durably.
    pub async fn push_attachment(
        &self,
        peer: &AgencyId,
        root: &TreeHash,
    ) -> Result<PushReport, PushError> {
        push(&self.inner, peer, root).await
    }

    /// The complete, verified attachment with this ciphertext root, if
    /// staged here (received from a peer or staged locally).
    pub fn staged(&self, root: &TreeHash) -> Option<Staged> {
        self.inner.attachments.staged(root)
    }

    /// Removes staged attachments not written to within
    /// `[attachments] unreferenced_secs`; returns how many.
    pub async fn sweep_attachments(&self) -> std::io::Result<usize> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.attachments.sweep(std::time::SystemTime::now()))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }
}

/// Removes staged attachments past their lifetime (at start, then every
/// quarter of `unreferenced_secs`, at most hourly and at least every
/// minute) until the node shuts down.
pub(crate) async fn sweep_loop(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let every =
        Duration::from_secs((inner.attachments.config.unreferenced_secs / 4).clamp(60, 3600));
    loop {
        let store = Arc::clone(&inner.attachments);
        match tokio::task::spawn_blocking(move || store.sweep(std::time::SystemTime::now())).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                removed = n,
                "staged attachments past their lifetime removed"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping staged attachments failed"),
            Err(e) => tracing::warn!(error = %e, "sweeping staged attachments failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A refusal to answer with.
type Refusal = (ErrorCode, String);

/// Serves an attachment stream whose first 4 bytes (the magic) were read.
pub(crate) async fn serve(
    inner: &Inner,
    peer: &AgencyId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let limit = Duration::from_secs(inner.config.limits.stream_timeout_secs);
    if let Err((code, detail)) = receive(inner, peer, &mut send, &mut recv, limit).await {
        tracing::info!(%peer, %code, %detail, "attachment transfer refused");
        inner.metrics.rejected("attachment");
        let _ = recv.stop(REFUSED);
        let answer = Answer::Refused { code, detail };
        let _ = tokio::time::timeout(limit, send.write_all(&answer.encode())).await;
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(limit, send.stopped()).await;
}

async fn receive(
    inner: &Inner,
    peer: &AgencyId,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    limit: Duration,
) -> Result<(), Refusal> {
    let malformed = |d: String| (ErrorCode::Malformed, d);
    let mut head = [0u8; OPEN_HEAD_LEN];
    head[..4].copy_from_slice(&isnad_wire::attach::MAGIC);
    read_exact(recv, &mut head[4..], limit).await?;
    let n = open_meta_len(head).map_err(|e| malformed(e.to_string()))?;
    let mut m = vec![0u8; n];
    read_exact(recv, &mut m, limit).await?;
    let meta = decode_open_meta(&m).map_err(|e| malformed(e.to_string()))?;
    let layout = meta.layout();
    let root = meta.ciphertext_root();
    let store = &inner.attachments;
    let size = layout.ciphertext_size();
    if size > store.config.max_attachment_bytes {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "attachment of {size} bytes is over the limit of {} bytes per attachment",
                store.config.max_attachment_bytes
            ),
        ));
    }
    let held_by_peer = blocking(store, {
        let (peer, root) = (peer.clone(), root);
        move |s| s.peer_bytes(&peer, &root)
    })
    .await?;
    if held_by_peer.saturating_add(size) > store.config.max_peer_bytes {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "{held_by_peer} bytes already staged from this peer: {size} more is over the \
                 per-peer quota of {} bytes",
                store.config.max_peer_bytes
            ),
        ));
    }
    let mut rx = blocking(store, {
        let (peer, meta) = (peer.clone(), meta);
        move |s| s.receive(&peer, &meta)
    })
    .await?
    .ok_or_else(|| {
        (
            ErrorCode::Unavailable,
            "this attachment is being received on another stream; try again later".to_owned(),
        )
    })?;
    let next = rx.resume_point();
    if !rx.is_complete() {
        // Free space is checked before anything is accepted: what is still
        // to come, above the node's floor.
        let remaining = size.saturating_sub(layout.ciphertext_offset(next));
        let need = remaining.saturating_add(inner.config.disk.free_space_floor_bytes);
        if let Ok(free) = inner.health.free_space_at(store.dir()) {
            if free < need {
                let _ = blocking_rx(rx, |rx| rx.abandon()).await;
                return Err((
                    ErrorCode::Unavailable,
                    format!(
                        "not enough disk space: {remaining} bytes to receive above the floor of \
                         {} bytes, {free} bytes free",
                        inner.config.disk.free_space_floor_bytes
                    ),
                ));
            }
        }
    }
    tracing::debug!(%peer, root = %root.to_hex(), next, chunks = layout.chunks(), "attachment stream");
    answer(send, &Answer::Resume { next }, limit).await?;
    let verifier = ChunkVerifier::new(&meta);
    let full = layout.chunk_size().ciphertext_len();
    let mut again = 0usize;
    let mut buf: Vec<u8> = Vec::with_capacity(full as usize);
    loop {
        if rx.all_held() {
            let _complete = blocking_rx(rx, |rx| rx.complete()).await?;
            answer(send, &Answer::Complete, limit).await?;
            tracing::info!(%peer, root = %root.to_hex(), size, "attachment staged");
            // The sender finishes its side; anything more is refused.
            let mut extra = [0u8; 1];
            return match tokio::time::timeout(limit, recv.read(&mut extra)).await {
                Ok(Ok(Some(n))) if n > 0 => Err((
                    ErrorCode::TooLarge,
                    "data after the last chunk of the declared size".to_owned(),
                )),
                _ => Ok(()),
            };
        }
        let mut h = [0u8; CHUNK_HEAD_LEN];
        if let Err(e) = read_exact(recv, &mut h, limit).await {
            // The sender is gone or stalled: keep what is durable.
            let _ = blocking_rx(rx, |rx| rx.sync()).await;
            return Err(e);
        }
        let head = ChunkHead::decode(h, full).map_err(|e| match e {
            isnad_wire::attach::TransferError::TooLarge { .. } => {
                (ErrorCode::TooLarge, e.to_string())
            }
            _ => malformed(e.to_string()),
        })?;
        match rx.slot(head.index) {
            Slot::Wanted => {}
            Slot::BeyondEnd => {
                return Err((
                    ErrorCode::TooLarge,
                    format!(
                        "chunk {} is beyond the declared size ({} chunks)",
                        head.index,
                        layout.chunks()
                    ),
                ))
            }
            Slot::Unexpected => {
                return Err(malformed(format!("chunk {} out of turn", head.index)));
            }
        }
        let mut proof = vec![0u8; head.proof_len()];
        read_exact(recv, &mut proof, limit).await?;
        buf.resize(head.len as usize, 0);
        read_exact(recv, &mut buf, limit).await?;
        let index = head.index;
        let checked = InclusionProof::decode(&proof)
            .map_err(|_| OpenError::ChunkMismatch { index })
            .and_then(|p| verifier.verify(index, &buf, &p));
        match checked {
            Ok(()) => {
                let (r, b) = blocking_write(rx, buf, index).await?;
                (rx, buf) = (r, b);
            }
            Err(e) => {
                let reason = match e {
                    OpenError::ChunkLength { .. } => AgainReason::Length,
                    _ => AgainReason::Mismatch,
                };
                again += 1;
                let pending = rx.refused(index);
                tracing::warn!(%peer, root = %root.to_hex(), index, reason = reason.name(), "attachment chunk refused, asked for again");
                if again > MAX_AGAIN || pending > MAX_AGAIN {
                    let _ = blocking_rx(rx, |rx| rx.sync()).await;
                    return Err((
                        ErrorCode::Unauthentic,
                        format!("more than {MAX_AGAIN} chunks failed their check"),
                    ));
                }
                answer(send, &Answer::Again { index, reason }, limit).await?;
            }
        }
    }
}

async fn read_exact(
    recv: &mut quinn::RecvStream,
    buf: &mut [u8],
    limit: Duration,
) -> Result<(), Refusal> {
    match tokio::time::timeout(limit, recv.read_exact(buf)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((
            ErrorCode::Malformed,
            format!("attachment stream ended early: {e}"),
        )),
        Err(_) => Err((
            ErrorCode::Unavailable,
            "no data within the stream time limit".to_owned(),
        )),
    }
}

async fn answer(send: &mut quinn::SendStream, a: &Answer, limit: Duration) -> Result<(), Refusal> {
    match tokio::time::timeout(limit, send.write_all(&a.encode())).await {
        Ok(Ok(())) => Ok(()),
        _ => Err((
            ErrorCode::Unavailable,
            "cannot answer the sender".to_owned(),
        )),
    }
}

fn store_fault(e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "attachment store failed");
    (
        ErrorCode::Unavailable,
        "the attachment store failed; try again later".to_owned(),
    )
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<AttachStore>,
    f: impl FnOnce(&AttachStore) -> std::io::Result<T> + Send + 'static,
) -> Result<T, Refusal> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(store_fault)?
        .map_err(store_fault)
}

async fn blocking_rx(
    mut rx: Receiving,
    f: impl FnOnce(&mut Receiving) -> std::io::Result<()> + Send + 'static,
) -> Result<Receiving, Refusal> {
    tokio::task::spawn_blocking(move || f(&mut rx).map(|()| rx))
        .await
        .map_err(store_fault)?
        .map_err(store_fault)
}

async fn blocking_write(
    mut rx: Receiving,
    buf: Vec<u8>,
    index: u64,
) -> Result<(Receiving, Vec<u8>), Refusal> {
    tokio::task::spawn_blocking(move || rx.write(index, &buf).map(|()| (rx, buf)))
        .await
        .map_err(store_fault)?
        .map_err(store_fault)
}

// ---------------------------------------------------------------------------
// sending

async fn push(
    inner: &Arc<Inner>,
    agency: &AgencyId,
    root: &TreeHash,
) -> Result<PushReport, PushError> {
    let peer = inner
        .directory
        .peer(agency)
        .ok_or_else(|| PushError::UnknownPeer(agency.clone()))?;
    let store = Arc::clone(inner);
    let r = *root;
    let (meta, file, tree) = tokio::task::spawn_blocking(move || store.attachments.outgoing(&r))
        .await
        .map_err(|e| PushError::Store(std::io::Error::other(e.to_string())))??
        .ok_or_else(|| PushError::Unknown(root.to_hex()))?;
    let conn = inner
        .connection(agency, &peer)
        .await
        .map_err(PushError::Transport)?;
    let t = |e: &dyn std::fmt::Display| PushError::Transport(e.to_string());
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| t(&e))?;
    // Messages first: an attachment stream yields to message streams.
    let _ = send.set_priority(-1);
    send.write_all(&encode_open(&meta))
        .await
        .map_err(|e| t(&e))?;
    let mut report = PushReport::default();
    let next = match read_answer(&mut recv).await? {
        Answer::Resume { next } => next,
        other => return Err(unexpected(other)),
    };
    report.resumed_from = next;
    let (tx, mut answers) = tokio::sync::mpsc::channel(MAX_AGAIN + 4);
    let reader = tokio::spawn(async move {
        loop {
            let a = read_answer(&mut recv).await;
            let end = !matches!(a, Ok(Answer::Again { .. }));
            if tx.send(a).await.is_err() || end {
                return;
            }
        }
    });
    let sender = Sender {
        file: Arc::new(file),
        tree: Arc::new(tree),
        layout: meta.layout(),
    };
    let result = async {
        let mut index = next;
        let chunks = meta.layout().chunks();
        loop {
            // Answers first: a chunk asked for again goes before new ones.
            let a = if index < chunks {
                match answers.try_recv() {
                    Ok(a) => Some(a),
                    Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
                    Err(_) => return Err(PushError::Transport("receiver gone".into())),
                }
            } else {
                Some(
                    answers
                        .recv()
                        .await
                        .ok_or_else(|| PushError::Transport("receiver gone".into()))?,
                )
            };
            match a.transpose()? {
                None => {
                    sender.send(&mut send, index, &mut report).await?;
                    index += 1;
                }
                Some(Answer::Again { index: i, reason }) => {
                    tracing::warn!(%agency, root = %root.to_hex(), index = i, reason = reason.name(), "receiver asked for a chunk again");
                    report.again.push(i);
                    sender.send(&mut send, i, &mut report).await?;
                }
                Some(Answer::Complete) => {
                    let _ = send.finish();
                    return Ok(());
                }
                Some(other) => return Err(unexpected(other)),
            }
        }
    }
    .await;
    reader.abort();
    result.map(|()| report)
}

struct Sender {
    file: Arc<std::fs::File>,
    tree: Arc<ChunkTree>,
    layout: isnad_attach::Layout,
}

impl Sender {
    async fn send(
        &self,
        send: &mut quinn::SendStream,
        index: u64,
        report: &mut PushReport,
    ) -> Result<(), PushError> {
        let (file, tree, layout) = (Arc::clone(&self.file), Arc::clone(&self.tree), self.layout);
        let (frame, len) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<u8>, u64)> {
                use std::os::unix::fs::FileExt;
                let len = layout
                    .ciphertext_chunk_len(index)
                    .ok_or_else(|| std::io::Error::other("chunk index beyond the attachment"))?;
                let proof = tree
                    .proof(index)
                    .ok_or_else(|| std::io::Error::other("no proof for the chunk"))?;
                let head = ChunkHead::new(index, len as u32, &proof);
                let p = proof.encode();
                let mut frame = Vec::with_capacity(CHUNK_HEAD_LEN + p.len() + len as usize);
                frame.extend_from_slice(&head.encode());
                frame.extend_from_slice(&p);
                let at = frame.len();
                frame.resize(at + len as usize, 0);
                file.read_exact_at(&mut frame[at..], layout.ciphertext_offset(index))?;
                Ok((frame, len))
            })
            .await
            .map_err(|e| PushError::Store(std::io::Error::other(e.to_string())))??;
        send.write_all(&frame)
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        report.chunks_sent += 1;
        report.bytes_sent += len;
        Ok(())
    }
}

fn unexpected(a: Answer) -> PushError {
    match a {
        Answer::Refused { code, detail } => PushError::Refused { code, detail },
        other => PushError::Transport(format!("unexpected answer {other:?}")),
    }
}

async fn read_answer(recv: &mut quinn::RecvStream) -> Result<Answer, PushError> {
    let t = |e: &dyn std::fmt::Display| PushError::Transport(e.to_string());
    let mut p = [0u8; 2];
    recv.read_exact(&mut p).await.map_err(|e| t(&e))?;
    let n = Answer::body_len(p).map_err(|e| t(&e))?;
    let mut body = vec![0u8; n];
    recv.read_exact(&mut body).await.map_err(|e| t(&e))?;
    Answer::decode(&body).map_err(|e| t(&e))
}
