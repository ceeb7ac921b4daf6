//! The pages that show the node's data: dashboard, inbox, outbox
//! (spec/console.md §7).

use super::*;

pub(super) async fn dashboard(State(c): State<Console>, headers: HeaderMap) -> Response {
    let Some(s) = signed_in(&c, &headers) else {
        return to_login();
    };
    let lang = s.person.lang;
    let d = match c.settings.backend.dashboard() {
        Ok(d) => d,
        Err(e) => return unavailable(lang, Some((&s, e))),
    };
    let f = Formats::new(lang);
    let mut m = Html::new();
    m.raw("<p>")
        .text(&t_args(
            lang,
            "dash-node",
            &[("agency", Arg::Str(&c.settings.backend.agency()))],
        ))
        .raw("</p><section aria-labelledby=\"h-status\"><h2 id=\"h-status\">")
        .text(&t(lang, "dash-status"))
        .raw("</h2>");
    if d.alarms.is_empty() {
        m.raw("<p class=\"ok\">")
            .text(&t(lang, "status-ok"))
            .raw("</p><p>")
            .text(&t(lang, "dash-no-alarms"))
            .raw("</p>");
    } else {
        m.raw("<p class=\"alarm\">")
            .text(&t(lang, "status-degraded"))
            .raw("</p><h3>")
            .text(&t(lang, "dash-reasons"))
            .raw("</h3><ul>");
        for a in &d.alarms {
            m.raw("<li dir=\"ltr\">").text(a).raw("</li>");
        }
        m.raw("</ul>");
    }
    m.raw("</section><section aria-labelledby=\"h-queues\"><h2 id=\"h-queues\">")
        .text(&t(lang, "dash-queues"))
        .raw("</h2><p>")
        .text(&localized_count(
            lang,
            &f,
            "dash-pending",
            "count",
            d.pending,
        ))
        .raw("</p><h3>")
        .text(&t(lang, "dash-partners"))
        .raw("</h3>");
    if d.partners.is_empty() {
        m.raw("<p>")
            .text(&t(lang, "dash-partners-none"))
            .raw("</p>");
    } else {
        m.raw("<ul>");
        for (agency, failing) in &d.partners {
            let state = if *failing {
                "dash-partner-failing"
            } else {
                "dash-partner-trying"
            };
            m.raw("<li><span dir=\"ltr\">")
                .text(agency)
                .raw("</span>: ")
                .text(&t(lang, state))
                .raw("</li>");
        }
        m.raw("</ul>");
    }
    m.raw("</section><section aria-labelledby=\"h-checkpoint\"><h2 id=\"h-checkpoint\">")
        .text(&t(lang, "dash-checkpoint"))
        .raw("</h2>");
    if d.checkpoint_size == 0 {
        m.raw("<p>")
            .text(&t(lang, "dash-checkpoint-none"))
            .raw("</p>");
    } else {
        m.raw("<p>")
            .text(&localized_count(
                lang,
                &f,
                "dash-checkpoint-size",
                "size",
                d.checkpoint_size,
            ))
            .raw("</p><p>")
            .text(&t_args(
                lang,
                "dash-cosigned",
                &[
                    ("count", Arg::Num(d.cosigned_by.len() as u64)),
                    ("total", Arg::Str(&f.number(d.witnesses as u64))),
                    ("quorum", Arg::Str(&f.number(d.quorum as u64))),
                ],
            ))
            .raw("</p>");
        if !d.cosigned_by.is_empty() {
            m.raw("<ul>");
            for w in &d.cosigned_by {
                m.raw("<li dir=\"ltr\">").text(w).raw("</li>");
            }
            m.raw("</ul>");
        }
    }
    m.raw("</section>");
    frame(&s, &t(lang, "dash-title"), m)
}

/// A count message: Fluent picks the plural form from the number, the
/// text shows it in the locale's digits (ICU4X).
fn localized_count(lang: Lang, f: &Formats, key: &str, arg: &str, n: u64) -> String {
    let plain = t_args(lang, key, &[(arg, Arg::Num(n))]);
    let digits = n.to_string();
    let local = f.number(n);
    if digits == local {
        plain
    } else {
        plain.replacen(&digits, &local, 1)
    }
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    after: Option<String>,
}

pub(super) async fn inbox(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let columns = [
        "col-received",
        "col-from",
        "col-kind",
        "col-subject",
        "col-id",
    ];
    content_list(
        &c,
        &headers,
        &q,
        "/console/inbox",
        "inbox-title",
        columns,
        |b, after, f| {
            Ok(b.inbox(after, PAGE)?
                .into_iter()
                .map(|r| {
                    let subject = if r.purged {
                        t(f.lang(), "inbox-purged")
                    } else {
                        r.subject
                    };
                    let cells = [
                        (f.utc_ms(r.received_ms), ""),
                        (r.from, LTR),
                        (r.kind, LTR),
                        // The subject in whatever script it was written: the
                        // browser finds its direction.
                        (subject, " dir=\"auto\" class=\"subject\""),
                        (r.id.clone(), LTR),
                    ];
                    (r.id, cells)
                })
                .collect())
        },
    )
}

pub(super) async fn outbox(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let columns = ["col-created", "col-to", "col-kind", "col-state", "col-id"];
    content_list(
        &c,
        &headers,
        &q,
        "/console/outbox",
        "outbox-title",
        columns,
        |b, after, f| {
            Ok(b.outbox(after, PAGE)?
                .into_iter()
                .map(|r| {
                    let cells = [
                        (f.utc_ms(r.created_ms), ""),
                        (r.to, LTR),
                        (r.kind, LTR),
                        (r.state, LTR),
                        (r.id.clone(), LTR),
                    ];
                    (r.id, cells)
                })
                .collect())
        },
    )
}

/// Attributes of a cell holding an identifier (left to right in any page).
const LTR: &str = " dir=\"ltr\"";

/// A row of a list: the message id (paging cursor) and five cells, each its
/// text and the attributes of its `td`.
type Row = (String, [(String, &'static str); 5]);

/// A page of a list of messages, for roles that read content only:
/// checked here, before the node is asked for anything.
fn content_list(
    c: &Console,
    headers: &HeaderMap,
    q: &PageQuery,
    path: &'static str,
    title: &str,
    columns: [&str; 5],
    fetch: impl FnOnce(&dyn crate::Backend, Option<&str>, &Formats) -> Result<Vec<Row>, BackendError>,
) -> Response {
    let Some(s) = signed_in(c, headers) else {
        return to_login();
    };
    let lang = s.person.lang;
    if !s.person.role.reads_content() {
        return forbidden(&s);
    }
    let f = Formats::new(lang);
    let rows = match fetch(c.settings.backend.as_ref(), q.after.as_deref(), &f) {
        Ok(r) => r,
        Err(BackendError::BadCursor(_)) => return not_found_page(lang, Some(&s)),
        Err(e) => return unavailable(lang, Some((&s, e))),
    };
    let mut m = Html::new();
    if rows.is_empty() {
        m.raw("<p>").text(&t(lang, "list-empty")).raw("</p>");
    } else {
        m.raw("<table><thead><tr>");
        for col in columns {
            m.raw("<th scope=\"col\">").text(&t(lang, col)).raw("</th>");
        }
        m.raw("</tr></thead><tbody>");
        for (_, cells) in &rows {
            m.raw("<tr>");
            for (text, attrs) in cells {
                m.raw("<td").raw(attrs).raw(">").text(text).raw("</td>");
            }
            m.raw("</tr>");
        }
        m.raw("</tbody></table>");
    }
    let last = rows.last().map(|(id, _)| id.as_str());
    pager(&mut m, lang, path, q, rows.len(), last);
    frame(&s, &t(lang, title), m)
}

fn pager(
    m: &mut Html,
    lang: Lang,
    path: &'static str,
    q: &PageQuery,
    n: usize,
    last: Option<&str>,
) {
    m.raw("<nav class=\"pager\"")
        .attr("aria-label", &t(lang, "page-next"))
        .raw("><ul>");
    if q.after.is_some() {
        m.raw("<li><a")
            .attr("href", path)
            .raw(">")
            .text(&t(lang, "page-first"))
            .raw("</a></li>");
    }
    if let (true, Some(last)) = (n == PAGE, last) {
        m.raw("<li><a")
            .attr("href", &format!("{path}?after={last}"))
            .raw(" rel=\"next\">")
            .text(&t(lang, "page-next"))
            .raw("</a></li>");
    }
    m.raw("</ul></nav>");
}
