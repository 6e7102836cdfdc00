//! The console end to end in a real browser: `console-e2e/e2e.mjs` (Playwright, pinned in
//! `console-e2e/package-lock.json`) drives Chromium through sign-in with password and TOTP,
//! the approvals inbox (approve one held call, deny another), the audit viewer (both
//! decisions, the chain verified), another tenant's pages (not found), forged decisions
//! (another tenant's request, no or a wrong CSRF token) and sign-out. The gateway, its tenants,
//! the held calls and the TOTP code (from the gateway's manual clock) come from here; the
//! outcome is checked here too: the approved call executes, the denied one does not, the
//! others stay pending.
//!
//! Needs `PORTCULLIS_TEST_CHROMIUM` (the browser) and `PORTCULLIS_TEST_CONSOLE_E2E` (the
//! `console-e2e` folder, after `npm ci` there); without them the test prints a note and
//! passes, unless `PORTCULLIS_TEST_REQUIRE_BROWSER` is set (CI sets all three).
//! `PORTCULLIS_SCREENSHOTS_TO_DOCS=1` writes the screenshots to the repository's `docs/`.

use crate::support::*;
use portcullis_core::account::{STEP_SECS, TotpSecret};
use portcullis_server::admin::humans::PasswordIn;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the browser script may take (it needs a few seconds).
const BROWSER_WAIT: Duration = Duration::from_secs(180);

/// The browser and the script's folder, or `None` (with a note) when this run has none.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    match (
        var("PORTCULLIS_TEST_CHROMIUM"),
        var("PORTCULLIS_TEST_CONSOLE_E2E"),
    ) {
        (Some(chromium), Some(e2e)) => {
            assert!(
                chromium.is_file(),
                "PORTCULLIS_TEST_CHROMIUM: no browser at {}",
                chromium.display()
            );
            assert!(
                e2e.join("node_modules/playwright-core").is_dir(),
                "PORTCULLIS_TEST_CONSOLE_E2E: run `npm ci` in {} first",
                e2e.display()
            );
            Some((chromium, e2e))
        }
        _ => {
            assert!(
                std::env::var_os("PORTCULLIS_TEST_REQUIRE_BROWSER").is_none(),
                "PORTCULLIS_TEST_REQUIRE_BROWSER is set but PORTCULLIS_TEST_CHROMIUM or PORTCULLIS_TEST_CONSOLE_E2E is not"
            );
            eprintln!(
                "console browser test not run: set PORTCULLIS_TEST_CHROMIUM and PORTCULLIS_TEST_CONSOLE_E2E (see console-e2e/README.md)"
            );
            None
        }
    }
}

fn refund(reason: &str) -> Value {
    json!({ "customer_id": "c_1", "amount_cents": 2500, "reason": reason })
}

/// A PNG of some size, written by the browser.
fn assert_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 1000 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG screenshot ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let Some((chromium, e2e)) = browser() else {
        return;
    };
    let app = TestApp::spawn().await;
    let acme = app.seed_tenant("acme").await;
    let globex = app.seed_tenant("globex").await;

    // The approver's console sign-in: a password and an authenticator app.
    let password = "correct horse battery staple";
    let approver = app.api_as(&acme.approver_token);
    approver
        .set_own_password(&PasswordIn {
            password: password.to_owned().into(),
        })
        .await
        .expect("set the approver's password");
    let enrolled = approver
        .enroll_own_totp()
        .await
        .expect("enroll the approver's TOTP");
    let secret = TotpSecret::from_base32(enrolled.secret.expose_secret()).expect("base32");
    // The gateway's clock is manual: it stays in this step until the test moves it.
    let step = app.clock.now().div_euclid(1000).div_euclid(STEP_SECS);
    let code = secret.code_at_step(step);

    // Held calls: two to decide in the browser, one that must stay pending, one in globex.
    let client = app.client("acme", &acme.agent_token, Era::Discover).await;
    let to_approve = approval_id(&client.call("crm__issue_refund", refund("refund-one")).await);
    let to_deny = approval_id(&client.call("crm__issue_refund", refund("refund-two")).await);
    let pending = approval_id(
        &client
            .call("crm__issue_refund", refund("refund-three"))
            .await,
    );
    let globex_client = app
        .client("globex", &globex.agent_token, Era::Discover)
        .await;
    let foreign = approval_id(
        &globex_client
            .call("crm__issue_refund", refund("refund-globex"))
            .await,
    );

    let to_docs = std::env::var("PORTCULLIS_SCREENSHOTS_TO_DOCS").as_deref() == Ok("1");
    let scratch = tempfile::tempdir().expect("temp dir");
    let screenshots = if to_docs {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs"))
    } else {
        scratch.path().to_owned()
    };
    const SHOTS: [&str; 3] = [
        "console-inbox.png",
        "console-audit.png",
        "console-agents.png",
    ];
    for shot in SHOTS {
        let _ = std::fs::remove_file(screenshots.join(shot));
    }

    // The session cookie is `__Host-` and `Secure`: Chromium keeps it on plain http only for
    // localhost.
    let base = format!("http://localhost:{}", app.addr.port());
    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(e2e.join("e2e.mjs"))
        .current_dir(&e2e)
        .env("E2E_CHROMIUM", &chromium)
        .env("E2E_BASE_URL", &base)
        .env("E2E_NAME", "acme-approver")
        .env("E2E_PASSWORD", password)
        .env("E2E_CODE", &code)
        .env("E2E_APPROVE_ID", &to_approve)
        .env("E2E_DENY_ID", &to_deny)
        .env("E2E_PENDING_ID", &pending)
        .env("E2E_FOREIGN_ID", &foreign)
        .env("E2E_TENANT", "acme")
        .env("E2E_FOREIGN_TENANT", "globex")
        .env("SCREENSHOTS", &screenshots)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_WAIT, run)
        .await
        .unwrap_or_else(|_| panic!("the browser script did not finish in {BROWSER_WAIT:?}"))
        .expect("run node (is Node.js >= 20 on PATH?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser script failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    eprintln!(
        "{stdout}browser script took {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // What the clicks did, seen from the gateway.
    let approved = app.approval(&to_approve).await;
    assert_eq!(approved.status, ApprovalStatus::Approved, "{approved:?}");
    let denied = app.approval(&to_deny).await;
    assert_eq!(denied.status, ApprovalStatus::Denied, "{denied:?}");
    assert_eq!(app.approval(&pending).await.status, ApprovalStatus::Pending);
    assert_eq!(app.approval(&foreign).await.status, ApprovalStatus::Pending);

    // The agent's identical calls: the approved one executes, the denied one never does.
    let executed = client.call("crm__issue_refund", refund("refund-one")).await;
    assert_eq!(status(&executed), "issued", "{executed:?}");
    let refused = client.call("crm__issue_refund", refund("refund-two")).await;
    assert_eq!(status(&refused), "denied", "{refused:?}");
    let reasons = structured(&refused)["reasons"].to_string();
    assert!(
        reasons.contains("Duplicate of an earlier refund"),
        "the denial's reason reaches the agent: {reasons}"
    );
    let effects = effect_lines(&acme.effect_log);
    assert_eq!(
        effects.len(),
        1,
        "exactly the approved call ran: {effects:?}"
    );
    assert_eq!(effects[0]["arguments"]["reason"], "refund-one");
    assert!(effect_lines(&globex.effect_log).is_empty());
    assert_eq!(
        app.approval(&to_approve).await.status,
        ApprovalStatus::Executed
    );

    // The decisions in the audit trail name the human who made them in the console.
    let events = app.audit_events("acme").await;
    for (kind, id) in [("approve", &to_approve), ("deny", &to_deny)] {
        let resource = format!("approval:{id}");
        let event = events
            .iter()
            .find(|e| e["kind"] == kind && e["resource"] == resource.as_str())
            .unwrap_or_else(|| panic!("no {kind} event for {resource}"));
        assert!(
            event["actor"]
                .as_str()
                .is_some_and(|a| a.contains("acme-approver")),
            "{event}"
        );
    }
    // The console session began and ended in the tenant's trail.
    for kind in ["signed_in", "signed_out"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == kind && e["actor"] == "admin:acme-approver"),
            "no {kind} event: {:?}",
            kinds(&events)
        );
    }

    for shot in SHOTS {
        assert_png(&screenshots.join(shot));
    }
    app.stop().await;
}
