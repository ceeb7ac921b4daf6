//! The console's routes and pages (spec/console.md §4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::html::Html;
use crate::i18n::{t, t_args, Arg, Formats, Lang};
use crate::session::{same_token, Person, Session, Sessions};
use crate::users::dummy_check;
use crate::{totp, Action, BackendError, Settings};

/// The cookie that carries the session id.
pub(crate) const COOKIE: &str = "isnad_console";
/// Rows of a list page.
const PAGE: usize = 50;
/// The Content-Security-Policy of every console response: nothing inline,
/// nothing from elsewhere.
pub(crate) const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const CSS: &str = include_str!("../assets/console.css");

/// Every Fluent key the pages use.
pub(crate) const KEYS: &[&str] = &[
    "app-name",
    "skip-to-content",
    "nav-main",
    "nav-dashboard",
    "nav-inbox",
    "nav-outbox",
    "nav-logout",
    "signed-in-as",
    "role-officer",
    "role-supervisor",
    "role-operator",
    "role-auditor",
    "lang-label",
    "lang-ar",
    "lang-en",
    "lang-fr",
    "lang-save",
    "login-title",
    "login-user",
    "login-password",
    "login-totp",
    "login-submit",
    "login-failed",
    "login-locked",
    "logout-done",
    "dash-title",
    "dash-node",
    "dash-status",
    "status-ok",
    "status-degraded",
    "dash-reasons",
    "dash-no-alarms",
    "dash-queues",
    "dash-pending",
    "dash-partners",
    "dash-partners-none",
    "dash-partner-failing",
    "dash-partner-trying",
    "dash-checkpoint",
    "dash-checkpoint-none",
    "dash-checkpoint-size",
    "dash-cosigned",
    "inbox-title",
    "outbox-title",
    "col-id",
    "col-from",
    "col-to",
    "col-kind",
    "col-subject",
    "col-received",
    "col-created",
    "col-state",
    "list-empty",
    "page-next",
    "page-first",
    "err-forbidden-title",
    "err-forbidden",
    "err-csrf-title",
    "err-csrf",
    "err-not-found-title",
    "err-not-found",
    "err-unavailable-title",
    "err-unavailable",
];

#[derive(Clone)]
struct Console {
    settings: Settings,
    sessions: Arc<Sessions>,
    /// The last TOTP step each person used (a code is accepted once).
    totp_used: Arc<Mutex<HashMap<String, u64>>>,
}

/// The console's routes, all under `/console/`, with their security
/// headers. The node merges them into its local API's router.
pub fn router(settings: Settings) -> Router {
    let c = Console {
        settings,
        sessions: Arc::new(Sessions::default()),
        totp_used: Arc::default(),
    };
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/dashboard") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/dashboard") }),
        )
        .route("/console/assets/console.css", get(css))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/lang", post(set_lang))
        .route("/console/dashboard", get(dashboard))
        .route("/console/inbox", get(inbox))
        .route("/console/outbox", get(outbox))
        .route("/console/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(headers))
        .with_state(c)
}

/// Security headers on every console response.
async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

// ---- sessions and cookies ----

fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; Secure; SameSite=Strict"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("isnad_console=; Path=/console; Max-Age=0"))
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "isnad_console=; Path=/console; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
    )
}

/// A signed-in request: the session id, the session and its person.
struct Signed {
    id: String,
    session: Session,
    person: Person,
}

/// The signed-in session of a request, or the redirect to the login page.
fn signed_in(c: &Console, headers: &HeaderMap) -> Result<Signed, Response> {
    let id = cookie_id(headers).ok_or_else(to_login)?;
    let session = c.sessions.get(&id, Instant::now()).ok_or_else(to_login)?;
    let person = session.person.clone().ok_or_else(to_login)?;
    Ok(Signed {
        id,
        session,
        person,
    })
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

// ---- login and logout ----

#[derive(Deserialize)]
struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

async fn login_form(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    if signed_in(&c, &headers).is_ok() {
        return Redirect::to("/console/dashboard").into_response();
    }
    let lang = q.lang.as_deref().and_then(Lang::parse).unwrap_or(Lang::En);
    login_page(&c, lang, None, StatusCode::OK)
}

/// The login page with a fresh pre-login session (its CSRF token).
fn login_page(c: &Console, lang: Lang, error: Option<&str>, status: StatusCode) -> Response {
    let Some((id, s)) = c.sessions.create(None, Instant::now()) else {
        return unavailable(lang, None);
    };
    let mut b = Html::new();
    b.raw("<header class=\"top\"><p class=\"brand\">")
        .text(&t(lang, "app-name"))
        .raw("</p><nav")
        .attr("aria-label", &t(lang, "lang-label"))
        .raw("><ul class=\"langs\">");
    for l in Lang::ALL {
        b.raw("<li><a")
            .attr("href", &format!("/console/login?lang={}", l.tag()))
            .attr("lang", l.tag())
            .attr("hreflang", l.tag())
            .raw(">")
            .text(&t(lang, &format!("lang-{}", l.tag())))
            .raw("</a></li>");
    }
    b.raw("</ul></nav></header><main id=\"main\"><h1>")
        .text(&t(lang, "login-title"))
        .raw("</h1>");
    if let Some(e) = error {
        b.raw("<p class=\"error\" role=\"alert\">")
            .text(&t(lang, e))
            .raw("</p>");
    }
    b.raw("<form method=\"post\" action=\"/console/login\" class=\"login\">")
        .raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", &s.csrf)
        .raw("><input type=\"hidden\" name=\"lang\"")
        .attr("value", lang.tag())
        .raw("><p><label for=\"user\">")
        .text(&t(lang, "login-user"))
        .raw("</label><input id=\"user\" name=\"user\" autocomplete=\"username\" required dir=\"ltr\"></p>")
        .raw("<p><label for=\"password\">")
        .text(&t(lang, "login-password"))
        .raw("</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required dir=\"ltr\"></p>")
        .raw("<p><label for=\"totp\">")
        .text(&t(lang, "login-totp"))
        .raw("</label><input id=\"totp\" name=\"totp\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{6}\" required dir=\"ltr\"></p>")
        .raw("<p><button type=\"submit\">")
        .text(&t(lang, "login-submit"))
        .raw("</button></p></form></main>");
    let doc = Html::document(lang, &t(lang, "login-title"), b);
    let mut r = (status, page_headers(), doc).into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&id));
    r
}

fn page_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8")]
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    totp: String,
}

async fn login(State(c): State<Console>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    let lang = Lang::parse(&f.lang).unwrap_or(Lang::En);
    // The form's token must be the one of the pre-login session it came with.
    let pre = cookie_id(&headers).and_then(|id| {
        let s = c.sessions.get(&id, Instant::now())?;
        Some((id, s))
    });
    let Some((pre_id, pre)) = pre.filter(|(_, s)| same_token(&s.csrf, &f.csrf)) else {
        return csrf_refused(lang);
    };
    let user = match c.settings.users.find(&f.user) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "console accounts unreadable");
            return unavailable(lang, None);
        }
    };
    let now = Instant::now();
    // Locked per name and password hash: a reset (new hash) unlocks.
    let key = match &user {
        Some(u) => format!("{}\n{}", u.name, u.password),
        None => f.user.clone(),
    };
    if c.sessions.locked(&key, now) {
        return login_page(
            &c,
            lang,
            Some("login-locked"),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let password = f.password.clone();
    let checked_user = user.clone();
    // Argon2id takes tens of milliseconds of CPU: off the async threads.
    let password_ok = tokio::task::spawn_blocking(move || match &checked_user {
        Some(u) => u.password_matches(&password),
        None => {
            dummy_check(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let step = match (&user, password_ok) {
        (Some(u), true) => {
            let used = c.totp_used.lock().unwrap_or_else(|p| p.into_inner());
            u.totp_secret()
                .and_then(|s| totp::check(&s, &f.totp, unix, used.get(&u.id).copied()))
        }
        _ => None,
    };
    let (Some(user), Some(step)) = (user, step) else {
        let locked = c.sessions.failed(&key, now);
        if let Some(u) = c.settings.users.find(&f.user).ok().flatten() {
            let action = if locked { "locked" } else { "login-failed" };
            let _ = c
                .settings
                .backend
                .record(Action {
                    user: u.id,
                    role: u.role,
                    action,
                })
                .await;
        }
        let (msg, status) = if locked {
            ("login-locked", StatusCode::TOO_MANY_REQUESTS)
        } else {
            ("login-failed", StatusCode::UNAUTHORIZED)
        };
        return login_page(&c, lang, Some(msg), status);
    };
    c.totp_used
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(user.id.clone(), step);
    c.sessions.succeeded(&key);
    // The login is complete only once the audit log holds it.
    let action = Action {
        user: user.id.clone(),
        role: user.role,
        action: "login",
    };
    if let Err(e) = c.settings.backend.record(action).await {
        tracing::error!(error = %e, "console login not recorded; refused");
        return unavailable(lang, None);
    }
    // A new id: the pre-login id (which a third party might have planted)
    // never becomes a signed-in session.
    c.sessions.end(&pre_id);
    drop(pre);
    let person = Person {
        name: user.name.clone(),
        id: user.id.clone(),
        role: user.role,
        lang: user.lang,
    };
    let Some((id, _)) = c.sessions.create(Some(person), now) else {
        return unavailable(lang, None);
    };
    let mut r = Redirect::to("/console/dashboard").into_response();
    r.headers_mut().insert(header::SET_COOKIE, set_cookie(&id));
    r
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
}

async fn logout(State(c): State<Console>, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lang = s.person.lang;
    if !same_token(&s.session.csrf, &f.csrf) {
        return csrf_refused(lang);
    }
    c.sessions.end(&s.id);
    let action = Action {
        user: s.person.id.clone(),
        role: s.person.role,
        action: "logout",
    };
    if let Err(e) = c.settings.backend.record(action).await {
        // The session is over either way; the node's log says why the
        // entry is missing.
        tracing::error!(error = %e, "console logout not recorded");
    }
    let mut b = Html::new();
    b.raw("<main id=\"main\"><h1>")
        .text(&t(lang, "logout-done"))
        .raw("</h1><p><a")
        .attr("href", &format!("/console/login?lang={}", lang.tag()))
        .raw(">")
        .text(&t(lang, "login-title"))
        .raw("</a></p></main>");
    let mut r = (
        page_headers(),
        Html::document(lang, &t(lang, "logout-done"), b),
    )
        .into_response();
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    r
}

async fn set_lang(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !same_token(&s.session.csrf, &f.csrf) {
        return csrf_refused(s.person.lang);
    }
    if let Some(lang) = Lang::parse(&f.lang) {
        c.sessions.set_lang(&s.id, lang);
        let users = c.settings.users.clone();
        let name = s.person.name.clone();
        let saved = tokio::task::spawn_blocking(move || users.set_lang(&name, lang)).await;
        if !matches!(saved, Ok(Ok(()))) {
            tracing::warn!(
                "console language kept for this session only: accounts file not written"
            );
        }
    }
    Redirect::to("/console/dashboard").into_response()
}

// ---- pages ----

/// The frame of a signed-in page: skip link, header with navigation,
/// language switch and sign-out, then `main`.
fn frame(s: &Signed, title: &str, main: Html) -> Response {
    let lang = s.person.lang;
    let mut b = Html::new();
    b.raw("<a class=\"skip\" href=\"#main\">")
        .text(&t(lang, "skip-to-content"))
        .raw("</a><header class=\"top\"><p class=\"brand\">")
        .text(&t(lang, "app-name"))
        .raw("</p><nav")
        .attr("aria-label", &t(lang, "nav-main"))
        .raw("><ul class=\"nav\"><li><a href=\"/console/dashboard\">")
        .text(&t(lang, "nav-dashboard"))
        .raw("</a></li>");
    if s.person.role.reads_content() {
        b.raw("<li><a href=\"/console/inbox\">")
            .text(&t(lang, "nav-inbox"))
            .raw("</a></li><li><a href=\"/console/outbox\">")
            .text(&t(lang, "nav-outbox"))
            .raw("</a></li>");
    }
    let role = t(lang, &format!("role-{}", s.person.role.as_str()));
    b.raw("</ul></nav><p class=\"who\">")
        .text(&t_args(
            lang,
            "signed-in-as",
            &[
                ("user", Arg::Str(&s.person.name)),
                ("role", Arg::Str(&role)),
            ],
        ))
        .raw("</p><form method=\"post\" action=\"/console/lang\" class=\"inline\">")
        .raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", &s.session.csrf)
        .raw("><label for=\"lang\">")
        .text(&t(lang, "lang-label"))
        .raw("</label><select id=\"lang\" name=\"lang\">");
    for l in Lang::ALL {
        b.raw("<option")
            .attr("value", l.tag())
            .attr("lang", l.tag());
        if l == lang {
            b.raw(" selected");
        }
        b.raw(">")
            .text(&t(lang, &format!("lang-{}", l.tag())))
            .raw("</option>");
    }
    b.raw("</select><button type=\"submit\">")
        .text(&t(lang, "lang-save"))
        .raw("</button></form><form method=\"post\" action=\"/console/logout\" class=\"inline\">")
        .raw("<input type=\"hidden\" name=\"csrf\"")
        .attr("value", &s.session.csrf)
        .raw("><button type=\"submit\">")
        .text(&t(lang, "nav-logout"))
        .raw("</button></form></header><main id=\"main\"><h1>")
        .text(title)
        .raw("</h1>")
        .append(main)
        .raw("</main>");
    (page_headers(), Html::document(lang, title, b)).into_response()
}

async fn dashboard(State(c): State<Console>, headers: HeaderMap) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
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
struct PageQuery {
    #[serde(default)]
    after: Option<String>,
}

async fn inbox(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lang = s.person.lang;
    // Content is for officers and supervisors: checked here, before the
    // node is asked for anything.
    if !s.person.role.reads_content() {
        return forbidden(&s);
    }
    let rows = match c.settings.backend.inbox(q.after.as_deref(), PAGE) {
        Ok(r) => r,
        Err(BackendError::BadCursor(_)) => return not_found_page(lang, Some(&s)),
        Err(e) => return unavailable(lang, Some((&s, e))),
    };
    let f = Formats::new(lang);
    let mut m = Html::new();
    if rows.is_empty() {
        m.raw("<p>").text(&t(lang, "list-empty")).raw("</p>");
    } else {
        m.raw("<table><thead><tr><th scope=\"col\">")
            .text(&t(lang, "col-received"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-from"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-kind"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-subject"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-id"))
            .raw("</th></tr></thead><tbody>");
        for r in &rows {
            // The subject in whatever script it was written: the browser
            // finds its direction (dir="auto").
            m.raw("<tr><td>")
                .text(&f.utc_ms(r.received_ms))
                .raw("</td><td dir=\"ltr\">")
                .text(&r.from)
                .raw("</td><td dir=\"ltr\">")
                .text(&r.kind)
                .raw("</td><td dir=\"auto\" class=\"subject\">")
                .text(&r.subject)
                .raw("</td><td dir=\"ltr\"><code>")
                .text(&r.id)
                .raw("</code></td></tr>");
        }
        m.raw("</tbody></table>");
    }
    pager(
        &mut m,
        lang,
        "/console/inbox",
        &q,
        rows.len(),
        rows.last().map(|r| r.id.as_str()),
    );
    frame(&s, &t(lang, "inbox-title"), m)
}

async fn outbox(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let s = match signed_in(&c, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lang = s.person.lang;
    if !s.person.role.reads_content() {
        return forbidden(&s);
    }
    let rows = match c.settings.backend.outbox(q.after.as_deref(), PAGE) {
        Ok(r) => r,
        Err(BackendError::BadCursor(_)) => return not_found_page(lang, Some(&s)),
        Err(e) => return unavailable(lang, Some((&s, e))),
    };
    let f = Formats::new(lang);
    let mut m = Html::new();
    if rows.is_empty() {
        m.raw("<p>").text(&t(lang, "list-empty")).raw("</p>");
    } else {
        m.raw("<table><thead><tr><th scope=\"col\">")
            .text(&t(lang, "col-created"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-to"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-kind"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-state"))
            .raw("</th><th scope=\"col\">")
            .text(&t(lang, "col-id"))
            .raw("</th></tr></thead><tbody>");
        for r in &rows {
            m.raw("<tr><td>")
                .text(&f.utc_ms(r.created_ms))
                .raw("</td><td dir=\"ltr\">")
                .text(&r.to)
                .raw("</td><td dir=\"ltr\">")
                .text(&r.kind)
                .raw("</td><td dir=\"ltr\">")
                .text(&r.state)
                .raw("</td><td dir=\"ltr\"><code>")
                .text(&r.id)
                .raw("</code></td></tr>");
        }
        m.raw("</tbody></table>");
    }
    pager(
        &mut m,
        lang,
        "/console/outbox",
        &q,
        rows.len(),
        rows.last().map(|r| r.id.as_str()),
    );
    frame(&s, &t(lang, "outbox-title"), m)
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

// ---- errors ----

fn error_page(
    lang: Lang,
    signed: Option<&Signed>,
    status: StatusCode,
    title: &str,
    text: &str,
) -> Response {
    let mut m = Html::new();
    m.raw("<p role=\"alert\">").text(&t(lang, text)).raw("</p>");
    let mut r = match signed {
        Some(s) => frame(s, &t(lang, title), m),
        None => {
            let mut b = Html::new();
            b.raw("<main id=\"main\"><h1>")
                .text(&t(lang, title))
                .raw("</h1>")
                .append(m)
                .raw("<p><a href=\"/console/login\">")
                .text(&t(lang, "login-title"))
                .raw("</a></p></main>");
            (page_headers(), Html::document(lang, &t(lang, title), b)).into_response()
        }
    };
    *r.status_mut() = status;
    r
}

fn forbidden(s: &Signed) -> Response {
    error_page(
        s.person.lang,
        Some(s),
        StatusCode::FORBIDDEN,
        "err-forbidden-title",
        "err-forbidden",
    )
}

fn csrf_refused(lang: Lang) -> Response {
    error_page(
        lang,
        None,
        StatusCode::FORBIDDEN,
        "err-csrf-title",
        "err-csrf",
    )
}

fn unavailable(lang: Lang, signed: Option<(&Signed, BackendError)>) -> Response {
    if let Some((_, e)) = &signed {
        tracing::error!(error = %e, "console page unavailable");
    }
    error_page(
        lang,
        signed.map(|(s, _)| s),
        StatusCode::SERVICE_UNAVAILABLE,
        "err-unavailable-title",
        "err-unavailable",
    )
}

fn not_found_page(lang: Lang, signed: Option<&Signed>) -> Response {
    error_page(
        lang,
        signed,
        StatusCode::NOT_FOUND,
        "err-not-found-title",
        "err-not-found",
    )
}

async fn not_found(State(c): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&c, &headers) {
        Ok(s) => not_found_page(s.person.lang, Some(&s)),
        Err(_) => not_found_page(Lang::En, None),
    }
}
