//! `GET /v1/events` (spec/api.yaml): case systems are told of new messages,
//! status changes and delivery outcomes without polling, resume after a
//! reconnect from the last event id, and the stream ends at shutdown.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use isnad_node::store::OutState;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "t0ken";

/// Opens an event stream; returns the connection after the request.
async fn open(api: SocketAddr, query: &str, extra: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(api).await?;
    let req = format!(
        "GET /v1/events{query} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    Ok(s)
}

/// Reads until the text received so far contains every needle.
async fn read_until(s: &mut TcpStream, seen: &mut String, needles: &[&str]) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !needles.iter().all(|n| seen.contains(n)) {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .map_err(|_| format!("no {needles:?} in the stream; got: {seen}"))??;
        if n == 0 {
            return Err(format!("stream ended before {needles:?}: {seen}").into());
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}

/// The `id:` of the event that carries `needle`.
fn id_of_event_with(text: &str, needle: &str) -> Option<u64> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.rfind("id: ")?;
    before[line + 4..].lines().next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_of_new_messages_and_deliveries_and_resume_from_the_last_id() -> TestResult {
    let (_tmp, _, [_, b], [na, nb]) = pair("iq.moi.ahtd", "fr.mj.bepi").await?;
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let api_a = isnad_node::api::serve(na.clone(), local, TOKEN.into()).await?;
    let api_b = isnad_node::api::serve(nb.clone(), local, TOKEN.into()).await?;

    // Without the token: 401, no stream.
    let mut s = TcpStream::connect(api_b).await?;
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");

    let mut ev_a = open(api_a, "", "").await?;
    let mut ev_b = open(api_b, "", "").await?;
    let (mut seen_a, mut seen_b) = (String::new(), String::new());
    read_until(&mut ev_b, &mut seen_b, &["text/event-stream"]).await?;
    read_until(&mut ev_a, &mut seen_a, &["text/event-stream"]).await?;

    let id = na.submit(b.id.clone(), intel("hello"), None).await?;
    wait_state(&na, &id, OutState::Delivered, 10).await?;
    let id_json = format!("\"message_id\":\"{}\"", id.to_hex());
    // The recipient is told of the new message, the sender of its delivery.
    read_until(
        &mut ev_b,
        &mut seen_b,
        &["event: message-received", &id_json],
    )
    .await?;
    read_until(&mut ev_a, &mut seen_a, &["event: delivered", &id_json]).await?;
    let index = id_of_event_with(&seen_b, &id_json).ok_or("event id")?;
    // The event id is the log index of the `received` entry, as in the inbox.
    let inbox = nb.store().inbox_by_id(&id)?;
    assert_eq!(inbox[0].log_index, index);

    // A client that asks from that index on gets it again.
    let mut again = open(api_b, &format!("?from={index}"), "").await?;
    let mut seen = String::new();
    read_until(
        &mut again,
        &mut seen,
        &["event: message-received", &id_json],
    )
    .await?;
    assert_eq!(id_of_event_with(&seen, &id_json), Some(index));
    // One that saw it does not get it again (only later events).
    let mut after = open(api_b, "", &format!("Last-Event-ID: {index}\r\n")).await?;
    let id2 = na.submit(b.id.clone(), intel("second"), None).await?;
    wait_state(&na, &id2, OutState::Delivered, 10).await?;
    let id2_json = format!("\"message_id\":\"{}\"", id2.to_hex());
    let mut seen = String::new();
    read_until(&mut after, &mut seen, &[&id2_json]).await?;
    let ids: Vec<u64> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.trim().parse().ok())
        .collect();
    assert!(!ids.is_empty());
    assert!(
        ids.iter().all(|&i| i > index),
        "an event at or before Last-Event-ID {index} came again: {seen}"
    );

    // Shutdown ends open streams instead of waiting for them.
    tokio::time::timeout(Duration::from_secs(10), nb.shutdown())
        .await
        .map_err(|_| "shutdown waited for an open event stream")?;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), after.read_to_end(&mut rest))
        .await
        .map_err(|_| "the stream did not end at shutdown")??;
    na.shutdown().await;
    Ok(())
}
