//! Soak: two real node processes on loopback, one client submitting through
//! the sender's local API at a steady rate for a bounded time (so a bounded
//! count). Every second the harness samples both processes' resident memory
//! (`VmRSS` in /proc/<pid>/status) and the sender's queue depth and delivered
//! count (its metrics endpoint). At the end every message must be delivered
//! exactly once, and:
//!
//! - memory is flat after warm-up: a least-squares fit of each process's
//!   RSS against the number of messages delivered, over the samples after
//!   the first third (warm-up: allocator pools, the database page cache
//!   filling, TLS state), grows by at most [`RSS_KIB_PER_MESSAGE`] KiB per
//!   message. What legitimately grows is the audit log's in-memory tree
//!   (about 64 bytes per entry, a few entries per message); a retained
//!   envelope (about 2 KiB) per message fails the check;
//! - the queue stays bounded: never more than [`QUEUE_SECS`] seconds of
//!   traffic pending, and empty once the client stops.
//!
//! Reports throughput, submission-to-receipt latency (p50/p99/max), RSS
//! over time with a least-squares slope, and the queue depth; writes the
//! report to `target/isnad-soak.json`.
//!
//! Defaults: 45 s at 50 messages/s. `ISNAD_LONG=1` runs 300 s;
//! `ISNAD_SOAK_SECS` and `ISNAD_SOAK_RATE` override both.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests panic on failure by design.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};

/// Allowed RSS growth per delivered message after warm-up, KiB.
const RSS_KIB_PER_MESSAGE: f64 = 1.5;
/// The queue may hold at most this many seconds of traffic.
const QUEUE_SECS: f64 = 5.0;

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Clone)]
struct Sample {
    t_secs: f64,
    sender_rss_kib: u64,
    receiver_rss_kib: u64,
    queue_depth: u64,
    delivered: u64,
}

impl Sample {
    fn json(&self) -> Value {
        json!({
            "t_secs": self.t_secs, "sender_rss_kib": self.sender_rss_kib,
            "receiver_rss_kib": self.receiver_rss_kib, "queue_depth": self.queue_depth,
            "delivered": self.delivered,
        })
    }
}

#[test]
fn steady_load_memory_flat_queue_bounded_nothing_lost() {
    let long = std::env::var("ISNAD_LONG").is_ok_and(|v| v == "1");
    let secs = env_f64("ISNAD_SOAK_SECS").unwrap_or(if long { 300.0 } else { 45.0 });
    let rate = env_f64("ISNAD_SOAK_RATE").unwrap_or(50.0);
    let count = (secs * rate).round() as usize;
    let tmp = tempfile::tempdir().unwrap();
    let (from, to) = ("iq.moi.ahtd", "iq.moj.ca");
    let mut fed = Federation::new(tmp.path(), &[from, to]);
    for n in fed.nodes.iter_mut() {
        n.start();
    }
    for n in &fed.nodes {
        n.wait_api();
    }
    let pids = [fed.nodes[0].pid().unwrap(), fed.nodes[1].pid().unwrap()];
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let api = |n: usize| (format!("http://{}", fed.nodes[n].api), fed.nodes[n].token());
    let (sender_api, sender_token) = api(0);

    // The client: one message every 1/rate seconds, on a fixed schedule.
    let submitted: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (agent, submitted, stop) = (agent.clone(), Arc::clone(&submitted), Arc::clone(&stop));
        let (url, auth) = (
            format!("{sender_api}/v1/messages"),
            format!("Bearer {sender_token}"),
        );
        std::thread::spawn(move || {
            let begin = Instant::now();
            for i in 0..count {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = begin + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let text = format!("soak {i}");
                // Each message is a new piece of intelligence: its own share id.
                let share_id = format!("{i:032x}");
                let body = json!({
                    "to": to, "kind": "intel-share",
                    "body": {
                        "share-id": share_id, "handling": "H0",
                        "source-grading": "A", "information-grading": 1, "tlp": "green",
                        "classification": "RESTRICTED", "summary": text, "content": text,
                    },
                });
                let sent_ms = now_ms();
                let mut resp = agent
                    .post(&url)
                    .header("Authorization", &auth)
                    .send_json(&body)
                    .expect("submit");
                let v: Value = resp.body_mut().read_json().expect("submit answer");
                let id = v["id"].as_str().expect("id").to_owned();
                submitted.lock().unwrap().push((id, sent_ms));
            }
            begin.elapsed()
        })
    };

    // The sampler, every second until the client is done and the queue drained.
    let metrics_url = format!("http://{}/metrics", fed.nodes[0].metrics.unwrap());
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    let begin = Instant::now();
    let mut samples = Vec::new();
    let drain_deadline = Duration::from_secs_f64(secs + 120.0);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let text = agent
            .get(&metrics_url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .unwrap_or_default();
        let s = Sample {
            t_secs: begin.elapsed().as_secs_f64(),
            sender_rss_kib: rss_kib(pids[0]),
            receiver_rss_kib: rss_kib(pids[1]),
            queue_depth: metric(&text, "isnad_queue_depth"),
            delivered: metric(&text, "isnad_messages_delivered_total"),
        };
        let done = client.is_finished() && s.delivered as usize >= count;
        samples.push(s);
        if done {
            break;
        }
        if begin.elapsed() > drain_deadline {
            stop.store(true, Ordering::Relaxed);
            panic!("not drained {drain_deadline:?} after the start: {samples:?}");
        }
    }
    let client_took = client.join().expect("client thread");
    let total = begin.elapsed();

    // Exactly once, with receipts; latency from the client's request to the
    // receipt's arrival at the sender.
    let get = |n: usize, path: &str| -> Value {
        let (base, token) = api(n);
        agent
            .get(&format!("{base}{path}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .expect("GET")
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_json()
            .expect("JSON")
    };
    // Every record, page by page (spec/api.yaml: limit, after).
    let get_all = |n: usize, path: &str| -> Value {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let after = all
                .last()
                .map(|r| format!("&after={}", r["id"].as_str().unwrap()));
            let page = get(
                n,
                &format!("{path}?limit=1000{}", after.unwrap_or_default()),
            );
            let page = page.as_array().unwrap().clone();
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Value::Array(all);
            }
        }
    };
    let outbox: BTreeMap<String, Value> = get_all(0, "/v1/outbox")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect();
    let inbox = get_all(1, "/v1/inbox");
    let mut in_ids: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    in_ids.sort_unstable();
    let submitted = submitted.lock().unwrap().clone();
    assert_eq!(submitted.len(), count, "the client stopped early");
    assert_eq!(in_ids.len(), count, "receiver inbox size");
    in_ids.dedup();
    assert_eq!(in_ids.len(), count, "a message was stored twice");
    let mut latencies: Vec<u64> = submitted
        .iter()
        .map(|(id, sent_ms)| {
            let r = &outbox[id];
            assert_eq!(r["state"], "delivered", "{r}");
            assert!(r["receipt_hex"].is_string(), "no receipt: {r}");
            r["delivered_ms"].as_u64().unwrap().saturating_sub(*sent_ms)
        })
        .collect();
    latencies.sort_unstable();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];

    // Memory after warm-up, and the queue.
    let after = &samples[samples.len() / 3..];
    let mut rss = Vec::new();
    for (name, f) in [
        (
            "sender",
            (|s: &Sample| s.sender_rss_kib) as fn(&Sample) -> u64,
        ),
        ("receiver", |s: &Sample| s.receiver_rss_kib),
    ] {
        let per_message = slope(
            &after
                .iter()
                .map(|s| (s.delivered as f64, f(s) as f64))
                .collect::<Vec<_>>(),
        );
        let per_minute = slope(
            &after
                .iter()
                .map(|s| (s.t_secs / 60.0, f(s) as f64))
                .collect::<Vec<_>>(),
        );
        let (first, last) = (after.first().map_or(0, f), after.last().map_or(0, f));
        rss.push(json!({
            "node": name, "after_warm_up_first_kib": first, "last_kib": last,
            "kib_per_message": per_message, "kib_per_minute": per_minute,
            "allowed_kib_per_message": RSS_KIB_PER_MESSAGE,
            "max_kib": samples.iter().map(f).max(),
        }));
        assert!(
            per_message <= RSS_KIB_PER_MESSAGE,
            "{name} memory grows {per_message:.2} KiB per message after warm-up \
             (allowed {RSS_KIB_PER_MESSAGE}): {samples:?}"
        );
    }
    let max_queue = samples.iter().map(|s| s.queue_depth).max().unwrap_or(0);
    let last_queue = samples.last().map_or(0, |s| s.queue_depth);
    let queue_bound = (rate * QUEUE_SECS).ceil() as u64;

    let report = json!({
        "messages": count,
        "rate_per_sec": rate,
        "submission_secs": client_took.as_secs_f64(),
        "total_secs": total.as_secs_f64(),
        "throughput_per_sec": count as f64 / total.as_secs_f64(),
        "latency_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": latencies.last() },
        "rss": rss,
        "queue_depth": { "max": max_queue, "last": last_queue, "bound": queue_bound },
        "samples": samples.iter().map(Sample::json).collect::<Vec<_>>(),
    });
    println!(
        "soak: {count} messages at {rate}/s, submitted in {:.1} s, all delivered in {:.1} s \
         ({:.1}/s); latency p50 {} ms, p99 {} ms, max {} ms; queue depth max {max_queue} \
         (bound {queue_bound}); RSS: {}",
        client_took.as_secs_f64(),
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        latencies.last().unwrap_or(&0),
        rss.iter()
            .map(|r| format!(
                "{} {:.1} → {:.1} MiB after warm-up ({:+.2} KiB/message, {:+.0} KiB/min)",
                r["node"].as_str().unwrap_or(""),
                r["after_warm_up_first_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                r["last_kib"].as_f64().unwrap_or(0.0) / 1024.0,
                r["kib_per_message"].as_f64().unwrap_or(0.0),
                r["kib_per_minute"].as_f64().unwrap_or(0.0)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/isnad-soak.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("written to {}", path.display());
    assert!(
        max_queue <= queue_bound,
        "queue depth reached {max_queue} (bound {queue_bound})"
    );
    assert_eq!(last_queue, 0, "queue not empty at the end");

    for n in fed.nodes.iter_mut() {
        n.stop();
    }
    for n in &fed.nodes {
        n.export_and_verify_log();
    }
}

/// Resident set size of process `pid` in KiB (0 if unreadable).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}
