//! The console's page frame, its one stylesheet (served from the console's own origin: no
//! inline style, no script) and its message page. `maud` escapes every value it renders.

use axum::response::{Html, IntoResponse, Response};
use http::header;
use maud::{DOCTYPE, Markup, html};

/// The whole stylesheet: about 2 KB, the only asset a page loads.
pub const CSS: &str = "\
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2327;background:#f6f7f7}\
header{background:#1d2327;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}\
header a{color:#fff}header form{margin-left:auto}header .meta{color:#c3c4c7}\
main{max-width:70rem;margin:1rem auto;padding:0 1rem}\
h1{font-size:1.3rem}h2{font-size:1.05rem;margin:.2rem 0}\
.card{background:#fff;border:1px solid #dcdcde;border-radius:6px;padding:1rem;margin:0 0 1rem}\
.pending{border-left:4px solid #b26200}.decided{opacity:.85}\
pre{background:#f0f0f1;padding:.5rem;overflow:auto;white-space:pre-wrap;word-break:break-all}\
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #dcdcde;padding:.3rem .5rem;text-align:left;vertical-align:top}td code,td:nth-child(3),td:nth-child(5){overflow-wrap:anywhere}\
label{display:block;margin:.4rem 0 .1rem;font-weight:600}input,select,textarea{font:inherit;padding:.3rem;width:100%;box-sizing:border-box}\
button{font:inherit;padding:.4rem .9rem;margin:.5rem .5rem 0 0;cursor:pointer}\
.approve{background:#00703c;color:#fff;border:0}.deny{background:#b32d2e;color:#fff;border:0}\
.ok{color:#00703c}.bad{color:#b32d2e}.meta{color:#50575e;font-size:.9rem}\
.filters{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.5rem;align-items:end}\
form.inline{display:inline}.inline button{margin:0}td form{margin:0}\
:focus{outline:3px solid #2271b1;outline-offset:2px}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;color:#000;padding:.5rem}";

pub async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

/// A page: the frame, the navigation of a signed-in human (tenant, sections, sign out), the
/// body.
pub fn frame(title: &str, nav: Option<Nav<'_>>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Portcullis" }
                    link rel="stylesheet" href="/console/console.css";
                }
                body {
                    a class="skip" href="#main" { "Skip to content" }
                    header {
                        strong { "Portcullis" }
                        @if let Some(nav) = &nav {
                            a href={ "/console/t/" (nav.tenant) "/approvals" } { "Approvals" }
                            @if nav.audit {
                                a href={ "/console/t/" (nav.tenant) "/audit" } { "Audit" }
                            }
                            a href={ "/console/t/" (nav.tenant) "/access" } { "Access" }
                            a href={ "/console/t/" (nav.tenant) "/agents" } { "Agents" }
                            a href={ "/console/t/" (nav.tenant) "/guardrails" } { "Guardrails" }
                            @if nav.webhooks {
                                a href={ "/console/t/" (nav.tenant) "/webhooks" } { "Webhooks" }
                            }
                            a href={ "/console/t/" (nav.tenant) "/policy" } { "Policy" }
                            span class="meta" { "Tenant " (nav.tenant) " · " (nav.who) }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(nav.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    main id="main" {
                        h1 { (title) }
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A one-button form for one change: the session's CSRF token and a submit button whose
/// label says what it does to what.
pub fn action(to: &str, csrf: &str, label: &str, class: &str) -> Markup {
    html! {
        form class="inline" method="post" action=(to) {
            input type="hidden" name="csrf" value=(csrf);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// A time, or a dash for none.
pub fn maybe_when(millis: Option<i64>) -> String {
    millis.map_or_else(|| "—".to_owned(), when)
}

/// What the navigation shows.
pub struct Nav<'a> {
    pub tenant: &'a str,
    pub who: &'a str,
    pub csrf: &'a str,
    /// Whether the audit viewer is open to this human's role.
    pub audit: bool,
    /// Whether the webhook pages are (admins only, like the API).
    pub webhooks: bool,
}

/// A generic page with one message (errors, empty states).
pub fn message(title: &str, text: &str) -> Html<String> {
    frame(
        title,
        None,
        html! {
            p { (text) }
            p { a href="/console" { "Back to the console" } }
        },
    )
}

/// A time for people (UTC, to the second).
pub fn when(millis: i64) -> String {
    let text = crate::clock::rfc3339(millis);
    match text.split_once('.') {
        Some((seconds, _)) => format!("{seconds}Z").replace('T', " "),
        None => text.replace('T', " "),
    }
}

/// Dollars from cents.
pub fn dollars(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, (cents % 100).abs())
}
