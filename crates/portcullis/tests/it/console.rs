//! The console over plain HTTP, as a browser without script would use it: sign-in with a
//! password and a fresh TOTP code (generic refusals, audited, per-human lockout), sessions
//! (idle and absolute end, sign-out, ended by a new password or second factor or by
//! revocation), CSRF on every change, tenant isolation, security headers and escaping, the
//! fresh second factor for large decisions, the read-only roles, and the audit viewer.
//!
//! The client keeps no cookies and follows no redirects: each request names its session
//! cookie itself, and every 303 is seen. The gateway's clock is manual, so TOTP steps and
//! session ends are reached by moving it, never by sleeping.

use crate::support::*;
use portcullis_core::account::{STEP_SECS, TotpSecret};
use portcullis_server::admin::agents::AgentView;
use portcullis_server::admin::amendments::{AmendmentStatus, DecisionIn, ProposalIn};
use portcullis_server::admin::approvals::VerdictIn;
use portcullis_server::admin::humans::{AdminIn, PasswordIn};
use portcullis_server::admin::tenants::NameIn;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicI64, Ordering};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "__Host-portcullis_session";

/// A refund the demo CRM holds for approval (a spend), of `amount_cents`, with `reason`.
pub(crate) fn refund(amount_cents: i64, reason: &str) -> Value {
    json!({ "customer_id": "c_1", "amount_cents": amount_cents, "reason": reason })
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    // The URL library's own `application/x-www-form-urlencoded` serialiser.
    reqwest::Url::parse_with_params("http://form.invalid/", fields)
        .expect("a constant base URL")
        .query()
        .unwrap_or_default()
        .to_owned()
}

/// One console answer.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) text: String,
}

impl Page {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub(crate) fn location(&self) -> String {
        self.header("location")
    }

    /// A 303 to `to`.
    pub(crate) fn assert_see_other(&self, to: &str, what: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{what}: {}", self.text);
        assert_eq!(self.location(), to, "{what}");
    }

    /// Back to sign-in: no live session.
    pub(crate) fn assert_signed_out(&self, what: &str) {
        self.assert_see_other("/console/login", what);
    }
}

/// A signed-in console session: the cookie to send and the CSRF token of its forms.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

/// A human who may sign in: their name, API token, password and authenticator.
pub(crate) struct Human {
    pub(crate) name: String,
    pub(crate) token: String,
    pub(crate) password: String,
    pub(crate) secret: TotpSecret,
    /// The last TOTP step this test spent (a step is good once, and only later ones after).
    pub(crate) last_step: AtomicI64,
}

pub(crate) fn step_now(app: &TestApp) -> i64 {
    app.clock.now().div_euclid(1000).div_euclid(STEP_SECS)
}

impl Human {
    /// A code the gateway has not seen spent: the current step's, after moving the clock on
    /// to a step after the last one spent.
    pub(crate) fn fresh_code(&self, app: &TestApp) -> String {
        let last = self.last_step.load(Ordering::SeqCst);
        let mut step = step_now(app);
        if step <= last {
            app.clock.advance((last - step + 1) * STEP_SECS * 1000);
            step = step_now(app);
        }
        self.last_step.store(step, Ordering::SeqCst);
        self.secret.code_at_step(step)
    }
}

/// Give the human holding `token` a password and a second factor, through the self-service
/// API.
pub(crate) async fn enroll(app: &TestApp, name: &str, token: &str) -> Human {
    let password = format!("{name} correct horse battery");
    set_password(app, token, &password).await;
    let secret = enroll_totp(app, token).await;
    Human {
        name: name.to_owned(),
        token: token.to_owned(),
        password,
        secret,
        last_step: AtomicI64::new(i64::MIN),
    }
}

pub(crate) async fn set_password(app: &TestApp, token: &str, password: &str) {
    app.api_as(token)
        .set_own_password(&PasswordIn {
            password: password.to_owned().into(),
        })
        .await
        .unwrap_or_else(|e| panic!("set password: {e}"));
}

pub(crate) async fn enroll_totp(app: &TestApp, token: &str) -> TotpSecret {
    let enrolled = app
        .api_as(token)
        .enroll_own_totp()
        .await
        .unwrap_or_else(|e| panic!("enroll TOTP: {e}"));
    assert!(
        enrolled
            .otpauth_uri
            .expose_secret()
            .starts_with("otpauth://totp/"),
        "an otpauth URI"
    );
    TotpSecret::from_base32(enrolled.secret.expose_secret()).expect("base32")
}

/// A human in `tenant` with `role`; returns their name and token.
pub(crate) async fn create_human(
    app: &TestApp,
    name: &str,
    role: &str,
    tenant: &str,
) -> (String, String) {
    let created = app
        .admin_api()
        .create_admin(&AdminIn {
            name: name.into(),
            role: role.into(),
            tenant: Some(tenant.into()),
            ttl_secs: None,
        })
        .await
        .unwrap_or_else(|e| panic!("create {role} {name}: {e}"));
    (name.to_owned(), created.token)
}

/// The console over plain HTTP: no cookie store, no redirects followed.
pub(crate) struct Web {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl Web {
    pub(crate) fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
            base: app.base.clone(),
        }
    }

    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        session: Option<&Session>,
    ) -> Page {
        let request = match session {
            Some(session) => request.header("cookie", &session.cookie),
            None => request,
        };
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("console answered in time")
            .expect("console reachable");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str, session: Option<&Session>) -> Page {
        self.send(self.http.get(format!("{}{path}", self.base)), session)
            .await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        session: Option<&Session>,
        fields: &[(&str, &str)],
    ) -> Page {
        self.post_with(path, session, fields, &[]).await
    }

    /// [`Web::post`] with more headers (`Origin`, `Sec-Fetch-Site`, as a browser sends them).
    pub(crate) async fn post_with(
        &self,
        path: &str,
        session: Option<&Session>,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(fields));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request, session).await
    }

    pub(crate) async fn try_sign_in(&self, name: &str, password: &str, code: &str) -> Page {
        self.post(
            "/console/login",
            None,
            &[("name", name), ("password", password), ("code", code)],
        )
        .await
    }

    /// Sign in with a fresh code; the session with the CSRF token of its pages.
    pub(crate) async fn sign_in(&self, app: &TestApp, human: &Human) -> Session {
        let code = human.fresh_code(app);
        let page = self.try_sign_in(&human.name, &human.password, &code).await;
        page.assert_see_other("/console", &format!("{} signs in", human.name));
        let cookie = cookie_of(&page);
        self.session(cookie).await
    }

    /// The session of `cookie` (`name=value`), its CSRF token read from its home page.
    pub(crate) async fn session(&self, cookie: String) -> Session {
        let mut session = Session {
            cookie,
            csrf: String::new(),
        };
        let home = self.get("/console", Some(&session)).await;
        assert_eq!(home.status, StatusCode::SEE_OTHER, "{}", home.text);
        let inbox = self.get(&home.location(), Some(&session)).await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.text);
        session.csrf = csrf_in(&inbox.text);
        session
    }

    pub(crate) async fn decide(
        &self,
        session: &Session,
        tenant: &str,
        id: &str,
        fields: &[(&str, &str)],
    ) -> Page {
        self.post(
            &format!("/console/t/{tenant}/approvals/{id}"),
            Some(session),
            fields,
        )
        .await
    }

    /// The inbox answers this session.
    pub(crate) async fn alive(&self, session: &Session, tenant: &str) -> bool {
        let page = self
            .get(&format!("/console/t/{tenant}/approvals"), Some(session))
            .await;
        match page.status {
            StatusCode::OK => true,
            StatusCode::SEE_OTHER => {
                assert_eq!(page.location(), "/console/login");
                false
            }
            other => panic!("inbox answered {other}: {}", page.text),
        }
    }
}

/// The session cookie a sign-in set, as `name=value` for a `Cookie` header.
pub(crate) fn cookie_of(page: &Page) -> String {
    let set = page.header("set-cookie");
    let pair = set.split(';').next().unwrap_or_default().trim().to_owned();
    assert!(
        pair.starts_with(&format!("{COOKIE}=")) && pair.len() > COOKIE.len() + 10,
        "a session cookie: {set}"
    );
    pair
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf_in(html: &str) -> String {
    let pattern = regex::Regex::new(r#"name="csrf" value="([0-9a-f]{64})""#).expect("regex");
    pattern
        .captures(html)
        .unwrap_or_else(|| panic!("no CSRF token in the page: {html}"))[1]
        .to_owned()
}

/// Every console answer: no script may run, no framing, no caching.
pub(crate) fn assert_secure(page: &Page, what: &str) {
    let csp = page.header("content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{what}: CSP `{csp}`");
    assert!(!csp.contains("'unsafe-inline'"), "{what}: CSP `{csp}`");
    assert!(!csp.contains("'unsafe-eval'"), "{what}: CSP `{csp}`");
    assert!(
        !csp.contains("script-src") || csp.contains("script-src 'none'"),
        "{what}: CSP `{csp}`"
    );
    assert!(
        page.header("x-frame-options").eq_ignore_ascii_case("deny"),
        "{what}: x-frame-options {:?}",
        page.header("x-frame-options")
    );
    assert_eq!(page.header("cache-control"), "no-store", "{what}");
    assert_eq!(page.header("x-content-type-options"), "nosniff", "{what}");
    assert!(
        !page.text.to_ascii_lowercase().contains("<script"),
        "{what}: a script in the page: {}",
        page.text
    );
}

pub(crate) async fn approval_status(app: &TestApp, id: &str) -> ApprovalStatus {
    app.approval(id).await.status
}

/// The system chain's events (where failures naming no known human go), as JSON.
pub(crate) async fn system_events(app: &TestApp) -> Vec<Value> {
    app.state
        .store
        .audit_page(&portcullis_core::id::TenantId::system(), 0, 1000)
        .await
        .expect("system chain")
        .iter()
        .map(|e| serde_json::to_value(e).expect("event serialises"))
        .collect()
}

/// Console `auth_failed` entries the store wrote for the human `name` (one per failure).
pub(crate) fn console_failures_of<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events_of_kind(events, "auth_failed")
        .into_iter()
        .filter(|e| e["resource"] == "console" && e["detail"]["admin"] == name)
        .collect()
}

// ---- 1. Sign-in

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_needs_the_right_password_and_a_fresh_code() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    // A human with a password but no second factor, and one with a second factor only.
    let (no_totp, no_totp_token) = create_human(&app, "no-totp", "approver", "acme").await;
    set_password(&app, &no_totp_token, "no-totp correct horse battery").await;
    let (no_password, no_password_token) =
        create_human(&app, "no-password", "approver", "acme").await;
    let no_password_secret = enroll_totp(&app, &no_password_token).await;

    // The sign-in page itself.
    let form = web.get("/console/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.text.contains(r#"action="/console/login""#),
        "{}",
        form.text
    );

    let code = approver.fresh_code(&app);
    let wrong_code = if code == "000000" { "000001" } else { "000000" };
    let failures = [
        (
            "wrong password",
            web.try_sign_in(&approver.name, "not the password at all", &code)
                .await,
        ),
        (
            "wrong code",
            web.try_sign_in(&approver.name, &approver.password, wrong_code)
                .await,
        ),
        (
            "no second factor enrolled",
            web.try_sign_in(
                &no_totp,
                "no-totp correct horse battery",
                &approver.secret.code_at_step(step_now(&app)),
            )
            .await,
        ),
        (
            "no password set",
            web.try_sign_in(
                &no_password,
                "",
                &no_password_secret.code_at_step(step_now(&app)),
            )
            .await,
        ),
        (
            "unknown name",
            web.try_sign_in("nobody-at-all", &approver.password, &code)
                .await,
        ),
    ];
    let first = &failures[0].1;
    for (what, page) in &failures {
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            page.text
        );
        assert!(page.header("set-cookie").is_empty(), "{what}: a cookie");
        assert_secure(page, what);
        // The same page every time: nothing says which part was wrong.
        assert_eq!(page.text, first.text, "{what}: the refusal differs");
        for telling in ["unknown", "enrolled", "reused", "expired", "no such"] {
            assert!(
                !page.text.to_ascii_lowercase().contains(telling),
                "{what}: the page says `{telling}`"
            );
        }
    }
    assert!(first.text.contains("role=\"alert\""), "{}", first.text);

    // The right password and the code not yet spent: in, with a strict session cookie.
    let signed = web
        .try_sign_in(&approver.name, &approver.password, &code)
        .await;
    signed.assert_see_other("/console", "right password and code");
    assert_secure(&signed, "sign-in redirect");
    let set_cookie = signed.header("set-cookie");
    assert!(
        set_cookie.starts_with(&format!("{COOKIE}=")),
        "`__Host-` cookie: {set_cookie}"
    );
    let attributes: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for needed in ["secure", "httponly", "samesite=strict", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == needed),
            "`{needed}` missing: {set_cookie}"
        );
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "a `__Host-` cookie names no domain: {set_cookie}"
    );
    let session = web.session(cookie_of(&signed)).await;
    assert!(web.alive(&session, "acme").await);

    // The same code again, in the same step: refused, the same page.
    let again = web
        .try_sign_in(&approver.name, &approver.password, &code)
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a code works once");
    assert_eq!(again.text, first.text);

    // Three steps on: the code of two steps ago was never spent, and is still refused (too
    // old); the previous step's code is accepted.
    let spent = approver.last_step.load(Ordering::SeqCst);
    app.clock.advance(3 * STEP_SECS * 1000);
    let now = step_now(&app);
    assert!(now - 2 > spent);
    let old = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &approver.secret.code_at_step(now - 2),
        )
        .await;
    assert_eq!(
        old.status,
        StatusCode::UNAUTHORIZED,
        "a code from two steps ago"
    );
    assert_eq!(old.text, first.text);
    let previous = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &approver.secret.code_at_step(now - 1),
        )
        .await;
    previous.assert_see_other("/console", "the previous step's code");
    approver.last_step.store(now - 1, Ordering::SeqCst);

    // Every failure audited on `console`, with its reason; the successes as `signed_in`.
    let events = app.audit_events("acme").await;
    let reasons = |name: &str| -> Vec<String> {
        console_failures_of(&events, name)
            .iter()
            .map(|e| {
                e["detail"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        reasons(&approver.name),
        [
            "wrong password (or none set)",
            "wrong or reused code",
            "wrong or reused code",
            "wrong or reused code"
        ],
        "the approver's failures"
    );
    assert_eq!(reasons(&no_totp), ["no second factor enrolled"]);
    assert_eq!(reasons(&no_password), ["wrong password (or none set)"]);
    for failure in events_of_kind(&events, "auth_failed") {
        assert_eq!(failure["resource"], "console", "{failure}");
    }
    let system = system_events(&app).await;
    assert!(
        events_of_kind(&system, "auth_failed")
            .iter()
            .any(|e| e["resource"] == "console" && e["detail"]["reason"] == "unknown name"),
        "the unknown name's failure: {system:?}"
    );
    let signed_in = events_of_kind(&events, "signed_in");
    assert_eq!(signed_in.len(), 2, "{signed_in:?}");
    for event in signed_in {
        assert_eq!(event["resource"], "console");
        assert_eq!(event["actor"], "admin:acme-approver");
    }
    // No password, code or session token in the trail.
    let trail = serde_json::to_string(&events).unwrap();
    assert!(!trail.contains(&approver.password));
    assert!(!trail.contains(session.cookie.split_once('=').unwrap().1));
    app.stop().await;
}

// ---- 2. Per-human lockout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_pause_one_humans_sign_in() {
    let app = TestApp::spawn_with(|c| {
        c.console.login_lockout_threshold = 3;
        c.console.login_lockout_secs = 600;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let (other, other_token) = create_human(&app, "other-approver", "approver", "acme").await;
    let other = enroll(&app, &other, &other_token).await;

    for attempt in 1..=3 {
        let page = web
            .try_sign_in(&approver.name, "wrong password, again", "123456")
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let events = app.audit_events("acme").await;
    let lockouts: Vec<_> = events_of_kind(&events, "locked_out")
        .into_iter()
        .filter(|e| e["resource"] == "console")
        .collect();
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(lockouts[0]["detail"]["admin"], approver.name.as_str());

    // The right password and a fresh code are refused while the pause lasts, the same way.
    let refused = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &approver.fresh_code(&app),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "locked out, yet signed in: {}",
        refused
            .headers
            .get("location")
            .map_or("", |v| v.to_str().unwrap_or(""))
    );
    assert!(refused.header("set-cookie").is_empty());
    app.clock.advance(500_000);
    let still = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &approver.fresh_code(&app),
        )
        .await;
    assert_eq!(
        still.status,
        StatusCode::UNAUTHORIZED,
        "before the pause ends"
    );

    // Another human is not paused (the pause is per human, not per address).
    web.sign_in(&app, &other).await;

    // Once it has passed, the right credentials work again.
    app.clock.advance(101_000);
    web.sign_in(&app, &approver).await;
    app.stop().await;
}

// ---- 3. Sessions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_idle_at_their_absolute_end_and_on_sign_out() {
    let app = TestApp::spawn_with(|c| {
        c.console.session_idle_secs = 60;
        c.console.session_absolute_secs = 300;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;

    // No cookie, or a made-up one: sign in first.
    web.get("/console/t/acme/approvals", None)
        .await
        .assert_signed_out("no cookie");
    let forged = Session {
        cookie: format!("{COOKIE}=pccs_forged"),
        csrf: "0".repeat(64),
    };
    web.get("/console/t/acme/approvals", Some(&forged))
        .await
        .assert_signed_out("a made-up cookie");

    // Idle: a request just inside the idle time keeps it, one past it ends it.
    let idle = web.sign_in(&app, &approver).await;
    app.clock.advance(59_000);
    assert!(web.alive(&idle, "acme").await, "59 s idle");
    app.clock.advance(61_000);
    assert!(!web.alive(&idle, "acme").await, "61 s idle");
    app.clock.advance(1_000);
    assert!(
        !web.alive(&idle, "acme").await,
        "an idle session stays ended"
    );

    // Absolute: used every 59 s, it still ends 300 s after sign-in.
    let busy = web.sign_in(&app, &approver).await;
    let signed_at = app.clock.now();
    while app.clock.now() + 59_000 < signed_at + 300_000 {
        app.clock.advance(59_000);
        assert!(
            web.alive(&busy, "acme").await,
            "{} s after sign-in",
            (app.clock.now() - signed_at) / 1000
        );
    }
    app.clock.advance(59_000);
    assert!(app.clock.now() >= signed_at + 300_000);
    assert!(
        !web.alive(&busy, "acme").await,
        "past the absolute end ({} s after sign-in)",
        (app.clock.now() - signed_at) / 1000
    );

    // Sign-out: a POST with the CSRF token ends the session and clears the cookie.
    let out = web.sign_in(&app, &approver).await;
    let kept = web.sign_in(&app, &approver).await;
    let page = web
        .post("/console/logout", Some(&out), &[("csrf", &out.csrf)])
        .await;
    page.assert_signed_out("sign-out");
    assert_secure(&page, "sign-out");
    let cleared = page.header("set-cookie");
    assert!(
        cleared.starts_with(&format!("{COOKIE}=;")) && cleared.contains("Max-Age=0"),
        "the cookie is cleared: {cleared}"
    );
    assert!(!web.alive(&out, "acme").await, "signed out");
    assert!(web.alive(&kept, "acme").await, "only that session ends");
    let events = app.audit_events("acme").await;
    let signed_out = events_of_kind(&events, "signed_out");
    assert_eq!(signed_out.len(), 1, "{signed_out:?}");
    assert_eq!(signed_out[0]["actor"], "admin:acme-approver");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_credentials_and_revocation_end_every_session() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let mut approver = enroll(&app, "acme-approver", &acme.approver_token).await;

    // A new password ends every console session of the human; the old password is refused.
    let one = web.sign_in(&app, &approver).await;
    let two = web.sign_in(&app, &approver).await;
    let old_password = approver.password.clone();
    approver.password = "a brand new passphrase".into();
    set_password(&app, &approver.token, &approver.password).await;
    assert!(!web.alive(&one, "acme").await, "after a new password");
    assert!(!web.alive(&two, "acme").await, "after a new password");
    let old = web
        .try_sign_in(&approver.name, &old_password, &approver.fresh_code(&app))
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "the old password");

    // Re-enrolling the second factor ends them too; the old authenticator is refused.
    let three = web.sign_in(&app, &approver).await;
    let old_secret = std::mem::replace(
        &mut approver.secret,
        enroll_totp(&app, &approver.token).await,
    );
    // The step counter starts again with the new secret.
    approver.last_step.store(i64::MIN, Ordering::SeqCst);
    assert!(
        !web.alive(&three, "acme").await,
        "after a new second factor"
    );
    app.clock.advance(STEP_SECS * 1000);
    let stale = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &old_secret.code_at_step(step_now(&app)),
        )
        .await;
    assert_eq!(
        stale.status,
        StatusCode::UNAUTHORIZED,
        "a code of the replaced secret"
    );

    // Another human's sessions are untouched by all this.
    let (other, other_token) = create_human(&app, "other-approver", "approver", "acme").await;
    let other = enroll(&app, &other, &other_token).await;
    let others = web.sign_in(&app, &other).await;

    // Revoking the human ends their session at once, on its next request.
    let four = web.sign_in(&app, &approver).await;
    assert!(web.alive(&four, "acme").await);
    app.admin_api()
        .revoke_admin(&approver.name)
        .await
        .expect("revoke the approver");
    assert!(!web.alive(&four, "acme").await, "a revoked human's session");
    let decide = web
        .decide(
            &four,
            "acme",
            "apr_00000000000000000000000000",
            &[("csrf", &four.csrf), ("decision", "approve")],
        )
        .await;
    decide.assert_signed_out("a revoked human deciding");
    let again = web
        .try_sign_in(
            &approver.name,
            &approver.password,
            &approver.fresh_code(&app),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "a revoked human");
    assert!(web.alive(&others, "acme").await, "another human's session");
    app.stop().await;
}

// ---- 4. CSRF

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_needs_this_sessions_csrf_token() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let (other, other_token) = create_human(&app, "other-approver", "approver", "acme").await;
    let other = enroll(&app, &other, &other_token).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);

    let session = web.sign_in(&app, &approver).await;
    let second = web.sign_in(&app, &approver).await;
    let others = web.sign_in(&app, &other).await;
    assert_ne!(session.csrf, second.csrf, "each session has its own token");
    assert_ne!(session.csrf, others.csrf);
    let wrong = "ab".repeat(32);
    let forgeries: [(&str, Vec<(&str, &str)>); 5] = [
        ("no token", vec![("decision", "approve")]),
        (
            "an empty token",
            vec![("csrf", ""), ("decision", "approve")],
        ),
        (
            "a wrong token",
            vec![("csrf", &wrong), ("decision", "approve")],
        ),
        (
            "the token of another session of the same human",
            vec![("csrf", &second.csrf), ("decision", "approve")],
        ),
        (
            "another human's token",
            vec![("csrf", &others.csrf), ("decision", "approve")],
        ),
    ];
    for (what, fields) in &forgeries {
        let page = web.decide(&session, "acme", &id, fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.text);
        assert_secure(&page, what);
        assert_eq!(
            approval_status(&app, &id).await,
            ApprovalStatus::Pending,
            "{what}: decided"
        );
    }
    // The token twice, the wrong one first: refused (as a malformed form or as a forgery).
    let page = web
        .decide(
            &session,
            "acme",
            &id,
            &[
                ("csrf", &wrong),
                ("csrf", &session.csrf),
                ("decision", "approve"),
            ],
        )
        .await;
    assert!(
        page.status.is_client_error(),
        "a doubled token: {} {}",
        page.status,
        page.text
    );
    assert_secure(&page, "a doubled token");
    assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);
    // A denial forged the same ways decides nothing either.
    let page = web
        .decide(
            &session,
            "acme",
            &id,
            &[
                ("csrf", &second.csrf),
                ("decision", "deny"),
                ("reason", "forged"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);

    // Sign-out without this session's token: refused, the session lives on.
    for (what, fields) in [
        ("no token", vec![]),
        ("a wrong token", vec![("csrf", wrong.as_str())]),
        (
            "another session's token",
            vec![("csrf", second.csrf.as_str())],
        ),
    ] {
        let page = web.post("/console/logout", Some(&session), &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "sign-out with {what}");
        assert!(web.alive(&session, "acme").await, "sign-out with {what}");
    }
    assert!(web.alive(&second, "acme").await);

    // The right token from another site's page: refused before the console sees it.
    let path = format!("/console/t/acme/approvals/{id}");
    let right = [
        ("csrf", session.csrf.as_str()),
        ("decision", "approve"),
        ("reason", "checked the order"),
    ];
    for (what, headers) in [
        ("another origin", [("origin", "https://evil.example")]),
        ("a cross-site fetch", [("sec-fetch-site", "cross-site")]),
    ] {
        let page = web.post_with(&path, Some(&session), &right, &headers).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.text);
        assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);
    }
    let evil_logout = web
        .post_with(
            "/console/logout",
            Some(&session),
            &[("csrf", &session.csrf)],
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(evil_logout.status, StatusCode::FORBIDDEN);
    assert!(web.alive(&session, "acme").await);

    // With this session's token, from the console's own page (its origin, as a browser
    // names it): decided, by this human, and the agent's call goes through.
    let page = web
        .post_with(
            &path,
            Some(&session),
            &right,
            &[("origin", &app.base), ("sec-fetch-site", "same-origin")],
        )
        .await;
    page.assert_see_other("/console/t/acme/approvals", "the right token");
    let approval = app.approval(&id).await;
    assert_eq!(approval.status, ApprovalStatus::Approved);
    assert_eq!(approval.decided_by.as_deref(), Some("acme-approver"));
    let executed = client.call("crm__issue_refund", refund(2500, "x")).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    assert_eq!(effect_lines(&acme.effect_log).len(), 1);
    app.stop().await;
}

// ---- 5. Tenant isolation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_pages_and_requests_are_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let globex_client = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    let theirs = approval_id(
        &globex_client
            .call("crm__issue_refund", refund(2500, "x"))
            .await,
    );

    let session = web.sign_in(&app, &approver).await;
    let nowhere = web
        .get("/console/t/no-such-tenant/approvals", Some(&session))
        .await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    for path in ["/console/t/globex/approvals", "/console/t/globex/audit"] {
        let page = web.get(path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.text);
        assert_eq!(page.text, nowhere.text, "{path}: not found, like no tenant");
        assert!(!page.text.contains(&theirs), "{path}");
        assert_secure(&page, path);
    }
    for decision in ["approve", "deny"] {
        for tenant in ["acme", "globex"] {
            let page = web
                .decide(
                    &session,
                    tenant,
                    &theirs,
                    &[
                        ("csrf", &session.csrf),
                        ("decision", decision),
                        ("reason", "not mine"),
                    ],
                )
                .await;
            assert_eq!(
                page.status,
                StatusCode::NOT_FOUND,
                "{decision} globex's request under /console/t/{tenant}: {}",
                page.text
            );
        }
    }
    assert_eq!(
        approval_status(&app, &theirs).await,
        ApprovalStatus::Pending
    );
    let inbox = web.get("/console/t/acme/approvals", Some(&session)).await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(
        !inbox.text.contains(&theirs),
        "globex's request in acme's inbox"
    );
    assert!(!inbox.text.contains("globex"), "{}", inbox.text);
    app.stop().await;
}

// ---- 6. Headers and escaping

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_forbids_script_framing_and_caching_and_escapes_what_it_shows() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let attack = "<script>alert(1)</script>";
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let held = approval_id(&client.call("crm__issue_refund", refund(2500, attack)).await);
    let denied = approval_id(&client.call("crm__issue_refund", refund(2600, "y")).await);

    let login = web.get("/console/login", None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_secure(&login, "sign-in page");
    let css = web.get("/console/console.css", None).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("content-type").starts_with("text/css"));
    assert_eq!(css.header("cache-control"), "no-store", "stylesheet");
    web.get("/console", None)
        .await
        .assert_signed_out("home without a session");

    let session = web.sign_in(&app, &approver).await;
    // The denial's reason is shown in the inbox too.
    let page = web
        .decide(
            &session,
            "acme",
            &denied,
            &[
                ("csrf", &session.csrf),
                ("decision", "deny"),
                ("reason", attack),
            ],
        )
        .await;
    page.assert_see_other("/console/t/acme/approvals", "deny");
    assert_secure(&page, "decision redirect");

    let inbox = web.get("/console/t/acme/approvals", Some(&session)).await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert_secure(&inbox, "inbox");
    assert!(inbox.text.contains(&held) && inbox.text.contains(&denied));
    assert!(
        inbox.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the argument, escaped: {}",
        inbox.text
    );
    let audit = web.get("/console/t/acme/audit", Some(&session)).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_secure(&audit, "audit viewer");
    // Filters are echoed into the form: escaped too, also out of an attribute.
    let echoed = web
        .get(
            "/console/t/acme/audit?actor=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E&kind=%3Cscript%3E",
            Some(&session),
        )
        .await;
    assert_eq!(echoed.status, StatusCode::OK);
    assert_secure(&echoed, "audit viewer echoing filters");
    assert!(
        echoed.text.contains("&quot;&gt;&lt;script&gt;"),
        "{}",
        echoed.text
    );

    let wrong_method = web.get("/console/logout", Some(&session)).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_secure(&wrong_method, "method not allowed");
    let missing = web.get("/console/no-such-page", Some(&session)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_secure(&missing, "not found");
    let gone = web
        .get("/console/t/no-such-tenant/approvals", Some(&session))
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_secure(&gone, "unknown tenant");
    let forbidden = web
        .decide(&session, "acme", &held, &[("decision", "approve")])
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_secure(&forbidden, "error page (403)");
    let bad = web
        .decide(
            &session,
            "acme",
            &held,
            &[("csrf", &session.csrf), ("decision", "maybe")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_secure(&bad, "error page (400)");
    let no_reason = web
        .decide(
            &session,
            "acme",
            &held,
            &[("csrf", &session.csrf), ("decision", "deny")],
        )
        .await;
    assert_eq!(
        no_reason.status,
        StatusCode::BAD_REQUEST,
        "a denial needs a reason"
    );
    assert_eq!(approval_status(&app, &held).await, ApprovalStatus::Pending);
    let failed = web.try_sign_in("acme-approver", "nope", "000000").await;
    assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    assert_secure(&failed, "failed sign-in");
    app.stop().await;
}

// ---- 7. Fresh second factor

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_decisions_need_a_fresh_unspent_code() {
    // Wrong codes count towards the human's pause: this test makes several on purpose.
    let app = TestApp::spawn_with(|c| {
        c.console.fresh_factor_above_cents = 0;
        c.console.login_lockout_threshold = 20;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let first = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);
    let second = approval_id(&client.call("crm__issue_refund", refund(2600, "x")).await);

    let session = web.sign_in(&app, &approver).await;
    let inbox = web.get("/console/t/acme/approvals", Some(&session)).await;
    assert!(
        inbox.text.contains(&format!(r#"id="code-{first}""#)),
        "the form asks for a code: {}",
        inbox.text
    );

    // No code, a wrong one, and the code spent by the sign-in: refused, still pending.
    let sign_in_code = approver
        .secret
        .code_at_step(approver.last_step.load(Ordering::SeqCst));
    let fresh = approver.fresh_code(&app);
    let wrong = if fresh == "999999" {
        "999998"
    } else {
        "999999"
    };
    for (what, code) in [
        ("no code", None),
        ("a wrong code", Some(wrong)),
        ("the sign-in's code", Some(sign_in_code.as_str())),
    ] {
        let mut fields = vec![("csrf", session.csrf.as_str()), ("decision", "approve")];
        fields.extend(code.map(|c| ("code", c)));
        let page = web.decide(&session, "acme", &first, &fields).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            page.text
        );
        assert_secure(&page, what);
        assert_eq!(
            approval_status(&app, &first).await,
            ApprovalStatus::Pending,
            "{what}"
        );
    }

    // A fresh code: decided.
    let page = web
        .decide(
            &session,
            "acme",
            &first,
            &[
                ("csrf", &session.csrf),
                ("decision", "approve"),
                ("code", &fresh),
            ],
        )
        .await;
    page.assert_see_other("/console/t/acme/approvals", "a fresh code");
    assert_eq!(
        approval_status(&app, &first).await,
        ApprovalStatus::Approved
    );

    // The same code on another request: spent.
    let page = web
        .decide(
            &session,
            "acme",
            &second,
            &[
                ("csrf", &session.csrf),
                ("decision", "approve"),
                ("code", &fresh),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "a spent code: {}",
        page.text
    );
    assert_eq!(
        approval_status(&app, &second).await,
        ApprovalStatus::Pending
    );
    // A denial needs one as well.
    let page = web
        .decide(
            &session,
            "acme",
            &second,
            &[
                ("csrf", &session.csrf),
                ("decision", "deny"),
                ("reason", "no"),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "a denial without a code"
    );
    assert_eq!(
        approval_status(&app, &second).await,
        ApprovalStatus::Pending
    );
    // And the next step's code works.
    let next = approver.fresh_code(&app);
    let page = web
        .decide(
            &session,
            "acme",
            &second,
            &[
                ("csrf", &session.csrf),
                ("decision", "approve"),
                ("code", &next),
            ],
        )
        .await;
    page.assert_see_other("/console/t/acme/approvals", "the next code");
    assert_eq!(
        approval_status(&app, &second).await,
        ApprovalStatus::Approved
    );
    app.stop().await;
}

/// With a declared dollar impact (the refund's amount), only decisions at or above
/// `console.fresh_factor_above_cents` ask for a code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_decisions_at_or_above_the_amount_need_a_fresh_code() {
    let app = TestApp::spawn_with(|c| c.console.fresh_factor_above_cents = 2000).await;
    let acme = app.seed_tenant("acme").await;
    let profile =
        serde_json::from_value(json!({ "cost_argument": "amount_cents" })).expect("a tool profile");
    app.admin_api()
        .set_tool_profile("acme", &acme.connection_id, "issue_refund", &profile)
        .await
        .expect("declare the refund's dollar impact");
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let small = approval_id(&client.call("crm__issue_refund", refund(1999, "x")).await);
    let at = approval_id(&client.call("crm__issue_refund", refund(2000, "x")).await);
    let large = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);
    assert_eq!(app.approval(&large).await.cost_cents, 2500);

    let session = web.sign_in(&app, &approver).await;
    let inbox = web.get("/console/t/acme/approvals", Some(&session)).await;
    assert!(!inbox.text.contains(&format!(r#"id="code-{small}""#)));
    assert!(inbox.text.contains(&format!(r#"id="code-{at}""#)));
    assert!(inbox.text.contains(&format!(r#"id="code-{large}""#)));

    for id in [&at, &large] {
        let page = web
            .decide(
                &session,
                "acme",
                id,
                &[("csrf", &session.csrf), ("decision", "approve")],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{id}: {}", page.text);
        assert_eq!(approval_status(&app, id).await, ApprovalStatus::Pending);
    }
    web.decide(
        &session,
        "acme",
        &small,
        &[("csrf", &session.csrf), ("decision", "approve")],
    )
    .await
    .assert_see_other("/console/t/acme/approvals", "below the amount");
    assert_eq!(
        approval_status(&app, &small).await,
        ApprovalStatus::Approved
    );
    let code = approver.fresh_code(&app);
    web.decide(
        &session,
        "acme",
        &large,
        &[
            ("csrf", &session.csrf),
            ("decision", "approve"),
            ("code", &code),
        ],
    )
    .await
    .assert_see_other("/console/t/acme/approvals", "with a fresh code");
    assert_eq!(
        approval_status(&app, &large).await,
        ApprovalStatus::Approved
    );
    let executed = client.call("crm__issue_refund", refund(2500, "x")).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    app.stop().await;
}

// ---- 8. Read-only roles

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_and_viewers_read_and_change_nothing() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let (auditor, auditor_token) = create_human(&app, "acme-auditor", "auditor", "acme").await;
    let (viewer, viewer_token) = create_human(&app, "acme-viewer", "viewer", "acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);

    // An audit amendment another human proposed: no read-only role may decide it.
    let proposal = app
        .admin_api()
        .propose_amendment(
            "acme",
            1,
            &ProposalIn {
                kind: "redaction".into(),
                note: "test".into(),
            },
        )
        .await
        .expect("propose an amendment")
        .proposal;

    for (role, token) in [("auditor", &auditor_token), ("viewer", &viewer_token)] {
        let api = app.api_as(token);
        let refused = |what: &str, status: Option<StatusCode>| {
            assert_eq!(status, Some(StatusCode::FORBIDDEN), "{role}: {what}");
        };
        let verdict = VerdictIn {
            reason: Some("read-only".into()),
        };
        refused(
            "approve",
            api.approve(&id, &verdict)
                .await
                .err()
                .and_then(|e| e.status()),
        );
        refused(
            "deny",
            api.deny(&id, &verdict).await.err().and_then(|e| e.status()),
        );
        refused(
            "approve an audit amendment",
            api.approve_amendment("acme", proposal, &DecisionIn::default())
                .await
                .err()
                .and_then(|e| e.status()),
        );
        refused(
            "create an agent",
            api.create_agent(
                "acme",
                &NameIn {
                    name: format!("{role}-agent"),
                },
            )
            .await
            .err()
            .and_then(|e| e.status()),
        );
        for (method, path, body) in [
            (Method::PUT, "/tenants/acme/policy", json!({})),
            (
                Method::PUT,
                "/tenants/acme/secrets/planted",
                json!({ "value": "x" }),
            ),
            (Method::DELETE, "/tenants/acme/secrets/planted", Value::Null),
            (Method::DELETE, "/tenants/acme", Value::Null),
            (Method::POST, "/tenants/acme/suspend", json!({})),
            (
                Method::POST,
                "/admins",
                json!({ "name": format!("{role}-made"), "role": "admin", "tenant": "acme" }),
            ),
        ] {
            let body = (!body.is_null()).then_some(body);
            let (status, answer) = app.api(method.clone(), path, token, body).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{role}: {method} {path}: {answer}"
            );
        }
        // Reads are fine.
        let listed = api
            .list_approvals(&portcullis_server::admin::approvals::ApprovalQuery {
                tenant: Some("acme".into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{role} lists approvals: {e}"));
        assert!(listed.iter().any(|a| a.id.as_str() == id), "{role}");
        api.approval(&id)
            .await
            .unwrap_or_else(|e| panic!("{role} reads an approval: {e}"));
    }
    // The auditor reads the trail; the viewer does not.
    assert!(
        !audit_events_of(&app, &auditor_token, "acme")
            .await
            .is_empty()
    );
    let (status, _) = app
        .api(
            Method::GET,
            "/audit/events?tenant=acme",
            &viewer_token,
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer reads the audit trail"
    );
    let (status, _) = app
        .api(
            Method::GET,
            "/audit/verify?tenant=acme",
            &viewer_token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer verifies the trail");

    // Nothing changed.
    assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);
    let amendments = app.admin_api().list_amendments("acme").await.unwrap();
    assert_eq!(amendments.len(), 1);
    assert_eq!(amendments[0].status, AmendmentStatus::Pending);
    let agents: Vec<AgentView> = app.admin_api().list_agents("acme").await.unwrap();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert!(app.admin_api().list_tenants().await.unwrap().len() == 1);

    // Both still look after their own credentials, and sign in to the console.
    let auditor = enroll(&app, &auditor, &auditor_token).await;
    let viewer = enroll(&app, &viewer, &viewer_token).await;
    for (human, may_audit) in [(&auditor, true), (&viewer, false)] {
        let session = web.sign_in(&app, human).await;
        let inbox = web.get("/console/t/acme/approvals", Some(&session)).await;
        assert_eq!(inbox.status, StatusCode::OK, "{}", human.name);
        assert!(
            inbox.text.contains(&id),
            "{}: the inbox lists it",
            human.name
        );
        assert_eq!(
            inbox.text.contains(r#"href="/console/t/acme/audit""#),
            may_audit,
            "{}: the audit link",
            human.name
        );
        for decision in ["approve", "deny"] {
            let page = web
                .decide(
                    &session,
                    "acme",
                    &id,
                    &[
                        ("csrf", &session.csrf),
                        ("decision", decision),
                        ("reason", "read-only"),
                    ],
                )
                .await;
            assert_eq!(
                page.status,
                StatusCode::FORBIDDEN,
                "{} decides ({decision}): {}",
                human.name,
                page.text
            );
            assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);
        }
        let audit = web.get("/console/t/acme/audit", Some(&session)).await;
        let expected = if may_audit {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(
            audit.status, expected,
            "{} reads the audit viewer",
            human.name
        );
        assert_secure(&audit, "audit viewer by role");
        // Signing out is theirs to do.
        web.post(
            "/console/logout",
            Some(&session),
            &[("csrf", &session.csrf)],
        )
        .await
        .assert_signed_out("sign-out");
    }
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "approve").is_empty() && events_of_kind(&events, "deny").is_empty(),
        "a read-only role decided"
    );
    app.stop().await;
}

/// The read-only rule lets a human's own credential requests through (`/admins/me/…`,
/// `/admins/{their name}/…`). It must not let through another request whose path merely
/// contains `/admins/{their name}/`: a tenant named `admins` and an auditor named `audit`
/// make `/tenants/admins/audit/amendments/{n}/approve` read like one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_humans_name_does_not_open_other_requests() {
    let app = TestApp::spawn().await;
    let api = app.admin_api();
    api.create_tenant(&NameIn {
        name: "admins".into(),
    })
    .await
    .expect("tenant `admins`");
    api.create_agent(
        "admins",
        &NameIn {
            name: "agent".into(),
        },
    )
    .await
    .expect("an entry in its trail");
    let proposal = api
        .propose_amendment(
            "admins",
            1,
            &ProposalIn {
                kind: "redaction".into(),
                note: "test".into(),
            },
        )
        .await
        .expect("propose an amendment")
        .proposal;
    let (_, auditor) = create_human(&app, "audit", "auditor", "admins").await;
    let (_, policy_viewer) = create_human(&app, "policy", "viewer", "admins").await;

    let decided = app
        .api_as(&auditor)
        .approve_amendment("admins", proposal, &DecisionIn::default())
        .await;
    let (policy_status, policy_answer) = app
        .api(
            Method::PUT,
            "/tenants/admins/policy",
            &policy_viewer,
            Some(json!({})),
        )
        .await;
    let amendments = api.list_amendments("admins").await.unwrap();
    assert_eq!(
        decided.as_ref().err().and_then(|e| e.status()),
        Some(StatusCode::FORBIDDEN),
        "the auditor `audit` decided an audit amendment in tenant `admins`: {decided:?}; now {amendments:?}"
    );
    assert_eq!(amendments[0].status, AmendmentStatus::Pending);
    assert_eq!(
        policy_status,
        StatusCode::FORBIDDEN,
        "the viewer `policy` reached PUT /tenants/admins/policy: {policy_answer}"
    );
    app.stop().await;
}

// ---- 9. Audit viewer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_viewer_filters_decisions_and_verifies_the_chain() {
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let approved = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);
    let denied = approval_id(&client.call("crm__issue_refund", refund(2600, "x")).await);

    let session = web.sign_in(&app, &approver).await;
    web.decide(
        &session,
        "acme",
        &approved,
        &[("csrf", &session.csrf), ("decision", "approve")],
    )
    .await
    .assert_see_other("/console/t/acme/approvals", "approve");
    web.decide(
        &session,
        "acme",
        &denied,
        &[
            ("csrf", &session.csrf),
            ("decision", "deny"),
            ("reason", "duplicate refund"),
        ],
    )
    .await
    .assert_see_other("/console/t/acme/approvals", "deny");
    assert_eq!(
        approval_status(&app, &approved).await,
        ApprovalStatus::Approved
    );
    assert_eq!(approval_status(&app, &denied).await, ApprovalStatus::Denied);

    let audit = |query: &'static str| {
        let web = &web;
        let session = &session;
        async move {
            let page = web
                .get(&format!("/console/t/acme/audit{query}"), Some(session))
                .await;
            assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.text);
            page.text
        }
    };
    let row = |id: &str| format!("<td>approval:{id}</td>");

    let all = audit("").await;
    assert!(
        all.contains(&row(&approved)) && all.contains(&row(&denied)),
        "{all}"
    );

    let approvals = audit("?kind=approve").await;
    assert!(approvals.contains(&row(&approved)), "{approvals}");
    assert!(!approvals.contains(&row(&denied)), "{approvals}");
    assert!(
        approvals.contains("<td>admin:acme-approver</td>"),
        "{approvals}"
    );
    assert!(!approvals.contains("<td>hold</td>"), "{approvals}");

    let denials = audit("?decision=deny").await;
    assert!(denials.contains(&row(&denied)), "{denials}");
    assert!(!denials.contains(&row(&approved)), "{denials}");

    let by_actor = audit("?actor=admin%3Aacme-approver&kind=deny").await;
    assert!(by_actor.contains(&row(&denied)), "{by_actor}");
    assert!(!by_actor.contains(&row(&approved)), "{by_actor}");
    let by_other = audit("?actor=admin%3Asomeone-else").await;
    assert!(!by_other.contains(&row(&approved)) && !by_other.contains(&row(&denied)));

    let resource = audit("?resource=approval%3A").await;
    assert!(resource.contains(&row(&approved)) && resource.contains(&row(&denied)));
    assert!(!resource.contains("<td>console</td>"), "{resource}");

    // Days: today holds both, a day long past neither.
    let today = &portcullis_server::clock::rfc3339(app.clock.now())[..10];
    let page = web
        .get(
            &format!("/console/t/acme/audit?from={today}&to={today}&kind=approve"),
            Some(&session),
        )
        .await;
    assert!(page.text.contains(&row(&approved)), "{}", page.text);
    let past = audit("?from=2001-01-01&to=2001-01-02").await;
    assert!(!past.contains(&row(&approved)) && !past.contains(&row(&denied)));

    let verified = audit("?verify=1").await;
    assert!(verified.contains("Intact"), "{verified}");
    assert!(!verified.contains("Verification failed"), "{verified}");
    app.stop().await;
}

/// The console answers only under `/console`: an unknown path elsewhere is the gateway's
/// plain 404, not a console page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_outside_the_console_are_not_console_pages() {
    let app = TestApp::spawn().await;
    for path in ["/nope", "/admin/v1/nope", "/t/acme/nope"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.headers().get("content-security-policy").is_none(),
            "{path} is not a console page"
        );
    }
    let response = app
        .http
        .get(format!("{}/console/nope", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get("content-security-policy").is_some());
    app.stop().await;
}

/// Wrong codes typed with a decision count like failed sign-ins: after the threshold the
/// human's codes are paused (also a right one), so a stolen session cannot guess its way to a
/// large decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_decision_codes_pause_the_human() {
    let app = TestApp::spawn_with(|c| {
        c.console.fresh_factor_above_cents = 0;
        c.console.login_lockout_threshold = 3;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let web = Web::new(&app);
    let approver = enroll(&app, "acme-approver", &acme.approver_token).await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let id = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);
    let session = web.sign_in(&app, &approver).await;
    for _ in 0..3 {
        let page = web
            .decide(
                &session,
                "acme",
                &id,
                &[
                    ("csrf", &session.csrf),
                    ("decision", "approve"),
                    ("code", "000000"),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.text);
    }
    let fresh = approver.fresh_code(&app);
    let page = web
        .decide(
            &session,
            "acme",
            &id,
            &[
                ("csrf", &session.csrf),
                ("decision", "approve"),
                ("code", &fresh),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "paused: {}",
        page.text
    );
    assert_eq!(approval_status(&app, &id).await, ApprovalStatus::Pending);
    let events = audit_events_of(&app, &app.admin_token, "acme").await;
    assert_eq!(events_of_kind(&events, "locked_out").len(), 1);
    app.stop().await;
}

// ---- 10. The second factor per tenant

/// Set `tenant`'s console TOTP rule (`required` or `optional`) as the human holding `token`.
pub(crate) async fn set_console_totp(
    app: &TestApp,
    token: &str,
    tenant: &str,
    totp: &str,
) -> Result<portcullis_server::admin::tenants::TenantView, StatusCode> {
    app.api_as(token)
        .set_tenant_console(
            tenant,
            &portcullis_server::admin::tenants::ConsoleIn { totp: totp.into() },
        )
        .await
        .map_err(|e| e.status().unwrap_or_else(|| panic!("no answer: {e}")))
}

/// The console TOTP rule the API shows for `tenant`.
async fn console_totp_of(app: &TestApp, tenant: &str) -> portcullis_store::ConsoleTotp {
    app.admin_api()
        .list_tenants()
        .await
        .expect("list tenants")
        .into_iter()
        .find(|t| t.name == tenant)
        .unwrap_or_else(|| panic!("tenant {tenant}"))
        .console_totp
}

/// A tenant-scoped human with a password and no second factor; returns their name and
/// password.
async fn password_only(app: &TestApp, name: &str, tenant: &str) -> (String, String) {
    let (name, token) = create_human(app, name, "approver", tenant).await;
    let password = format!("{name} correct horse battery");
    set_password(app, &token, &password).await;
    (name, password)
}

/// Every tenant needs a code by default. Made optional, a human of that tenant who has not
/// enrolled a second factor signs in with the password alone — and only that: a human who
/// has enrolled is still asked for a code, another tenant's humans and humans of no tenant
/// still need one, and the password is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_may_make_the_second_factor_optional_for_humans_without_one() {
    // Many refusals from one address on purpose: the address lockout is not under test.
    let app = TestApp::spawn_with(|c| c.auth.lockout_threshold = 100).await;
    let api = app.admin_api();
    for name in ["acme", "globex"] {
        api.create_tenant(&NameIn { name: name.into() })
            .await
            .unwrap_or_else(|e| panic!("tenant {name}: {e}"));
    }
    let web = Web::new(&app);
    let (acme_plain, acme_password) = password_only(&app, "acme-plain", "acme").await;
    let (globex_plain, globex_password) = password_only(&app, "globex-plain", "globex").await;
    let (acme_enrolled, acme_enrolled_token) =
        create_human(&app, "acme-enrolled", "approver", "acme").await;
    let acme_enrolled = enroll(&app, &acme_enrolled, &acme_enrolled_token).await;
    // A human of no tenant, with a password only.
    let operator = api
        .create_admin(&AdminIn {
            name: "operator-plain".into(),
            role: "approver".into(),
            tenant: None,
            ttl_secs: None,
        })
        .await
        .expect("an operator-wide human");
    let operator_password = "operator-plain correct horse battery";
    set_password(&app, &operator.token, operator_password).await;

    // The default, for every tenant: a code is needed, so a human without one stays out.
    assert_eq!(
        console_totp_of(&app, "acme").await,
        portcullis_store::ConsoleTotp::Required
    );
    assert_eq!(
        console_totp_of(&app, "globex").await,
        portcullis_store::ConsoleTotp::Required
    );
    let refusal = web.try_sign_in(&acme_plain, &acme_password, "").await;
    assert_eq!(refusal.status, StatusCode::UNAUTHORIZED, "{}", refusal.text);
    // The sign-in form does not insist on a code, but says when one is needed.
    let form = web.get("/console/login", None).await;
    let code_input = regex::Regex::new(r#"<input[^>]*id="code"[^>]*>"#)
        .expect("regex")
        .find(&form.text)
        .unwrap_or_else(|| panic!("no code field: {}", form.text))
        .as_str()
        .to_owned();
    assert!(!code_input.contains("required"), "{code_input}");
    assert!(
        form.text.contains("needed if you have set one up"),
        "{}",
        form.text
    );

    // Acme makes it optional.
    let view = set_console_totp(&app, &app.admin_token, "acme", "optional")
        .await
        .expect("acme's rule set");
    assert_eq!(view.name, "acme");
    assert_eq!(view.console_totp, portcullis_store::ConsoleTotp::Optional);
    assert_eq!(
        console_totp_of(&app, "globex").await,
        portcullis_store::ConsoleTotp::Required,
        "another tenant's rule"
    );

    // Acme's human without a second factor: in with the password alone, into a working
    // session.
    let page = web.try_sign_in(&acme_plain, &acme_password, "").await;
    page.assert_see_other("/console", "password only, in an optional tenant");
    let session = web.session(cookie_of(&page)).await;
    assert!(web.alive(&session, "acme").await);
    // The password is still checked.
    let refused = [
        (
            "a wrong password, no code",
            web.try_sign_in(&acme_plain, "not the password", "").await,
        ),
        (
            "an enrolled human without a code",
            web.try_sign_in(&acme_enrolled.name, &acme_enrolled.password, "")
                .await,
        ),
        (
            "an enrolled human with a wrong code",
            web.try_sign_in(
                &acme_enrolled.name,
                &acme_enrolled.password,
                if acme_enrolled.fresh_code(&app) == "000000" {
                    "000001"
                } else {
                    "000000"
                },
            )
            .await,
        ),
        (
            "another tenant's human without a second factor",
            web.try_sign_in(&globex_plain, &globex_password, "").await,
        ),
        (
            "a human of no tenant without a second factor",
            web.try_sign_in("operator-plain", operator_password, "")
                .await,
        ),
    ];
    for (what, page) in &refused {
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            page.text
        );
        assert!(page.header("set-cookie").is_empty(), "{what}: a cookie");
        assert_eq!(page.text, refusal.text, "{what}: the refusal differs");
    }
    // The enrolled human's right code still lets them in.
    web.sign_in(&app, &acme_enrolled).await;

    // Every refusal counted against its human, with its reason.
    let acme_events = app.audit_events("acme").await;
    let reasons = |events: &[Value], name: &str| -> Vec<String> {
        console_failures_of(events, name)
            .iter()
            .map(|e| {
                e["detail"]["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        reasons(&acme_events, &acme_plain),
        ["no second factor enrolled", "wrong password (or none set)"]
    );
    assert_eq!(
        reasons(&acme_events, &acme_enrolled.name),
        ["wrong or reused code", "wrong or reused code"]
    );
    assert_eq!(
        reasons(&app.audit_events("globex").await, &globex_plain),
        ["no second factor enrolled"]
    );
    assert_eq!(
        reasons(&system_events(&app).await, "operator-plain"),
        ["no second factor enrolled"]
    );
    let signed_in: Vec<_> = events_of_kind(&acme_events, "signed_in")
        .into_iter()
        .map(|e| e["actor"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(signed_in, ["admin:acme-plain", "admin:acme-enrolled"]);

    // Required again: the password alone no longer does.
    set_console_totp(&app, &app.admin_token, "acme", "required")
        .await
        .expect("acme's rule set back");
    let again = web.try_sign_in(&acme_plain, &acme_password, "").await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.text);
    app.stop().await;
}

/// Only an admin of the tenant changes its rule, each change is audited, and a bad value is
/// refused with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_of_the_tenant_changes_its_second_factor_rule() {
    let app = TestApp::spawn().await;
    let api = app.admin_api();
    for name in ["acme", "globex"] {
        api.create_tenant(&NameIn { name: name.into() })
            .await
            .unwrap_or_else(|e| panic!("tenant {name}: {e}"));
    }
    let (_, acme_admin) = create_human(&app, "acme-admin", "admin", "acme").await;
    let (_, globex_admin) = create_human(&app, "globex-admin", "admin", "globex").await;
    let (_, acme_approver) = create_human(&app, "acme-approver", "approver", "acme").await;
    let (_, acme_auditor) = create_human(&app, "acme-auditor", "auditor", "acme").await;

    // Another tenant's admin: not found, as if acme did not exist; no tenant is either.
    assert_eq!(
        set_console_totp(&app, &globex_admin, "acme", "optional")
            .await
            .err(),
        Some(StatusCode::NOT_FOUND),
        "globex's admin changed acme's rule"
    );
    assert_eq!(
        set_console_totp(&app, &app.admin_token, "no-such-tenant", "optional")
            .await
            .err(),
        Some(StatusCode::NOT_FOUND)
    );
    // Acme's own approver and auditor: forbidden.
    for (who, token) in [("approver", &acme_approver), ("auditor", &acme_auditor)] {
        assert_eq!(
            set_console_totp(&app, token, "acme", "optional")
                .await
                .err(),
            Some(StatusCode::FORBIDDEN),
            "acme's {who} changed acme's rule"
        );
    }
    // A value that is not a rule, and a field that is not one: refused.
    let (status, body) = app
        .api(
            Method::PUT,
            "/tenants/acme/console",
            &app.admin_token,
            Some(json!({ "totp": "sometimes" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("`required`") && detail.contains("`optional`"),
        "{body}"
    );
    let (status, body) = app
        .api(
            Method::PUT,
            "/tenants/acme/console",
            &app.admin_token,
            Some(json!({ "totp": "optional", "for": "everyone" })),
        )
        .await;
    assert!(
        status.is_client_error(),
        "an unknown field: {status} {body}"
    );
    assert_eq!(
        console_totp_of(&app, "acme").await,
        portcullis_store::ConsoleTotp::Required,
        "changed by a refused request"
    );
    let events = app.audit_events("acme").await;
    assert!(
        events_of_kind(&events, "config_changed").is_empty(),
        "{events:?}"
    );

    // Acme's admin changes it, audited on acme's chain with who did it and what.
    let view = set_console_totp(&app, &acme_admin, "acme", "optional")
        .await
        .expect("acme's admin sets acme's rule");
    assert_eq!(view.console_totp, portcullis_store::ConsoleTotp::Optional);
    assert_eq!(
        console_totp_of(&app, "acme").await,
        portcullis_store::ConsoleTotp::Optional
    );
    let view = set_console_totp(&app, &app.admin_token, "acme", "required")
        .await
        .expect("the operator's admin sets acme's rule");
    assert_eq!(view.console_totp, portcullis_store::ConsoleTotp::Required);
    let events = app.audit_events("acme").await;
    let changes: Vec<(String, Value, String)> = events_of_kind(&events, "config_changed")
        .into_iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap_or_default().to_owned(),
                e["detail"].clone(),
                e["resource"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let resource = format!("tenant:{}", view.id);
    assert_eq!(
        changes,
        [
            (
                "admin:acme-admin".to_owned(),
                json!({ "console_totp": "optional" }),
                resource.clone()
            ),
            (
                "admin:admin".to_owned(),
                json!({ "console_totp": "required" }),
                resource
            ),
        ]
    );
    assert!(
        events_of_kind(&app.audit_events("globex").await, "config_changed").is_empty(),
        "globex's chain"
    );
    app.stop().await;
}

/// A human who signed in with the password alone cannot make a decision at or above the
/// fresh-factor amount (they have no code to give); smaller ones they can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_without_a_second_factor_cannot_make_large_decisions() {
    // Wrong codes count towards the human's pause: this test makes several on purpose.
    let app = TestApp::spawn_with(|c| {
        c.console.fresh_factor_above_cents = 2000;
        c.console.login_lockout_threshold = 20;
    })
    .await;
    let acme = app.seed_tenant("acme").await;
    let profile =
        serde_json::from_value(json!({ "cost_argument": "amount_cents" })).expect("a tool profile");
    app.admin_api()
        .set_tool_profile("acme", &acme.connection_id, "issue_refund", &profile)
        .await
        .expect("declare the refund's dollar impact");
    set_console_totp(&app, &app.admin_token, "acme", "optional")
        .await
        .expect("acme's rule set");
    let web = Web::new(&app);
    let (plain, password) = password_only(&app, "acme-plain", "acme").await;
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let small = approval_id(&client.call("crm__issue_refund", refund(1999, "x")).await);
    let large = approval_id(&client.call("crm__issue_refund", refund(2500, "x")).await);

    let page = web.try_sign_in(&plain, &password, "").await;
    page.assert_see_other("/console", "password only");
    let session = web.session(cookie_of(&page)).await;
    for (what, fields) in [
        ("approve, no code", vec![("decision", "approve")]),
        (
            "approve, a made-up code",
            vec![("decision", "approve"), ("code", "123456")],
        ),
        (
            "deny, no code",
            vec![("decision", "deny"), ("reason", "too much")],
        ),
    ] {
        let mut fields = fields;
        fields.push(("csrf", &session.csrf));
        let page = web.decide(&session, "acme", &large, &fields).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            page.text
        );
        assert_eq!(
            approval_status(&app, &large).await,
            ApprovalStatus::Pending,
            "{what}"
        );
    }
    // Below the amount no code is asked for: the session itself works.
    web.decide(
        &session,
        "acme",
        &small,
        &[("csrf", &session.csrf), ("decision", "approve")],
    )
    .await
    .assert_see_other("/console/t/acme/approvals", "below the amount");
    assert_eq!(
        approval_status(&app, &small).await,
        ApprovalStatus::Approved
    );
    assert_eq!(approval_status(&app, &large).await, ApprovalStatus::Pending);
    app.stop().await;
}
