//! The console's routes and pages (spec/console.md §1): the router, the
//! security headers, cookies, the frame of a signed-in page and the error
//! pages here; sign-in in [`auth`], the pages that show data in [`views`].

mod auth;
mod views;

use auth::{login, login_form, logout, set_lang};
use views::{dashboard, inbox, outbox};

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

const CSS: &str = include_str!("../../assets/console.css");

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
    "inbox-purged",
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

/// The signed-in session of a request (none: answer [`to_login`]).
fn signed_in(c: &Console, headers: &HeaderMap) -> Option<Signed> {
    let id = cookie_id(headers)?;
    let session = c.sessions.get(&id, Instant::now())?;
    let person = session.person.clone()?;
    Some(Signed {
        id,
        session,
        person,
    })
}

fn page_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "text/html; charset=utf-8")]
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
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
        Some(s) => not_found_page(s.person.lang, Some(&s)),
        None => not_found_page(Lang::En, None),
    }
}
