//! The auditor's report: one self-contained HTML page (inline CSS and inline
//! SVG charts; no script, no external resource, nothing fetched) over one or
//! more verified logs and their cross-checks.
//!
//! Sans-IO: [`render`] takes the logs, the cross-checks and the time to print
//! as "generated", and returns the page as a string. Every text that comes
//! from a log (agency ids, reasons, detail) is HTML-escaped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::audited::AuditedLog;
use crate::crosscheck::CrossCheck;
use crate::entry::EventType;

/// One log given to the report.
#[derive(Debug, Clone, Copy)]
pub struct LogInput<'a> {
    /// How the auditor named it (e.g. the export directory).
    pub label: &'a str,
    /// The verified log, or `None` if the export did not verify.
    pub log: Option<&'a AuditedLog>,
    /// Verification problems (empty when verified).
    pub problems: &'a [String],
    /// The key the auditor trusted for this log, `name+keyid` (the first two
    /// fields of the verifier key), printed with the verdict.
    pub trusted_key: &'a str,
}

/// The one-line outcome of a report, stated first (on the page and by the
/// CLI) so that nobody reads "no findings" where nothing could be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Every export verified and every cross-check is clean.
    pub clean: bool,
    /// `VERIFIED: …`, `FINDINGS: …` or `NOT VERIFIED: …`, with the trusted keys.
    pub text: String,
}

/// The verdict over `logs` and the cross-checks made between them.
pub fn verdict(logs: &[LogInput<'_>], checks: &[CrossCheck]) -> Verdict {
    let n = logs.len();
    let bad = logs.iter().filter(|l| l.log.is_none()).count();
    let findings: usize = checks.iter().map(CrossCheck::finding_count).sum();
    let checked = checks.len();
    let keys: Vec<&str> = logs.iter().map(|l| l.trusted_key).collect();
    let keys = format!(
        "trusted {}: {}",
        if keys.len() == 1 { "key" } else { "keys" },
        keys.join(", ")
    );
    let cross = match checked {
        0 => "no cross-check (no two verified logs of different agencies exchanged messages)"
            .to_owned(),
        c => plural(c, "cross-check", "cross-checks"),
    };
    let (clean, head) = if bad == n {
        (
            false,
            format!(
                "NOT VERIFIED: {} of {} verify under the trusted keys; nothing could be checked",
                if n == 1 {
                    "the export does not"
                } else {
                    "none"
                },
                plural(n, "export", "exports"),
            ),
        )
    } else if bad > 0 {
        (
            false,
            format!(
                "NOT VERIFIED: {bad} of {} do not verify under the trusted keys; {cross} among the others, {}",
                plural(n, "export", "exports"),
                plural(findings, "finding", "findings")
            ),
        )
    } else if findings > 0 {
        (
            false,
            format!(
                "FINDINGS: {} verified; {} in {cross}",
                plural(n, "export", "exports"),
                plural(findings, "finding", "findings")
            ),
        )
    } else if checked == 0 {
        (
            true,
            format!(
                "VERIFIED: {} verified; {cross}",
                plural(n, "export", "exports")
            ),
        )
    } else {
        (
            true,
            format!(
                "VERIFIED: {} verified; {cross}, no findings",
                plural(n, "export", "exports")
            ),
        )
    };
    Verdict {
        clean,
        text: format!("{head} ({keys})"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Upper bounds (ms, exclusive) of the delivery-latency histogram buckets;
/// the last bucket is open.
pub const LATENCY_BUCKETS_MS: [u64; 5] = [100, 1_000, 10_000, 60_000, 600_000];

/// Number of bars of the "entries over time" chart.
pub const TIME_BUCKETS: usize = 24;

/// Renders the report. `generated_ms` is printed as the generation time
/// (Unix ms; the caller reads the clock).
pub fn render(
    title: &str,
    logs: &[LogInput<'_>],
    checks: &[CrossCheck],
    generated_ms: u64,
) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let v = verdict(logs, checks);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n\
<p id=\"verdict\" class=\"{c}\">{v}</p>\n\
<p class=\"meta\">Generated {g} from {n}. Entries carry identifiers, \
envelope digests and log indexes only, never message content. This page is self-contained: \
it loads nothing from the network.</p>\n",
        t = esc(title),
        c = if v.clean { "ok" } else { "bad" },
        v = esc(&v.text),
        g = esc(&utc(generated_ms)),
        n = plural(logs.len(), "audit-log export", "audit-log exports")
    );
    summary(&mut h, logs);
    let verified: Vec<(&str, &AuditedLog)> = logs
        .iter()
        .filter_map(|l| l.log.map(|g| (l.label, g)))
        .collect();
    timeline(&mut h, &verified);
    events(&mut h, &verified);
    partners(&mut h, &verified);
    latency(&mut h, &verified);
    rejections(&mut h, &verified);
    witnesses(&mut h, &verified);
    cross_checks(&mut h, checks);
    h.push_str("</body></html>\n");
    h
}

const STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:72em}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccd}\
h3{font-size:1.05em}table{border-collapse:collapse;margin:.5em 0 1em}\
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}\
th{background:#eef1f6}td.n{text-align:right;font-variant-numeric:tabular-nums}\
.ok{color:#17603a;font-weight:600}.bad{color:#a4161a;font-weight:600}.notice{color:#8a5a00}\
.meta{color:#555}code{font-size:.9em}td code{word-break:break-all}svg{display:block;margin:.3em 0 1em}\
svg text{font-family:system-ui,sans-serif;font-size:11px;fill:#333}";

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// `YYYY-MM-DD hh:mm:ss.mmmZ` for Unix ms (proleptic Gregorian, UTC).
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

fn summary(h: &mut String, logs: &[LogInput<'_>]) {
    h.push_str(
        "<h2 id=\"logs\">Logs</h2>\n<table id=\"logs-table\"><tr><th>export</th><th>origin</th>\
<th>entries</th><th>verified</th><th>first entry</th><th>last entry</th><th>root</th></tr>\n",
    );
    for l in logs {
        match l.log {
            Some(g) => {
                let first = g.entries.iter().map(|e| e.time_ms).min();
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"ok\">yes</td>\
<td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    esc(l.label),
                    esc(&g.checkpoint.origin),
                    g.checkpoint.size,
                    first.map(utc).unwrap_or_default(),
                    g.horizon_ms().map(utc).unwrap_or_default(),
                    esc(&g.checkpoint.root.to_base64())
                );
            }
            None => {
                let _ = writeln!(
                    h,
                    "<tr><td>{}</td><td></td><td></td><td class=\"bad\">NO: {}</td><td></td><td></td><td></td></tr>",
                    esc(l.label),
                    esc(&l.problems.join("; "))
                );
            }
        }
    }
    h.push_str("</table>\n");
}

fn timeline(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str("<h2 id=\"timeline\">Entries over time</h2>\n");
    let times = logs
        .iter()
        .flat_map(|(_, g)| g.entries.iter().map(|e| e.time_ms));
    let (Some(lo), Some(hi)) = (times.clone().min(), times.max()) else {
        h.push_str("<p>No entries.</p>\n");
        return;
    };
    let span = (hi - lo).max(1);
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} bars from {} to {} (same scale for every log).</p>",
        TIME_BUCKETS,
        utc(lo),
        utc(hi)
    );
    for (label, g) in logs {
        let mut bins = vec![0u64; TIME_BUCKETS];
        for e in &g.entries {
            let b = ((e.time_ms - lo) as u128 * TIME_BUCKETS as u128 / (span as u128 + 1)) as usize;
            bins[b.min(TIME_BUCKETS - 1)] += 1;
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(&display_name(label, g)));
        let labels: Vec<String> = (0..TIME_BUCKETS).map(|_| String::new()).collect();
        h.push_str(&column_chart(
            &format!("entries over time, {}", display_name(label, g)),
            &bins,
            &labels,
        ));
    }
}

fn events(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str("<h2 id=\"events\">Entries by event type</h2>\n<table id=\"events-table\"><tr><th>event</th>");
    for (label, g) in logs {
        let _ = write!(h, "<th>{}</th>", esc(&display_name(label, g)));
    }
    h.push_str("</tr>\n");
    for ev in EventType::ALL {
        let counts: Vec<usize> = logs
            .iter()
            .map(|(_, g)| g.entries.iter().filter(|e| e.event == ev).count())
            .collect();
        if counts.iter().all(|c| *c == 0) {
            continue;
        }
        let _ = write!(h, "<tr><td>{}</td>", ev.as_str());
        for c in counts {
            let _ = write!(h, "<td class=\"n\">{c}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

fn partners(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str("<h2 id=\"partners\">Messages per partner</h2>\n");
    for (label, g) in logs {
        let me = g.agency();
        let mut per: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for e in &g.entries {
            match e.event {
                EventType::Sent => {
                    if let Some(r) = &e.recipient {
                        per.entry(r.to_string()).or_default().0 += 1;
                    }
                }
                EventType::Received => {
                    if let Some(s) = &e.sender {
                        if me.as_ref() != Some(s) {
                            per.entry(s.to_string()).or_default().1 += 1;
                        }
                    }
                }
                _ => {}
            }
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(&display_name(label, g)));
        if per.is_empty() {
            h.push_str("<p>No messages sent or received.</p>\n");
            continue;
        }
        h.push_str("<table class=\"partners\"><tr><th>partner</th><th>sent to</th><th>received from</th></tr>\n");
        for (p, (s, r)) in &per {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{s}</td><td class=\"n\">{r}</td></tr>",
                esc(p)
            );
        }
        h.push_str("</table>\n");
        let items: Vec<(String, u64)> = per.iter().map(|(p, (s, r))| (p.clone(), s + r)).collect();
        h.push_str(&bar_chart(
            &format!("messages per partner, {}", display_name(label, g)),
            &items,
        ));
    }
}

fn latency(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str(
        "<h2 id=\"latency\">Delivery latency</h2>\n<p class=\"meta\">From the sender's \
<code>sent</code> entry to its <code>receipt-received</code> entry, per delivered message \
(the sender's clock only). A <code>sent</code> entry carries the message's creation time in whole \
seconds, so a latency can read up to 1 s high.</p>\n",
    );
    for (label, g) in logs {
        let mut sent: BTreeMap<_, u64> = BTreeMap::new();
        for e in g.entries.iter().filter(|e| e.event == EventType::Sent) {
            if let Some(id) = e.message_id {
                let t = sent.entry((id, e.recipient.clone())).or_insert(e.time_ms);
                *t = (*t).min(e.time_ms);
            }
        }
        let mut lat: Vec<u64> = g
            .entries
            .iter()
            .filter(|e| e.event == EventType::ReceiptReceived)
            .filter_map(|e| {
                let t0 = sent.get(&(e.message_id?, e.recipient.clone()))?;
                Some(e.time_ms.saturating_sub(*t0))
            })
            .collect();
        lat.sort_unstable();
        let _ = writeln!(h, "<h3>{}</h3>", esc(&display_name(label, g)));
        if lat.is_empty() {
            h.push_str("<p>No delivered messages.</p>\n");
            continue;
        }
        let q = |p: usize| lat[(lat.len() - 1) * p / 100];
        let _ = writeln!(
            h,
            "<table class=\"latency\"><tr><th>delivered</th><th>min</th><th>median</th><th>p95</th><th>max</th></tr>\
<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
            lat.len(),
            dur(lat[0]),
            dur(q(50)),
            dur(q(95)),
            dur(lat[lat.len() - 1])
        );
        let mut bins = vec![0u64; LATENCY_BUCKETS_MS.len() + 1];
        for l in &lat {
            let b = LATENCY_BUCKETS_MS
                .iter()
                .position(|u| l < u)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            bins[b] += 1;
        }
        let labels: Vec<String> = ["<0.1 s", "<1 s", "<10 s", "<1 min", "<10 min", "≥10 min"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        h.push_str(&column_chart(
            &format!("delivery latency, {}", display_name(label, g)),
            &bins,
            &labels,
        ));
    }
}

fn rejections(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str("<h2 id=\"rejections\">Rejections by reason</h2>\n<p class=\"meta\"><code>rejected</code> \
entries (envelopes this node refused) and <code>delivery-failed</code> entries (deliveries its peers refused), \
by reason.</p>\n");
    for (label, g) in logs {
        let mut per: BTreeMap<(&str, String), u64> = BTreeMap::new();
        for e in &g.entries {
            let kind = match e.event {
                EventType::Rejected => "rejected",
                EventType::DeliveryFailed => "delivery-failed",
                _ => continue,
            };
            *per.entry((kind, e.reason.clone().unwrap_or_default()))
                .or_default() += 1;
        }
        let _ = writeln!(h, "<h3>{}</h3>", esc(&display_name(label, g)));
        if per.is_empty() {
            h.push_str("<p>No rejections.</p>\n");
            continue;
        }
        h.push_str(
            "<table class=\"rejections\"><tr><th>entry</th><th>reason</th><th>count</th></tr>\n",
        );
        for ((k, r), n) in &per {
            let _ = writeln!(
                h,
                "<tr><td>{k}</td><td>{}</td><td class=\"n\">{n}</td></tr>",
                esc(r)
            );
        }
        h.push_str("</table>\n");
        let items: Vec<(String, u64)> = per
            .iter()
            .map(|((k, r), n)| (format!("{k}: {r}"), *n))
            .collect();
        h.push_str(&bar_chart(
            &format!("rejections by reason, {}", display_name(label, g)),
            &items,
        ));
    }
}

fn witnesses(h: &mut String, logs: &[(&str, &AuditedLog)]) {
    h.push_str("<h2 id=\"witnesses\">Witness coverage</h2>\n<p class=\"meta\">Cosignature lines on the \
exported checkpoint are counted, not verified (verify them with the witnesses' keys); \
<code>checkpoint-cosigned</code> entries are the node's own record of cosignatures it obtained.</p>\n\
<table id=\"witness-table\"><tr><th>log</th><th>checkpoint size</th><th>cosignature lines on the exported checkpoint</th>\
<th>cosigners</th><th><code>checkpoint-cosigned</code> entries</th></tr>\n");
    for (label, g) in logs {
        let lines = g.cosignature_lines();
        let names: Vec<String> = lines
            .iter()
            .map(|(n, ts)| match ts {
                Some(t) => format!("{} ({})", esc(n), utc(t.saturating_mul(1000))),
                None => esc(n),
            })
            .collect();
        let cosigned = g
            .entries
            .iter()
            .filter(|e| e.event == EventType::CheckpointCosigned)
            .count();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{cosigned}</td></tr>",
            esc(&display_name(label, g)),
            g.checkpoint.size,
            lines.len(),
            if names.is_empty() { "none".to_owned() } else { names.join("<br>") },
        );
    }
    h.push_str("</table>\n");
}

fn cross_checks(h: &mut String, checks: &[CrossCheck]) {
    h.push_str("<h2 id=\"cross-checks\">Cross-checks</h2>\n");
    if checks.is_empty() {
        h.push_str(
            "<p>Give two or more exports to cross-check the two ends of their exchanges.</p>\n",
        );
        return;
    }
    for c in checks {
        let _ = writeln!(
            h,
            "<h3>{} ↔ {}: <span class=\"{}\">{}</span></h3>",
            esc(&c.a.origin),
            esc(&c.b.origin),
            if c.is_clean() { "ok" } else { "bad" },
            if c.is_clean() {
                "clean".to_owned()
            } else {
                format!("{} finding(s)", c.finding_count())
            }
        );
        let n = &c.counts;
        let _ = writeln!(
            h,
            "<table class=\"counts\"><tr><th>exchanges</th><th>matched</th><th>refused</th><th>undelivered</th>\
<th>in flight</th><th>with findings</th></tr><tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr></table>",
            n.exchanges, n.matched, n.refused, n.undelivered, n.in_flight, n.with_findings
        );
        if c.findings.is_empty() {
            continue;
        }
        h.push_str(
            "<table class=\"findings\"><tr><th>class</th><th>message</th><th>direction</th>\
<th>entries</th><th>detail</th></tr>\n",
        );
        for f in &c.findings {
            let entries: Vec<String> = f.entries.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                h,
                "<tr><td class=\"{}\">{}</td><td><code>{}</code></td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
                if f.class.is_notice() { "notice" } else { "bad" },
                f.class.as_str(),
                f.message_id.to_hex(),
                esc(f.sender.as_str()),
                esc(f.recipient.as_str()),
                esc(&entries.join(", ")),
                esc(&f.detail)
            );
        }
        h.push_str("</table>\n");
    }
}

fn display_name(label: &str, g: &AuditedLog) -> String {
    g.agency().map_or_else(
        || format!("{} ({label})", g.checkpoint.origin),
        |a| a.to_string(),
    )
}

fn dur(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

/// A horizontal bar chart: one labelled bar per item.
fn bar_chart(title: &str, items: &[(String, u64)]) -> String {
    const W: u64 = 640;
    const LABEL: u64 = 240;
    const ROW: u64 = 22;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let height = ROW * items.len() as u64 + 8;
    let mut s = format!(
        "<svg class=\"chart bar\" role=\"img\" width=\"{W}\" height=\"{height}\" viewBox=\"0 0 {W} {height}\"><title>{}</title>",
        esc(title)
    );
    for (i, (label, v)) in items.iter().enumerate() {
        let y = 4 + ROW * i as u64;
        let w = (W - LABEL - 60) * v / max;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
<rect x=\"{LABEL}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#3a6ea5\"></rect>\
<text x=\"{}\" y=\"{}\">{v}</text>",
            LABEL - 6,
            y + 14,
            esc(label),
            ROW - 6,
            LABEL + w + 4,
            y + 14
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A column chart: one column per value, optional labels under the columns.
fn column_chart(title: &str, values: &[u64], labels: &[String]) -> String {
    const H: u64 = 120;
    let labelled = labels.iter().any(|l| !l.is_empty());
    let col: u64 = if labelled { 64 } else { 26 };
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let w = col * values.len() as u64 + 40;
    let total = H + 36;
    let mut s = format!(
        "<svg class=\"chart column\" role=\"img\" width=\"{w}\" height=\"{total}\" viewBox=\"0 0 {w} {total}\"><title>{}</title>\
<line x1=\"30\" y1=\"{}\" x2=\"{w}\" y2=\"{}\" stroke=\"#999\"></line><text x=\"0\" y=\"24\">{max}</text>",
        esc(title),
        H + 10,
        H + 10
    );
    for (i, v) in values.iter().enumerate() {
        let x = 34 + col * i as u64;
        let bh = H * v / max;
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"#3a6ea5\"><title>{v}</title></rect>",
            H + 10 - bh,
            col - 6
        );
        if let Some(l) = labels.get(i).filter(|l| !l.is_empty()) {
            let _ = write!(s, "<text x=\"{x}\" y=\"{}\">{}</text>", H + 26, esc(l));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests panic on failure by design.
mod tests {
    use super::*;
    use crate::crosscheck::{cross_check, Side, DEFAULT_SKEW_MS};
    use crate::entry::Entry;
    use crate::testing::Pair;

    const T: u64 = 1_790_000_000_000;

    fn pair() -> Pair {
        let mut p = Pair::federation(T);
        p.refuse(Side::A, 6, T + 200_000, "policy-denied <b>&\"'");
        p
    }

    /// The report over log A alone.
    fn render_a(a: &AuditedLog) -> String {
        let logs = [LogInput {
            label: "a",
            log: Some(a),
            problems: &[],
            trusted_key: "k+00000000",
        }];
        render("r", &logs, &[], T)
    }

    #[test]
    fn verdict_comes_first_names_the_keys_and_never_says_no_findings_unchecked() {
        let p = pair();
        let (a, b) = (p.audited(Side::A), p.audited(Side::B));
        let bad = ["checkpoint: not signed by any trusted key".to_owned()];
        let unverified = [
            LogInput {
                label: "a",
                log: None,
                problems: &bad,
                trusted_key: "b/audit+11111111",
            },
            LogInput {
                label: "b",
                log: None,
                problems: &bad,
                trusted_key: "a/audit+22222222",
            },
        ];
        let v = verdict(&unverified, &[]);
        assert!(!v.clean);
        assert_eq!(
            v.text,
            "NOT VERIFIED: none of 2 exports verify under the trusted keys; nothing could be \
             checked (trusted keys: b/audit+11111111, a/audit+22222222)"
        );
        let html = render("r", &unverified, &[], T);
        let body = &html[html.find("<body>").unwrap()..];
        let first_p = &body[body.find("<p").unwrap()..];
        assert!(first_p.starts_with("<p id=\"verdict\" class=\"bad\">NOT VERIFIED"));

        let check = cross_check(&a, &b, DEFAULT_SKEW_MS).unwrap();
        let logs = [
            LogInput {
                label: "a",
                log: Some(&a),
                problems: &[],
                trusted_key: "a/audit+22222222",
            },
            LogInput {
                label: "b",
                log: Some(&b),
                problems: &[],
                trusted_key: "b/audit+11111111",
            },
        ];
        let v = verdict(&logs, std::slice::from_ref(&check));
        assert_eq!(v.clean, check.is_clean());
        assert!(
            v.text
                .starts_with("VERIFIED: 2 exports verified; 1 cross-check, no findings")
                || v.text.starts_with("FINDINGS: 2 exports verified;"),
            "{}",
            v.text
        );
        let v = verdict(&logs[..1], &[]);
        assert_eq!(
            v.text,
            "VERIFIED: 1 export verified; no cross-check (no two verified logs of different \
             agencies exchanged messages) (trusted key: a/audit+22222222)"
        );
    }

    #[test]
    fn report_has_every_section_and_escapes_log_text() {
        let p = pair();
        let (a, b) = (p.audited(Side::A), p.audited(Side::B));
        let check = cross_check(&a, &b, DEFAULT_SKEW_MS).unwrap();
        let bad = ["bundle x: <script>alert(1)</script>".to_owned()];
        let logs = [
            LogInput {
                label: "exports/a",
                log: Some(&a),
                problems: &[],
                trusted_key: "k+00000000",
            },
            LogInput {
                label: "exports/b",
                log: Some(&b),
                problems: &[],
                trusted_key: "k+00000000",
            },
            LogInput {
                label: "exports/<c>",
                log: None,
                problems: &bad,
                trusted_key: "k+00000000",
            },
        ];
        let html = render("Audit <report>", &logs, &[check], T);
        for id in [
            "logs-table",
            "timeline",
            "events-table",
            "partners",
            "latency",
            "rejections",
            "witness-table",
            "cross-checks",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("<title>Audit &lt;report&gt;</title>"));
        assert!(html.contains("policy-denied &lt;b&gt;&amp;&quot;&#39;"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("exports/&lt;c&gt;"));
        assert!(!html.contains("<script") && !html.contains("<b>"));
        // Self-contained: nothing to fetch.
        for banned in [
            "src=", "href=", "url(", "@import", "<link", "http:", "https:",
        ] {
            assert!(!html.contains(banned), "{banned}");
        }
        assert!(html.matches("<svg").count() >= 5);
        assert!(html.contains("<span class=\"ok\">clean</span>"));
        assert!(html.contains(&utc(T)));
    }

    #[test]
    fn latency_and_partner_figures_come_from_the_entries() {
        let p = pair();
        let a = p.audited(Side::A);
        let html = render_a(&a);
        // Three deliveries from A, each 40 ms from sent to receipt.
        assert!(
            html.contains(
                "<td class=\"n\">3</td><td class=\"n\">40 ms</td><td class=\"n\">40 ms</td>"
            ),
            "{html}"
        );
        // fr.mj.bepi: 5 sent to (1, 2, 5, refused 4 and 6), 1 received from.
        assert!(html
            .contains("<tr><td>fr.mj.bepi</td><td class=\"n\">5</td><td class=\"n\">1</td></tr>"));
        assert!(html.contains("Give two or more exports"));
    }

    #[test]
    fn witness_lines_are_counted() {
        let rng = ring::rand::SystemRandom::new();
        let key = crate::note::SignerKey::generate("iq.moj.ca/audit", &rng).unwrap();
        let w = crate::note::SignerKey::generate_cosigner("witness.example", &rng).unwrap();
        let mut p = pair();
        p.push(
            Side::A,
            Entry::new(EventType::CheckpointCosigned, T + 300_000),
        );
        let a = p.audited(Side::A);
        let body = a.checkpoint.to_body();
        let mut note = a.checkpoint.sign(&key).unwrap();
        note.push_str(&w.cosign(&body, 1_790_000_123).unwrap());
        let a = AuditedLog::new(a.checkpoint.clone(), note, a.entries.clone()).unwrap();
        assert_eq!(
            a.cosignature_lines(),
            vec![("witness.example".to_owned(), Some(1_790_000_123))]
        );
        let html = render_a(&a);
        assert!(
            html.contains("<td class=\"n\">1</td><td>witness.example (2026-09-21"),
            "{html}"
        );
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29 00:00:00.123Z");
        assert_eq!(utc(1_790_000_000_000), "2026-09-21 14:13:20.000Z");
    }
}
