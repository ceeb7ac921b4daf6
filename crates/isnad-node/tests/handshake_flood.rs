//! A flood of unauthenticated QUIC handshakes does not lock a listed
//! partner out (spec/transport.md §5, threat-model.md; issue 14 item 2).
//!
//! Eight attacker addresses on loopback (127.0.0.2–127.0.0.9): six send
//! stalled first flights (a client Initial, then silence; they answer a
//! QUIC Retry, as an attacker with a real address can, and stall after
//! it), two complete handshakes without a client certificate. Meanwhile a
//! partner node that was not running starts and sends one message. One
//! test per file: the test reads its process's resident memory.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use isnad_node::store::OutState;
use support::*;

/// Attempts a second per attacker address (the upper bound).
const RATE: u64 = 500;
/// Delivery bound for the honest message (issue 14).
const DELIVERY_BOUND: Duration = Duration::from_secs(2);
/// Bound on the growth of the process's resident memory during the flood
/// (receiver, the partner node started during it, and the attackers: all
/// in this process). Measured 22–31 MiB; about twice that leaves room for
/// allocator noise on a loaded machine. (The node before this fix grew
/// 46 MiB here, its 256 stalled connections held 30 s each: under the
/// bound; what it failed is the delivery.)
const RSS_BOUND: u64 = 64 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_flood_does_not_lock_out_a_partner_connecting_fresh() -> TestResult {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let tmp = tempfile::tempdir()?;
    let dir = TestDirectory::default();
    let (a, b) = (agency("iq.moi.ahtd")?, agency("fr.mj.bepi")?);
    list(&dir, &a)?;
    list(&dir, &b)?;
    let nb = start(&b, &dir, tmp.path()).await?;
    let certless = certless_client()?;
    let base = rss_bytes()?;

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(base));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = rss_bytes() {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut stalled = Vec::new();
    for i in 2..=7u8 {
        let ip = IpAddr::from([127, 0, 0, i]);
        let (stop, client, name) = (Arc::clone(&stop), certless.clone(), b.id.to_string());
        stalled.push(tokio::spawn(stalled_flood(ip, b.addr, client, name, stop)));
    }
    let mut completing = Vec::new();
    for i in 8..=9u8 {
        let ip = IpAddr::from([127, 0, 0, i]);
        let (stop, client, name) = (Arc::clone(&stop), certless.clone(), b.id.to_string());
        completing.push(tokio::spawn(certless_flood(ip, b.addr, client, name, stop)));
    }

    // Let the flood take every slot it can (the old node's 256 were gone
    // within a fraction of a second), then the partner starts fresh.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let na = start(&a, &dir, tmp.path()).await?;
    let t0 = Instant::now();
    let id = na
        .submit(b.id.clone(), intel("through the flood"), None)
        .await?;
    let delivered = wait_state(&na, &id, OutState::Delivered, 6).await;
    let took = t0.elapsed();
    // Keep flooding a little after, for the memory bound.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for t in stalled {
        sent += t.await??;
    }
    let mut failed_handshakes = 0;
    for t in completing {
        failed_handshakes += t.await??;
    }
    sampler.await?;
    let grew = peak.load(Ordering::Relaxed).saturating_sub(base);
    let m = nb.metrics();
    eprintln!(
        "flood: {sent} stalled first flights from 6 addresses, {failed_handshakes} certificate-less \
         handshakes from 2, over {:.1} s; honest message delivered in {took:?} ({delivered:?}); \
         process RSS grew {:.1} MiB; receiver: {} retries, {} failed handshakes, {} refused per \
         address, {} over the limit",
        t0.elapsed().as_secs_f64() + 3.0,
        grew as f64 / (1024.0 * 1024.0),
        m.handshake_retries.get(),
        m.handshakes_failed.get(),
        m.rejected_count("handshake-per-address"),
        m.rejected_count("handshake-limit"),
    );
    delivered?;
    assert!(
        took <= DELIVERY_BOUND,
        "the honest message took {took:?} through the flood (bound {DELIVERY_BOUND:?})"
    );
    assert!(
        grew <= RSS_BOUND,
        "resident memory grew {grew} bytes during the flood (bound {RSS_BOUND})"
    );
    // The flood was real and met each defence.
    assert!(sent > 1000, "only {sent} stalled attempts were sent");
    assert!(m.handshake_retries.get() > 0, "no Retry was sent");
    assert!(m.rejected_count("handshake-per-address") > 0);
    assert!(m.handshakes_failed.get() > 0);
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}

/// Sends `RATE` first flights a second from `ip`, answers a Retry once,
/// and never answers anything else: each attempt stalls at the server.
/// Returns the number of attempts. Uses quinn's sans-IO core so an attempt
/// costs the attacker no task and is forgotten after 0.3 s (a Retry comes
/// within a round trip or not at all).
async fn stalled_flood(
    ip: IpAddr,
    to: SocketAddr,
    client: quinn::ClientConfig,
    name: String,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let sock = tokio::net::UdpSocket::bind((ip, 0))
        .await
        .map_err(|x| e(&x))?;
    let mut ep = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        false,
        None,
    );
    let mut live: HashMap<quinn_proto::ConnectionHandle, (quinn_proto::Connection, Instant)> =
        HashMap::new();
    let mut buf = Vec::with_capacity(2048);
    let mut datagram = vec![0u8; 65_536];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                // Catch up to RATE per second since the start, at most 50 at once.
                let due = (started.elapsed().as_millis() as u64 * RATE / 1000).saturating_sub(sent);
                for _ in 0..due.min(50) {
                    let now = Instant::now();
                    let (ch, mut conn) = ep
                        .connect(now, client.clone(), to, &name)
                        .map_err(|x| e(&x))?;
                    transmit(&mut conn, &sock, &mut buf).await;
                    live.insert(ch, (conn, now));
                    sent += 1;
                }
                // Forget attempts whose Retry did not come within 300 ms, and
                // the oldest beyond 64 (the attacker's own memory counts in
                // this process's RSS).
                let mut old: Vec<_> = live.iter().map(|(h, (_, t))| (*t, *h)).collect();
                old.sort();
                let excess = live.len().saturating_sub(64);
                let old: Vec<_> = old
                    .into_iter()
                    .enumerate()
                    .filter(|(i, (t, _))| *i < excess || t.elapsed() > Duration::from_millis(300))
                    .map(|(_, (_, h))| h)
                    .collect();
                for h in old {
                    live.remove(&h);
                    ep.handle_event(h, quinn_proto::EndpointEvent::drained());
                }
            }
            r = sock.recv_from(&mut datagram) => {
                let Ok((n, from)) = r else { continue };
                // Only a Retry (long header, type 3) is answered.
                let first = datagram.first().copied().unwrap_or(0);
                if n == 0 || first & 0x80 == 0 || (first >> 4) & 0x03 != 3 {
                    continue;
                }
                let data = bytes::BytesMut::from(&datagram[..n]);
                buf.clear();
                let event = ep.handle(Instant::now(), from, None, None, data, &mut buf);
                if let Some(quinn_proto::DatagramEvent::ConnectionEvent(h, ev)) = event {
                    if let Some((mut conn, _)) = live.remove(&h) {
                        conn.handle_event(ev);
                        transmit(&mut conn, &sock, &mut buf).await;
                        ep.handle_event(h, quinn_proto::EndpointEvent::drained());
                    }
                }
            }
        }
    }
    Ok(sent)
}

/// Sends what `conn` has queued.
async fn transmit(
    conn: &mut quinn_proto::Connection,
    sock: &tokio::net::UdpSocket,
    buf: &mut Vec<u8>,
) {
    loop {
        buf.clear();
        let Some(t) = conn.poll_transmit(Instant::now(), 1, buf) else {
            return;
        };
        let _ = sock.send_to(&buf[..t.size], t.destination).await;
    }
}

/// Completes handshakes from `ip` without a client certificate, up to
/// `RATE` a second and 32 at once; returns how many were tried.
async fn certless_flood(
    ip: IpAddr,
    to: SocketAddr,
    client: quinn::ClientConfig,
    name: String,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut ep = quinn::Endpoint::client(SocketAddr::new(ip, 0)).map_err(|x| x.to_string())?;
    ep.set_default_client_config(client);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tried = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..RATE / 100 {
            let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
                break;
            };
            let Ok(connecting) = ep.connect(to, &name) else {
                break;
            };
            tried += 1;
            tokio::spawn(async move {
                let _permit = permit;
                let _ = tokio::time::timeout(Duration::from_secs(2), async move {
                    if let Ok(conn) = connecting.await {
                        // The server refuses the missing certificate after
                        // the client's last flight.
                        conn.closed().await;
                    }
                })
                .await;
            });
        }
    }
    ep.close(quinn::VarInt::from_u32(0), b"");
    Ok(tried)
}

/// A client that offers no certificate and accepts any server certificate.
fn certless_client() -> Result<quinn::ClientConfig, Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"isnad/1".to_vec()];
    Ok(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls)?,
    )))
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
