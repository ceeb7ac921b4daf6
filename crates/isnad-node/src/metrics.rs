//! Prometheus metrics, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds of the latency histogram buckets, milliseconds.
const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000, 30_000, 300_000];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

impl Histogram {
    /// Renders the histogram in the text format under `name`.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                *b as f64 / 1000.0,
                self.buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count {count}");
    }

    /// Mean of the observations in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        let c = self.count.load(Ordering::Relaxed);
        if c == 0 {
            0.0
        } else {
            self.sum_ms.load(Ordering::Relaxed) as f64 / c as f64
        }
    }

    /// Records one observation.
    pub fn observe_ms(&self, ms: u64) {
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The names of every reason the node can be degraded for
/// ([`crate::health::Reason`]), each an `isnad_degraded_reason` label.
pub const DEGRADED_REASONS: [&str; 4] = [
    "log-poisoned",
    "database-write-failing",
    "disk-below-floor",
    "key-unavailable",
];

/// Every metric the node exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages accepted from local clients.
    pub submitted: Counter,
    /// Messages delivered (receipt verified).
    pub delivered: Counter,
    /// Delivery attempts that failed and will be retried.
    pub retries: Counter,
    /// Messages refused by the recipient with a final error.
    pub failed: Counter,
    /// Messages that expired undelivered.
    pub expired: Counter,
    /// Relayed messages that expired without their end-to-end receipt.
    pub end_to_end_missing: Counter,
    /// Retransmissions answered with a stored receipt.
    pub duplicates: Counter,
    /// Bytes of envelopes received.
    pub received_bytes: Counter,
    /// Audit-log appends.
    pub log_appends: Counter,
    /// Pending outbox messages.
    pub queue_depth: Gauge,
    /// Submission-to-receipt latency.
    pub latency: Histogram,
    /// Time for one durable audit-log append (queueing and group commit included).
    pub append_latency: Histogram,
    /// Partners' checkpoints this node cosigned as a witness.
    pub witness_cosigned: Counter,
    /// Add-checkpoint requests this node refused as a witness.
    pub witness_refused: Counter,
    /// Fork evidence recorded: a partner's log contradicted a checkpoint this node cosigned.
    pub witness_forks: Counter,
    /// Size of this node's latest checkpoint that reached the witness quorum.
    pub witnessed_size: Gauge,
    /// Incoming handshakes that failed or ran out of time before the peer
    /// was authenticated (logged at debug level only).
    pub handshakes_failed: Counter,
    /// Incoming connection attempts asked to prove their address (QUIC Retry).
    pub handshake_retries: Counter,
    /// Incoming handshakes in progress.
    pub handshakes_in_progress: Gauge,
    /// Authenticated incoming connections open.
    pub peer_connections: Gauge,
    /// Bytes of request bodies reserved by requests being read or processed.
    pub body_bytes_in_flight: Gauge,
    /// Delivery bookkeeping writes (audit log or state database) that
    /// failed; new deliveries then back off (spec/transport.md §9).
    pub bookkeeping_failures: Counter,
    received_by_kind: Mutex<BTreeMap<String, u64>>,
    rejected_by_reason: Mutex<BTreeMap<String, u64>>,
    /// Reasons the node is degraded now (`crate::health`); empty = ok.
    degraded: Mutex<Vec<&'static str>>,
}

impl Metrics {
    /// Counts an accepted incoming message of `kind`.
    pub fn inc(&self, kind: &str) {
        if let Ok(mut m) = self.received_by_kind.lock() {
            *m.entry(kind.to_owned()).or_default() += 1;
        }
    }

    /// Counts a rejection by reason.
    pub fn rejected(&self, reason: &str) {
        if let Ok(mut m) = self.rejected_by_reason.lock() {
            *m.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Sets the reasons the node is degraded (empty: ok).
    pub(crate) fn set_degraded(&self, reasons: &[&'static str]) {
        if let Ok(mut d) = self.degraded.lock() {
            *d = reasons.to_vec();
        }
    }

    /// Total rejections with this reason.
    pub fn rejected_count(&self, reason: &str) -> u64 {
        self.rejected_by_reason
            .lock()
            .map(|m| m.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Renders all metrics; `log_size` is the audit log's current size.
    pub fn render(&self, log_size: u64) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "isnad_messages_submitted_total",
            "Messages accepted from local clients.",
            self.submitted.get(),
        );
        counter(
            "isnad_messages_delivered_total",
            "Messages delivered with a verified receipt.",
            self.delivered.get(),
        );
        counter(
            "isnad_delivery_retries_total",
            "Delivery attempts that will be retried.",
            self.retries.get(),
        );
        counter(
            "isnad_messages_failed_total",
            "Messages refused by the recipient.",
            self.failed.get(),
        );
        counter(
            "isnad_messages_expired_total",
            "Messages expired undelivered.",
            self.expired.get(),
        );
        counter(
            "isnad_end_to_end_receipts_missing_total",
            "Relayed messages that expired without their end-to-end receipt.",
            self.end_to_end_missing.get(),
        );
        counter(
            "isnad_duplicates_total",
            "Retransmissions answered with the stored receipt.",
            self.duplicates.get(),
        );
        counter(
            "isnad_received_bytes_total",
            "Envelope bytes received.",
            self.received_bytes.get(),
        );
        counter(
            "isnad_log_appends_total",
            "Audit-log appends.",
            self.log_appends.get(),
        );
        counter(
            "isnad_witness_cosigned_total",
            "Partners' checkpoints this node cosigned as a witness.",
            self.witness_cosigned.get(),
        );
        counter(
            "isnad_witness_refused_total",
            "Add-checkpoint requests this node refused as a witness.",
            self.witness_refused.get(),
        );
        counter(
            "isnad_witness_forks_total",
            "Fork evidence recorded against partners' audit logs (alert on any increase).",
            self.witness_forks.get(),
        );
        counter(
            "isnad_bookkeeping_failures_total",
            "Delivery bookkeeping writes that failed (new deliveries back off).",
            self.bookkeeping_failures.get(),
        );
        counter(
            "isnad_handshakes_failed_total",
            "Incoming handshakes that failed or timed out before authentication.",
            self.handshakes_failed.get(),
        );
        counter(
            "isnad_handshake_retries_total",
            "Incoming connection attempts sent a QUIC Retry to prove their address.",
            self.handshake_retries.get(),
        );
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "isnad_handshakes_in_progress",
            "Incoming handshakes in progress.",
            self.handshakes_in_progress.get(),
        );
        gauge(
            "isnad_peer_connections",
            "Authenticated incoming connections open.",
            self.peer_connections.get(),
        );
        gauge(
            "isnad_body_bytes_in_flight",
            "Bytes of request bodies being read or processed.",
            self.body_bytes_in_flight.get(),
        );
        let _ = writeln!(out, "# HELP isnad_witnessed_size Size of this node's latest checkpoint cosigned by the witness quorum.\n# TYPE isnad_witnessed_size gauge\nisnad_witnessed_size {}", self.witnessed_size.get());
        let _ = writeln!(out, "# HELP isnad_messages_received_total Messages accepted from peers.\n# TYPE isnad_messages_received_total counter");
        if let Ok(m) = self.received_by_kind.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "isnad_messages_received_total{{kind=\"{k}\"}} {v}");
            }
        }
        let _ = writeln!(out, "# HELP isnad_rejected_total Incoming envelopes, streams or connections refused.\n# TYPE isnad_rejected_total counter");
        if let Ok(m) = self.rejected_by_reason.lock() {
            for (k, v) in m.iter() {
                let _ = writeln!(out, "isnad_rejected_total{{reason=\"{k}\"}} {v}");
            }
        }
        let degraded = self.degraded.lock().map(|d| d.clone()).unwrap_or_default();
        let _ = writeln!(out, "# HELP isnad_degraded 1 while the node is degraded and refuses new work (see isnad_degraded_reason).\n# TYPE isnad_degraded gauge\nisnad_degraded {}", u8::from(!degraded.is_empty()));
        let _ = writeln!(out, "# HELP isnad_degraded_reason 1 for each reason the node is degraded now.\n# TYPE isnad_degraded_reason gauge");
        for code in DEGRADED_REASONS {
            let _ = writeln!(
                out,
                "isnad_degraded_reason{{reason=\"{code}\"}} {}",
                u8::from(degraded.contains(&code))
            );
        }
        let _ = writeln!(out, "# HELP isnad_queue_depth Pending outbox messages.\n# TYPE isnad_queue_depth gauge\nisnad_queue_depth {}", self.queue_depth.get());
        let _ = writeln!(out, "# HELP isnad_log_size Entries in the audit log.\n# TYPE isnad_log_size gauge\nisnad_log_size {log_size}");
        self.latency.render(
            &mut out,
            "isnad_delivery_latency_seconds",
            "Submission to verified receipt.",
        );
        self.append_latency.render(
            &mut out,
            "isnad_log_append_seconds",
            "Time for one durable audit-log append.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_labels_and_histogram() {
        let m = Metrics::default();
        m.submitted.inc();
        m.inc("mla-request");
        m.rejected("replayed");
        m.rejected("replayed");
        m.latency.observe_ms(7);
        let text = m.render(42);
        assert!(text.contains("isnad_messages_submitted_total 1"));
        assert!(text.contains("isnad_messages_received_total{kind=\"mla-request\"} 1"));
        assert!(text.contains("isnad_rejected_total{reason=\"replayed\"} 2"));
        assert!(text.contains("isnad_delivery_latency_seconds_bucket{le=\"0.005\"} 0"));
        assert!(text.contains("isnad_delivery_latency_seconds_bucket{le=\"0.01\"} 1"));
        assert!(text.contains("isnad_log_size 42"));
        m.witness_forks.inc();
        m.witnessed_size.set(9);
        let text = m.render(42);
        assert!(text.contains("isnad_witness_forks_total 1"));
        assert!(text.contains("isnad_witnessed_size 9"));
        assert_eq!(m.rejected_count("replayed"), 2);
    }

    /// Checks the text exposition format's grouping rules: every family
    /// announced once by `# HELP` then `# TYPE`, its samples right after and
    /// contiguous; returns the families in order with their sample count.
    fn families(text: &str) -> Result<Vec<(String, String, usize)>, String> {
        let mut out: Vec<(String, String, usize)> = Vec::new();
        let mut help: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let n = n + 1;
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or("").to_owned();
                if out.iter().any(|f| f.0 == name) || help.is_some() {
                    return Err(format!("line {n}: HELP {name} out of place"));
                }
                help = Some(name);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let (name, ty) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                if help.take().as_deref() != Some(name) {
                    return Err(format!("line {n}: TYPE {name} not right after its HELP"));
                }
                out.push((name.to_owned(), ty.to_owned(), 0));
            } else {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let Some((family, ty, count)) = out.last_mut() else {
                    return Err(format!("line {n}: sample {name} before any TYPE"));
                };
                let belongs = match ty.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(family.as_str())),
                    _ => name == family,
                };
                if help.is_some() || !belongs {
                    return Err(format!("line {n}: sample {name} inside family {family}"));
                }
                *count += 1;
            }
        }
        Ok(out)
    }

    #[test]
    fn every_family_is_contiguous_with_help_and_type_first() {
        let m = Metrics::default();
        m.inc("mla-request");
        m.inc("intel-share");
        m.rejected("replayed");
        m.latency.observe_ms(7);
        m.append_latency.observe_ms(3);
        let text = m.render(5);
        let fams = families(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let names: Vec<&str> = fams.iter().map(|f| f.0.as_str()).collect();
        assert!(names.contains(&"isnad_delivery_latency_seconds"));
        assert!(names.contains(&"isnad_log_append_seconds"));
        for (name, ty, count) in &fams {
            let want = match ty.as_str() {
                "histogram" => BUCKETS_MS.len() + 3,
                "counter" | "gauge" if name == "isnad_messages_received_total" => 2,
                "gauge" if name == "isnad_degraded_reason" => DEGRADED_REASONS.len(),
                "counter" | "gauge" => 1,
                other => panic!("{name}: unexpected type {other}"),
            };
            assert_eq!(*count, want, "{name}\n{text}");
        }
        // The checker itself rejects interleaved families and a stray HELP.
        let interleaved = "# HELP a x\n# TYPE a histogram\na_bucket{le=\"1\"} 0\n\
# HELP b y\n# TYPE b counter\nb 1\na_sum 0\na_count 0\n";
        assert!(families(interleaved).is_err());
        assert!(families("# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\n").is_err());
        assert!(families("# HELP a x\n# TYPE b gauge\nb 1\n").is_err());
    }
}
