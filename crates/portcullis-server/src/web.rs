//! What a web page could send: requests naming another host (DNS rebinding), coming from
//! another origin, or shaped as a cross-site "simple" request are refused before
//! authentication, so a page in the user's browser can neither reach the gateway nor spend a
//! local address's failure budget (the lockout).
//!
//! rmcp checks `Host` and `Origin` too, but only after the gateway has authenticated the
//! request (and counted a failure); its matchers are private, hence this small one of our own.

use crate::state::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use std::sync::Arc;

/// One allowed origin: scheme, lower-case host (IPv6 without brackets) and port (the scheme's
/// default when the entry names none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]`, nothing else (no path, no wildcard); `None` for anything
    /// else, including the opaque origin `null`.
    fn parse(value: &str) -> Option<Self> {
        let uri: http::Uri = value.trim().parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if uri
            .path_and_query()
            .is_some_and(|p| !p.as_str().is_empty() && p.as_str() != "/")
        {
            return None;
        }
        let authority = uri.authority()?;
        if authority.as_str().contains('@') {
            return None;
        }
        Some(Self {
            scheme,
            host: host_only(authority.host()),
            port: authority.port_u16().unwrap_or(default_port),
        })
    }
}

fn host_only(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// The hosts and origins the operator allows (`server.allowed_hosts`,
/// `server.allowed_origins`), parsed once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    /// Host names (lower case, IPv6 without brackets), each with a port or any port.
    hosts: Vec<(String, Option<u16>)>,
    origins: Vec<Origin>,
}

impl Sites {
    /// Parse the configured lists; the error names the first entry that is not usable.
    pub fn new(hosts: &[String], origins: &[String]) -> Result<Self, String> {
        let hosts = hosts
            .iter()
            .map(|entry| {
                let authority: http::uri::Authority = entry.trim().parse().map_err(|_| {
                    format!("server.allowed_hosts: `{entry}` is not a host name or host:port")
                })?;
                Ok((host_only(authority.host()), authority.port_u16()))
            })
            .collect::<Result<_, String>>()?;
        let origins = origins
            .iter()
            .map(|entry| {
                Origin::parse(entry).ok_or_else(|| {
                    format!(
                        "server.allowed_origins: `{entry}` is not an origin (http:// or https://, a host and an optional port, nothing after it)"
                    )
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { hosts, origins })
    }

    /// Why `request` must be refused before anyone reads its credentials, if it must.
    fn refusal(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Option<Refusal> {
        let authority = match headers.get(http::header::HOST) {
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<http::uri::Authority>().ok()),
            None => uri.authority().cloned(),
        };
        // DNS rebinding: a page on another name that resolves to this address.
        if !self.hosts.is_empty() {
            let Some(authority) = &authority else {
                return Some(Refusal::Host);
            };
            let host = host_only(authority.host());
            let port = authority.port_u16();
            let allowed = self
                .hosts
                .iter()
                .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port));
            if !allowed {
                return Some(Refusal::Host);
            }
        }
        // A browser names the page's origin on every cross-origin request it lets a script
        // or a form send; only the operator's allow-list may call (none by default), and the
        // gateway's own origin (the host the request names, itself an allowed host: a page
        // there is one the gateway served).
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let same_origin = |o: &Origin| {
                authority.as_ref().is_some_and(|a| {
                    let default_port = if o.scheme == "https" { 443 } else { 80 };
                    o.host == host_only(a.host()) && o.port == a.port_u16().unwrap_or(default_port)
                })
            };
            let allowed = origin
                .to_str()
                .ok()
                .and_then(Origin::parse)
                .is_some_and(|o| self.origins.contains(&o) || same_origin(&o));
            if !allowed {
                return Some(Refusal::Origin);
            }
        } else if let Some(site) = headers.get("sec-fetch-site") {
            // No Origin (an image, a link, a navigation), but the browser says the request
            // comes from another site.
            if !matches!(site.as_bytes(), b"same-origin" | b"none") {
                return Some(Refusal::Origin);
            }
        }
        // What a cross-site form or `fetch` may send without a preflight: refused before
        // authentication counts it. Two exceptions, each carrying a header a page cannot
        // attach without a preflight (never granted here): an agent's call of an HTTP API
        // connection (`/t/{tenant}/http/…`) with `Authorization` — REST APIs take form and
        // text bodies — and a signed inbound webhook (`/t/{tenant}/hooks/…`), which code
        // hosts send as forms too.
        let under = |prefix: &str| {
            uri.path()
                .strip_prefix("/t/")
                .and_then(|rest| rest.split_once('/'))
                .is_some_and(|(_, rest)| rest.starts_with(prefix))
        };
        // The console's forms are form posts by design: each carries the session's CSRF token
        // (checked before anything changes) from a SameSite=Strict cookie, and a cross-origin
        // page was refused above by its Origin.
        let console_form = uri.path().starts_with("/console/");
        let api_call = console_form
            || (under("http/") && headers.contains_key(http::header::AUTHORIZATION))
            || (under("hooks/")
                && (headers.contains_key("x-hub-signature-256")
                    || headers.contains_key("webhook-signature")));
        if matches!(
            *method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ) && !api_call
        {
            let essence = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            if essence.as_deref().is_some_and(|e| {
                matches!(
                    e,
                    "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
                )
            }) {
                return Some(Refusal::SimpleContentType);
            }
        }
        None
    }
}

/// Why a request was refused as one a web page could have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Host,
    Origin,
    SimpleContentType,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Refusal::Host => (
                StatusCode::FORBIDDEN,
                "Forbidden: Host header is not allowed (server.allowed_hosts)",
            ),
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                "Forbidden: cross-origin requests are not allowed (server.allowed_origins)",
            ),
            Refusal::SimpleContentType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type: send Content-Type: application/json",
            ),
        };
        (status, message).into_response()
    }
}

/// Middleware on every route of the main listener: refuse what a web page could have sent,
/// before authentication reads (and counts) credentials.
pub async fn refuse_cross_site(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(refusal) = state
        .sites
        .refusal(request.method(), request.uri(), request.headers())
    {
        state.metrics.cross_site_refusals.inc();
        return refusal.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(origins: &[&str]) -> Sites {
        let hosts = ["localhost", "127.0.0.1", "[::1]"].map(String::from);
        let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
        Sites::new(&hosts, &origins).expect("valid")
    }

    fn check(sites: &Sites, method: Method, pairs: &[(&'static str, &str)]) -> Option<Refusal> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, value.parse().expect("header value"));
        }
        sites.refusal(&method, &"/t/acme/mcp".parse().expect("uri"), &headers)
    }

    #[test]
    fn a_plain_client_passes() {
        let s = sites(&[]);
        let json = ("content-type", "application/json");
        assert_eq!(
            check(&s, Method::POST, &[("host", "127.0.0.1:8745"), json]),
            None
        );
        assert_eq!(check(&s, Method::GET, &[("host", "localhost")]), None);
        assert_eq!(check(&s, Method::POST, &[("host", "[::1]:1"), json]), None);
    }

    #[test]
    fn another_host_name_is_refused() {
        let s = sites(&[]);
        assert_eq!(
            check(&s, Method::POST, &[("host", "evil.example:8745")]),
            Some(Refusal::Host)
        );
        assert_eq!(check(&s, Method::POST, &[]), Some(Refusal::Host));
    }

    #[test]
    fn origins_pass_only_when_listed_exactly() {
        let s = sites(&["https://console.example.com", "http://localhost:3000"]);
        let host = ("host", "127.0.0.1:8745");
        for origin in [
            "https://console.example.com",
            "https://CONSOLE.example.com:443",
            "http://localhost:3000",
        ] {
            assert_eq!(
                check(&s, Method::POST, &[host, ("origin", origin)]),
                None,
                "{origin}"
            );
        }
        for origin in [
            "https://evil.example",
            "null",
            "http://console.example.com",
            "https://console.example.com:8443",
            "http://localhost:3001",
            "http://localhost",
            "not an origin",
        ] {
            assert_eq!(
                check(&s, Method::POST, &[host, ("origin", origin)]),
                Some(Refusal::Origin),
                "{origin}"
            );
        }
        // With no allow-list, only the gateway's own origin passes (what a local client or a
        // page the gateway served sends); a rebound name never gets that far.
        let none = sites(&[]);
        assert_eq!(
            check(
                &none,
                Method::GET,
                &[host, ("origin", "http://127.0.0.1:8745")]
            ),
            None
        );
        for other in [
            "http://127.0.0.1:8746",
            "http://localhost:8745",
            "https://127.0.0.1",
        ] {
            assert_eq!(
                check(&none, Method::GET, &[host, ("origin", other)]),
                Some(Refusal::Origin),
                "{other}"
            );
        }
        assert_eq!(
            check(
                &none,
                Method::POST,
                &[
                    ("host", "evil.example.com:8745"),
                    ("origin", "http://evil.example.com:8745")
                ]
            ),
            Some(Refusal::Host)
        );
    }

    #[test]
    fn a_browser_request_without_origin_is_judged_by_sec_fetch_site() {
        let s = sites(&[]);
        let host = ("host", "127.0.0.1:8745");
        for site in ["cross-site", "same-site"] {
            assert_eq!(
                check(&s, Method::GET, &[host, ("sec-fetch-site", site)]),
                Some(Refusal::Origin)
            );
        }
        assert_eq!(
            check(&s, Method::GET, &[host, ("sec-fetch-site", "none")]),
            None
        );
    }

    #[test]
    fn simple_request_bodies_are_refused() {
        let s = sites(&[]);
        let host = ("host", "127.0.0.1:8745");
        for ct in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            assert_eq!(
                check(&s, Method::POST, &[host, ("content-type", ct)]),
                Some(Refusal::SimpleContentType),
                "{ct}"
            );
        }
        assert_eq!(
            check(&s, Method::GET, &[host, ("content-type", "text/plain")]),
            None
        );
        // An HTTP API call with credentials may carry a form body; nothing else may.
        let form = [
            host,
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Bearer pcagt_x"),
        ];
        let at = |path: &str| {
            let mut headers = HeaderMap::new();
            for (name, value) in form {
                headers.insert(name, value.parse().unwrap());
            }
            s.refusal(&Method::POST, &path.parse().unwrap(), &headers)
        };
        assert_eq!(at("/t/acme/http/billing/v1/charges"), None);
        assert_eq!(at("/t/acme/mcp"), Some(Refusal::SimpleContentType));
        assert_eq!(at("/admin/v1/tenants"), Some(Refusal::SimpleContentType));
    }

    #[test]
    fn unusable_entries_are_refused_at_start() {
        for bad in [
            "*",
            "null",
            "ftp://x",
            "https://x/path",
            "https://u@x",
            "x.example",
        ] {
            assert!(Sites::new(&[], &[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
