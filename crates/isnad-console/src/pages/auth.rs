//! Sign-in, sign-out and the language switch (spec/console.md §4).

use super::*;

#[derive(Deserialize)]
pub(super) struct LangQuery {
    #[serde(default)]
    lang: Option<String>,
}

pub(super) async fn login_form(
    State(c): State<Console>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    if signed_in(&c, &headers).is_some() {
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

#[derive(Deserialize)]
pub(super) struct LoginForm {
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

pub(super) async fn login(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
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
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    lang: String,
}

pub(super) async fn logout(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let Some(s) = signed_in(&c, &headers) else {
        return to_login();
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

pub(super) async fn set_lang(
    State(c): State<Console>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let Some(s) = signed_in(&c, &headers) else {
        return to_login();
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
