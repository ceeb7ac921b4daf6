//! Where the node and the spec used to disagree: datagrams, the message id
//! in refusals of authenticated envelopes, a stream left unfinished, the
//! lifetime of receipts, a replay with other bytes (spec/transport.md), the
//! INFO line per message, and the local API's error bodies and bearer
//! scheme (spec/api.yaml). Two nodes (or a node and a raw client) over real
//! QUIC on loopback; the API over loopback TCP.
//!
//! Support code (tests/support) stands in for the federation layer.

mod support;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use ciborium::value::Value;
use isnad_envelope::*;
use isnad_log::{Entry, EventType};
use isnad_node::store::OutState;
use ring::rand::SystemRandom;
use support::*;

/// Every line the node logs in this test binary: one global subscriber
/// (the node's tasks run on tokio's worker threads), set up by the first
/// test that calls this.
fn captured() -> &'static Mutex<Vec<u8>> {
    static LINES: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(|| Capture)
            .try_init();
    });
    LINES.get_or_init(Mutex::default)
}

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut l) = captured().lock() {
            l.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The INFO lines logged so far that mention `needle`.
fn info_lines_with(needle: &str) -> Vec<String> {
    let all = captured()
        .lock()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .unwrap_or_default();
    all.lines()
        .filter(|l| l.contains(" INFO ") && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn secs_now() -> Result<u64, Box<dyn std::error::Error>> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

fn frame(env: Vec<u8>) -> Vec<u8> {
    isnad_wire::Request {
        op: isnad_wire::Op::Deliver,
        payload: env,
    }
    .encode()
}

fn entries(node: &isnad_node::NodeHandle) -> Result<Vec<Entry>, Box<dyn std::error::Error>> {
    let log = node.log();
    (0..log.size())
        .map(|i| Ok(Entry::decode(&log.entry_bytes(i)?)?))
        .collect()
}

/// transport.md §2: datagrams are not used, so the node does not advertise
/// them (the QUIC `max_datagram_frame_size` transport parameter is absent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_does_not_offer_datagrams() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let nb = start(&b, &dir, tmp.path()).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    assert_eq!(
        conn.max_datagram_size(),
        None,
        "the peer advertises datagrams"
    );
    assert!(conn.send_datagram(vec![1, 2, 3].into()).is_err());
    nb.shutdown().await;
    Ok(())
}

/// transport.md §3.2 / protocol.md §7: a refusal found after the signature
/// verified (`unsupported-version`, `misaddressed`, `not-yet-valid`,
/// `expired`) names the message id; one found before (`unauthentic`) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_authenticated_envelopes_name_the_message_id() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b, c) = (
        agency("iq.moi.ahtd")?,
        agency("fr.mj.bepi")?,
        agency("fr.pn.ocrtis")?,
    );
    for x in [&a, &b, &c] {
        list(&dir, x)?;
    }
    let nb = start(&b, &dir, tmp.path()).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let rng = SystemRandom::new();
    let a_sign = SigningKey::from_pkcs8_pem(&a.sign_pem)?;
    let b_enc = EncryptionKey::from_pkcs8_pem(&b.enc_pem)?;
    let now = secs_now()?;
    let msg = |to: &AgencyId,
               created: u64,
               expires: u64|
     -> Result<Message, Box<dyn std::error::Error>> {
        Ok(Message {
            header: Header {
                id: MessageId::random(&rng)?,
                sender: a.id.clone(),
                recipient: to.clone(),
                created,
                expires,
            },
            body: intel("refused"),
        })
    };
    let cases = [
        (msg(&c.id, now, now + 3600)?, ErrorCode::Misaddressed),
        (msg(&b.id, now - 7200, now - 3600)?, ErrorCode::Expired),
        (msg(&b.id, now + 7200, now + 9000)?, ErrorCode::NotYetValid),
    ];
    for (m, want) in cases {
        let env = seal(&m, &a_sign, b_enc.public_key(), &Limits::default(), &rng)?;
        let r = raw_request(&conn, &frame(env)).await?;
        match r {
            isnad_wire::Response::Error {
                code, message_id, ..
            } => {
                assert_eq!(code, want);
                assert_eq!(message_id, Some(m.header.id), "{want}: id missing");
            }
            other => return Err(format!("{want}: answered {other:?}").into()),
        }
    }
    // Version 2, signed by a's key: refused after the signature verified.
    let id = MessageId::random(&rng)?;
    let text = |s: &str| Value::Text(s.into());
    let claims = testing::deterministic(&Value::Map(vec![
        (text("v"), Value::Integer(2.into())),
        (text("id"), Value::Bytes(id.as_bytes().to_vec())),
        (text("from"), text(a.id.as_str())),
        (text("to"), text(b.id.as_str())),
        (text("iat"), Value::Integer(now.into())),
        (text("exp"), Value::Integer((now + 3600).into())),
        (text("kind"), text("intel-share")),
        (text("body"), Value::Map(vec![])),
    ]));
    let signed = testing::sign_raw_claims(&claims, &a_sign, &rng)?;
    let env = testing::encrypt_raw(&signed, b_enc.public_key(), &rng)?;
    match raw_request(&conn, &frame(env)).await? {
        isnad_wire::Response::Error {
            code, message_id, ..
        } => {
            assert_eq!(code, ErrorCode::UnsupportedVersion);
            assert_eq!(message_id, Some(id));
        }
        other => return Err(format!("v2 answered {other:?}").into()),
    }
    // Tampered: unauthentic, no id (nothing about it was authenticated).
    let mut bad = seal(
        &msg(&b.id, now, now + 3600)?,
        &a_sign,
        b_enc.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let n = bad.len() - 30;
    bad[n] ^= 1;
    match raw_request(&conn, &frame(bad)).await? {
        isnad_wire::Response::Error {
            code, message_id, ..
        } => {
            assert_eq!(code, ErrorCode::Unauthentic);
            assert_eq!(message_id, None);
        }
        other => return Err(format!("tampered answered {other:?}").into()),
    }
    nb.shutdown().await;
    Ok(())
}

/// transport.md §2 and §5: a request stream left unfinished past the stream
/// time limit still gets exactly one response frame (`unavailable`, so the
/// sender retries), and the server stops reading with code 0x49.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_stream_gets_one_answer_and_stop_sending_0x49() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let nb = start_with(&b, &dir, tmp.path(), |c| c.limits.stream_timeout_secs = 1).await?;
    let conn = raw_connect(&a, &dir, &b).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    // A length prefix of 100 and 10 bytes of body, then nothing (no FIN).
    send.write_all(&[0, 0, 0, 100]).await?;
    send.write_all(&[0; 10]).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 16)).await??;
    let body = answer.get(4..).ok_or("no response frame")?;
    let r = isnad_wire::Response::decode(body)?;
    assert_eq!(error_code(&r), Some(ErrorCode::Unavailable), "{r:?}");
    let stopped = tokio::time::timeout(Duration::from_secs(10), send.stopped()).await??;
    assert_eq!(stopped, Some(quinn::VarInt::from_u32(0x49)));
    // Nothing was logged for it (a timeout is not a refused message).
    assert_eq!(nb.log().size(), 0);
    nb.shutdown().await;
    Ok(())
}

/// protocol.md §4.4: a receipt lives `max_lifetime_secs` (90 days) from its
/// `iat`, so the receipt returned to a retry made just before a 90-day
/// message expires still verifies (it used to live 30 days).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_still_verifies_when_its_message_is_about_to_expire() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (na, nb) = (
        start(&a, &dir, tmp.path()).await?,
        start(&b, &dir, tmp.path()).await?,
    );
    let id = na
        .submit(b.id.clone(), intel("long-lived"), Some(90 * 24 * 3600))
        .await?;
    wait_state(&na, &id, OutState::Delivered, 15).await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    let receipt = rec.receipt.ok_or("no receipt")?;
    let opener = Opener {
        me: &a.id,
        keys: &[],
        limits: Limits::default(),
    };
    // The last second a retry can be made.
    let late = opener.open_signed(&receipt, rec.expires - 1, &dir)?;
    let h = &late.message.header;
    assert_eq!(h.expires - h.created, Limits::default().max_lifetime_secs);
    assert!(matches!(late.message.body, Body::Receipt(ref r) if r.message_id == id));
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// transport.md §6: when the recipient already accepted other bytes under
/// the message's id, it answers every retry with the receipt of those
/// bytes; the sender then fails the message at once (`replayed`, logged
/// `delivery-failed` with the peer's index) instead of retrying until expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_for_other_bytes_under_the_same_id_fails_the_message() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    // a's directory entry for b points nowhere until the other bytes are in.
    let dead = free_udp_port()?;
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .agencies
        .get_mut(&b.id)
        .ok_or("b not listed")?
        .0 = dead;
    let (na, nb) = (
        start(&a, &dir, tmp.path()).await?,
        start(&b, &dir, tmp.path()).await?,
    );
    let id = na.submit(b.id.clone(), intel("twice"), None).await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    // The same signed message encrypted again: other bytes, same id.
    let b_enc = EncryptionKey::from_pkcs8_pem(&b.enc_pem)?;
    let opened = Opener {
        me: &b.id,
        keys: std::slice::from_ref(&b_enc),
        limits: Limits::default(),
    }
    .reopen_accepted(&rec.envelope, &dir)?;
    let rng = SystemRandom::new();
    let other = testing::encrypt_raw(&opened.signed, b_enc.public_key(), &rng)?;
    assert_ne!(other, rec.envelope);
    let conn = raw_connect(&a, &dir, &b).await?;
    let first = raw_request(&conn, &frame(other.clone())).await?;
    assert!(error_code(&first).is_none(), "{first:?}");
    dir.0
        .write()
        .map_err(|_| "poisoned")?
        .agencies
        .get_mut(&b.id)
        .ok_or("b not listed")?
        .0 = b.addr;
    na.kick();
    wait_state(&na, &id, OutState::Failed, 15).await?;
    let rec = na.store().outbox(&id)?.ok_or("no outbox record")?;
    let why = rec.last_error.unwrap_or_default();
    assert!(why.starts_with("replayed"), "{why}");
    let failed: Vec<Entry> = entries(&na)?
        .into_iter()
        .filter(|e| e.event == EventType::DeliveryFailed && e.message_id == Some(id))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason.as_deref(), Some("replayed"));
    assert_eq!(
        failed[0].detail.get("acknowledged-sha256"),
        Some(&Digest::sha256(&other).to_hex())
    );
    let b_received = entries(&nb)?
        .into_iter()
        .position(|e| e.event == EventType::Received && e.message_id == Some(id))
        .ok_or("b did not log the other bytes")?;
    assert_eq!(failed[0].peer_index, Some(b_received as u64));
    assert_eq!(nb.store().all_inbox()?.len(), 1);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// An INFO line per message sent, received and refused, with the message
/// id and the peer as fields. (Relayed messages: tests/relay.rs covers the
/// relay path; the line is `message relayed`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_sent_received_or_refused_has_an_info_line() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moj.ca")?, agency("fr.pn.ocrtis")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let (na, nb) = (
        start(&a, &dir, tmp.path()).await?,
        start(&b, &dir, tmp.path()).await?,
    );
    let id = na.submit(b.id.clone(), intel("logged"), None).await?;
    wait_state(&na, &id, OutState::Delivered, 15).await?;
    let lines = info_lines_with(&id.to_string());
    let has = |what: &str, peer: &AgencyId| {
        lines
            .iter()
            .any(|l| l.contains(what) && l.contains(&format!("peer={peer}")))
    };
    assert!(has("message sent", &b.id), "{lines:#?}");
    assert!(has("message received", &a.id), "{lines:#?}");
    // Refused: an expired envelope from a.
    let rng = SystemRandom::new();
    let now = secs_now()?;
    let old = Message {
        header: Header {
            id: MessageId::random(&rng)?,
            sender: a.id.clone(),
            recipient: b.id.clone(),
            created: now - 7200,
            expires: now - 3600,
        },
        body: intel("old"),
    };
    let env = seal(
        &old,
        &SigningKey::from_pkcs8_pem(&a.sign_pem)?,
        EncryptionKey::from_pkcs8_pem(&b.enc_pem)?.public_key(),
        &Limits::default(),
        &rng,
    )?;
    let conn = raw_connect(&a, &dir, &b).await?;
    raw_request(&conn, &frame(env)).await?;
    let lines = info_lines_with(&old.header.id.to_string());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("message refused") && l.contains(&format!("peer={}", a.id))),
        "{lines:#?}"
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// One HTTP/1.1 request on a fresh connection: the status and the body.
async fn http(
    addr: std::net::SocketAddr,
    request: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out)?;
    let status = text.get(9..12).ok_or("short answer")?.parse()?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, body.to_owned()))
}

/// spec/api.yaml: malformed JSON (400), missing fields (422) and a wrong
/// content type (415) are answered with the `Error` JSON, not plain text;
/// the `Bearer` scheme is matched case-insensitively (RFC 9110 §11.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_and_the_bearer_scheme_is_case_insensitive() -> TestResult {
    let _ = captured();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let a = agency("iq.moi.ahtd")?;
    list(&dir, &a)?;
    let node = start(&a, &dir, tmp.path()).await?;
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let api = isnad_node::api::serve(node.clone(), local, "t0ken".into()).await?;
    let post = |auth: &str, ctype: &str, body: &str| {
        format!(
            "POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: {auth}\r\nContent-Type: {ctype}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        (
            post("Bearer t0ken", "application/json", "{\"to\": "),
            400,
            "bad-json",
        ),
        (
            post(
                "Bearer t0ken",
                "application/json",
                r#"{"to":"fr.mj.bepi","kind":"intel-share"}"#,
            ),
            422,
            "invalid-request",
        ),
        (
            post("Bearer t0ken", "text/plain", "{}"),
            415,
            "unsupported-media-type",
        ),
    ];
    for (request, status, code) in cases {
        let (got, body) = http(api, &request).await?;
        assert_eq!(got, status, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("{status}: not JSON ({e}): {body:?}"))?;
        assert_eq!(v["error"], code, "{body}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let get = |auth: &str| {
        format!("GET /v1/inbox HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\n\r\n")
    };
    for auth in ["Bearer t0ken", "bearer t0ken", "BEARER t0ken"] {
        assert_eq!(http(api, &get(auth)).await?.0, 200, "{auth}");
    }
    for auth in ["Bearer t0ken2", "Basic t0ken", "bearert0ken"] {
        assert_eq!(http(api, &get(auth)).await?.0, 401, "{auth}");
    }
    node.shutdown().await;
    Ok(())
}
