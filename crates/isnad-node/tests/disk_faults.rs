//! Disk faults (issue 14 item 3, spec/transport.md §9): `ENOSPC` and `EIO`
//! injected through the storage seam (isnad_log::disk) on the audit log and
//! on the state database, on the sender and on the receiver, each followed
//! by the space coming back. Nothing acknowledged is lost or duplicated, a
//! submission is answered 201 exactly when it will be delivered, health
//! shows the fault while it lasts, and the retries onto the failing disk
//! are bounded. Then the free-space floor.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_envelope::MessageId;
use isnad_log::disk::{DiskFaults, Fault};
use isnad_log::{Entry, EventType, Log};
use isnad_node::store::OutState;
use isnad_node::{NodeError, NodeHandle};
use support::*;

/// Which storage fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Log,
    Db,
}

/// How long the fault lasts once the node noticed it.
const FAULT_FOR: Duration = Duration::from_secs(2);

fn reason_of(t: Target) -> &'static str {
    match t {
        Target::Log => "log-poisoned",
        Target::Db => "database-write-failing",
    }
}

fn reasons(n: &NodeHandle) -> Vec<&'static str> {
    n.condition().reasons.iter().map(|r| r.code()).collect()
}

fn inject(f: &DiskFaults, fault: Fault) {
    f.fail_writes(Some(fault));
    f.fail_syncs(Some(fault));
}

/// Every message in `accepted` is delivered exactly once, the receiver
/// holds nothing else, and the sender's log has a `sent` entry for each
/// (exactly one if `sent_once`: a database reopened after a fault rolls
/// back to its last durable commit, and a lost lazy note of the `sent`
/// index means a second `sent` entry, as after a crash, transport.md §7).
async fn all_delivered_once(
    na: &NodeHandle,
    nb: &NodeHandle,
    accepted: &[MessageId],
    sent_once: bool,
) -> TestResult {
    for id in accepted {
        wait_state(na, id, OutState::Delivered, 15).await?;
        assert_eq!(nb.store().inbox_by_id(id)?.len(), 1, "{id} once");
    }
    assert_eq!(
        nb.store().all_inbox()?.len(),
        accepted.len(),
        "nothing but the accepted messages reached the receiver"
    );
    let mut sent = Vec::new();
    for i in 0..na.log().size() {
        let e = Entry::decode(&na.log().entry_bytes(i)?)?;
        assert_eq!(e.seq, i, "no index skipped");
        if e.event == EventType::Sent {
            sent.extend(e.message_id);
        }
    }
    for id in accepted {
        let n = sent.iter().filter(|s| *s == id).count();
        assert!(n >= 1, "sent entry of {id}");
        assert!(!sent_once || n == 1, "{n} sent entries of {id}");
    }
    Ok(())
}

/// Reopens both nodes' logs after shutdown: they open cleanly with every
/// entry the running node had.
fn logs_reopen(tmp: &std::path::Path, sizes: &[(&Agency, u64)]) -> TestResult {
    for (a, size) in sizes {
        let (_, report) = Log::open(&tmp.join(a.id.as_str()).join("log"))?;
        assert_eq!(report.size, *size, "{} log size after reopen", a.id);
    }
    Ok(())
}

/// The sender's log or database fails: the submission whose outbox commit
/// succeeded is accepted (201) and delivered; later ones are refused
/// (`unavailable`, nothing stored) while health says degraded; the node
/// retries the failing disk with backoff; after the space comes back the
/// node recovers by itself and delivers everything accepted exactly once.
async fn sender_fault(target: Target, fault: Fault) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (flog, fdb) = (DiskFaults::new(), DiskFaults::new());
    let na = start_faulty(&a, &dir, tmp.path(), &flog, &fdb, |_| {}).await?;
    let nb = start(&b, &dir, tmp.path()).await?;
    let mut accepted = Vec::new();
    for i in 0..3 {
        accepted.push(
            na.submit(b.id.clone(), intel(&format!("before {i}")), None)
                .await?,
        );
    }
    for id in &accepted {
        wait_state(&na, id, OutState::Delivered, 10).await?;
    }
    assert!(na.condition().is_ok());
    let faults = match target {
        Target::Log => &flog,
        Target::Db => &fdb,
    };
    inject(faults, fault);
    // The first submission meets the fault: 201 iff it will be delivered.
    let outbox_before = na.store().all_outbox()?.len();
    match na.submit(b.id.clone(), intel("during"), None).await {
        Ok(id) => accepted.push(id),
        Err(e) => {
            assert!(
                matches!(e, NodeError::Store(_) | NodeError::Unavailable(_)),
                "{e}"
            );
            assert_eq!(
                target,
                Target::Db,
                "the log failing must not refuse a stored message: {e}"
            );
        }
    }
    if target == Target::Log {
        assert_eq!(accepted.len(), 4, "outbox commit succeeded: accepted");
    }
    until("degraded", 5, || {
        Ok(reasons(&na).contains(&reason_of(target)))
    })
    .await?;
    // While degraded: nothing new is accepted, nothing is stored.
    let refused_before = faults.refused();
    let started = Instant::now();
    let mut refused_submits = 0;
    while started.elapsed() < FAULT_FOR {
        let r = na.submit(b.id.clone(), intel("refused"), None).await;
        assert!(
            matches!(&r, Err(NodeError::Unavailable(why)) if why.contains(reason_of(target))),
            "{r:?}"
        );
        refused_submits += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = faults.refused() - refused_before;
    let rate = refused as f64 / FAULT_FOR.as_secs_f64();
    eprintln!(
        "sender {target:?} {fault:?}: {refused} I/O operations refused by the full disk in {FAULT_FOR:?} \
         ({rate:.1}/s), {} bookkeeping failures, {refused_submits} submissions refused",
        na.metrics().bookkeeping_failures.get()
    );
    assert!(
        refused <= 40,
        "retries onto the failing disk are bounded: {refused}"
    );
    assert!(nb.store().all_inbox()?.len() <= accepted.len());
    faults.heal();
    until("ok again", 10, || Ok(na.condition().is_ok())).await?;
    if target == Target::Log {
        assert_eq!(na.store().all_outbox()?.len(), outbox_before + 1);
    }
    accepted.push(na.submit(b.id.clone(), intel("after"), None).await?);
    all_delivered_once(&na, &nb, &accepted, target == Target::Log).await?;
    let sizes = [(&a, na.log().size()), (&b, nb.log().size())];
    na.shutdown().await;
    nb.shutdown().await;
    drop((na, nb));
    logs_reopen(tmp.path(), &sizes)
}

/// The receiver's log or database fails: it answers `unavailable` (the
/// message is not acknowledged), says degraded, the sender backs off, and
/// once the space is back the message is delivered exactly once.
async fn receiver_fault(target: Target, fault: Fault) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (flog, fdb) = (DiskFaults::new(), DiskFaults::new());
    let na = start(&a, &dir, tmp.path()).await?;
    let nb = start_faulty(&b, &dir, tmp.path(), &flog, &fdb, |_| {}).await?;
    let mut accepted = vec![na.submit(b.id.clone(), intel("before"), None).await?];
    wait_state(&na, &accepted[0], OutState::Delivered, 10).await?;
    let faults = match target {
        Target::Log => &flog,
        Target::Db => &fdb,
    };
    inject(faults, fault);
    let id = na.submit(b.id.clone(), intel("during"), None).await?;
    accepted.push(id);
    until("receiver degraded", 5, || {
        Ok(reasons(&nb).contains(&reason_of(target)))
    })
    .await?;
    let (attempts_before, refused_before) = (
        na.store().outbox(&id)?.ok_or("record")?.attempts,
        faults.refused(),
    );
    tokio::time::sleep(FAULT_FOR).await;
    assert!(
        reasons(&nb).contains(&reason_of(target)),
        "degraded while it lasts"
    );
    let rec = na.store().outbox(&id)?.ok_or("record")?;
    assert_eq!(
        rec.state,
        OutState::Pending,
        "not acknowledged while failing"
    );
    assert!(nb.store().inbox_by_id(&id).map_or(true, |v| v.is_empty()));
    let attempts = rec.attempts - attempts_before;
    let refused = faults.refused() - refused_before;
    eprintln!(
        "receiver {target:?} {fault:?}: {attempts} delivery attempts and {refused} refused I/O operations in {FAULT_FOR:?}"
    );
    // Backoff 50 ms doubling to 1 s: about 6 attempts in 2 s.
    assert!(attempts <= 12, "sender backs off: {attempts} attempts");
    assert!(
        refused <= 40,
        "receiver retries the disk with backoff: {refused}"
    );
    faults.heal();
    until("receiver ok again", 10, || Ok(nb.condition().is_ok())).await?;
    all_delivered_once(&na, &nb, &accepted, true).await?;
    let sizes = [(&a, na.log().size()), (&b, nb.log().size())];
    na.shutdown().await;
    nb.shutdown().await;
    drop((na, nb));
    logs_reopen(tmp.path(), &sizes)
}

/// The sender's log fails while its deliveries are under way: the
/// receipts come back but cannot be logged. (The database's part of that
/// bookkeeping, the delivered mark, is a lazy commit that redb keeps in
/// memory until the next durable one, so it does not meet a fault here;
/// durable database writes failing are covered by `sender_db_*`.) The sender does not
/// retransmit in a loop (it used to, at once and without end: 27 343
/// retransmissions in 10 s); after the space comes back each message is
/// delivered once and its `receipt-received` entry is in the log once.
async fn bookkeeping_fault(target: Target, fault: Fault) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (flog, fdb) = (DiskFaults::new(), DiskFaults::new());
    let na = start_faulty(&a, &dir, tmp.path(), &flog, &fdb, |_| {}).await?;
    // The receiver is not up yet: the messages wait in the outbox.
    let mut accepted = Vec::new();
    for i in 0..5 {
        accepted.push(
            na.submit(b.id.clone(), intel(&format!("queued {i}")), None)
                .await?,
        );
    }
    let faults = match target {
        Target::Log => &flog,
        Target::Db => &fdb,
    };
    inject(faults, fault);
    let nb = start(&b, &dir, tmp.path()).await?;
    na.kick();
    let started = Instant::now();
    until("sender degraded", 5, || {
        Ok(reasons(&na).contains(&reason_of(target)))
    })
    .await?;
    tokio::time::sleep(FAULT_FOR).await;
    let took = started.elapsed().as_secs_f64();
    let tries = nb.metrics().duplicates.get() + nb.store().all_inbox()?.len() as u64;
    eprintln!(
        "sender {target:?} {fault:?} during deliveries: {tries} deliveries reached the receiver \
         in {took:.1} s ({:.1}/s), {} refused I/O operations, {} bookkeeping failures",
        tries as f64 / took,
        faults.refused(),
        na.metrics().bookkeeping_failures.get()
    );
    assert!(tries <= 20, "no retransmission loop: {tries} deliveries");
    assert!(
        faults.refused() <= 60,
        "{} refused I/O operations",
        faults.refused()
    );
    faults.heal();
    until("ok again", 10, || Ok(na.condition().is_ok())).await?;
    all_delivered_once(&na, &nb, &accepted, true).await?;
    for id in &accepted {
        let mut receipts = 0;
        for i in 0..na.log().size() {
            let e = Entry::decode(&na.log().entry_bytes(i)?)?;
            if e.event == EventType::ReceiptReceived && e.message_id.as_ref() == Some(id) {
                receipts += 1;
            }
        }
        assert_eq!(receipts, 1, "receipt-received of {id} logged once");
    }
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

macro_rules! fault_tests {
    ($($name:ident: $f:ident($t:ident, $k:ident);)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> TestResult {
            $f(Target::$t, Fault::$k).await
        }
    )*};
}

fault_tests! {
    sender_log_enospc: sender_fault(Log, NoSpace);
    sender_log_eio: sender_fault(Log, Io);
    sender_db_enospc: sender_fault(Db, NoSpace);
    sender_db_eio: sender_fault(Db, Io);
    receiver_log_enospc: receiver_fault(Log, NoSpace);
    receiver_log_eio: receiver_fault(Log, Io);
    receiver_db_enospc: receiver_fault(Db, NoSpace);
    receiver_db_eio: receiver_fault(Db, Io);
    bookkeeping_log_enospc: bookkeeping_fault(Log, NoSpace);
    bookkeeping_log_eio: bookkeeping_fault(Log, Io);
}

/// Below the free-space floor a node accepts no submission and no incoming
/// message (`unavailable`, reason `disk-below-floor`, nothing stored) but
/// keeps delivering what it accepted; above it again, everything flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_free_space_floor_no_new_work_is_accepted() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let floor = |c: &mut isnad_node::config::Config| c.disk.free_space_floor_bytes = 1 << 30;
    let na = start_with(&a, &dir, tmp.path(), floor).await?;
    let nb = start_with(&b, &dir, tmp.path(), floor).await?;
    // Free space as the tests says; plenty to start with.
    let free_a = Arc::new(AtomicU64::new(u64::MAX));
    let free_b = Arc::new(AtomicU64::new(u64::MAX));
    for (n, f) in [(&na, &free_a), (&nb, &free_b)] {
        let f = Arc::clone(f);
        n.set_free_space_probe(Arc::new(move |_| Ok(f.load(Ordering::SeqCst))));
    }
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let api = isnad_node::api::serve(na.clone(), local, "t0ken".into()).await?;
    let health = "GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let answer = http(api, health).await?;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"ok\""),
        "{answer}"
    );
    // The sender runs low: submissions are refused, nothing is stored.
    free_a.store(100 << 20, Ordering::SeqCst);
    assert_eq!(reasons(&na), ["disk-below-floor"]);
    let answer = http(api, health).await?;
    assert!(
        answer.starts_with("HTTP/1.1 503")
            && answer.contains("\"degraded\"")
            && answer.contains("\"disk-below-floor\""),
        "{answer}"
    );
    let scrape = na.metrics().render(0);
    assert!(scrape.contains("isnad_degraded 1\n"), "{scrape}");
    assert!(scrape.contains("isnad_degraded_reason{reason=\"disk-below-floor\"} 1"));
    let json = isnad_envelope::body_to_json(&intel("via the API"))?;
    let body = format!(r#"{{"to":"fr.mj.bepi","kind":"intel-share","body":{json}}}"#);
    let post = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = http(api, &post).await?;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("disk-below-floor"),
        "{answer}"
    );
    let r = na.submit(b.id.clone(), intel("low"), None).await;
    assert!(
        matches!(&r, Err(NodeError::Unavailable(why)) if why.contains("disk-below-floor")),
        "{r:?}"
    );
    assert!(na.store().all_outbox()?.is_empty());
    free_a.store(u64::MAX, Ordering::SeqCst);
    // The receiver runs low: the message waits at the sender.
    free_b.store(0, Ordering::SeqCst);
    let id = na.submit(b.id.clone(), intel("wait"), None).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = na.store().outbox(&id)?.ok_or("record")?;
    assert_eq!(rec.state, OutState::Pending);
    assert!(rec.attempts >= 1, "tried and refused");
    assert!(
        rec.last_error
            .as_deref()
            .is_some_and(|e| e.contains("unavailable")),
        "{:?}",
        rec.last_error
    );
    assert!(nb.store().all_inbox()?.is_empty());
    assert_eq!(nb.metrics().rejected_count("degraded") as u32, rec.attempts);
    // While the sender is low it still delivers what it accepted.
    free_a.store(0, Ordering::SeqCst);
    free_b.store(u64::MAX, Ordering::SeqCst);
    wait_state(&na, &id, OutState::Delivered, 10).await?;
    assert_eq!(nb.store().inbox_by_id(&id)?.len(), 1);
    free_a.store(u64::MAX, Ordering::SeqCst);
    assert!(na.condition().is_ok() && nb.condition().is_ok());
    assert!(http(api, health).await?.starts_with("HTTP/1.1 200"));
    assert!(na.metrics().render(0).contains("isnad_degraded 0\n"));
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// One HTTP/1.1 exchange on loopback; the whole answer as text.
async fn http(
    addr: std::net::SocketAddr,
    request: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
