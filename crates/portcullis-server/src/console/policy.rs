//! Policies: the tenant's policy in force — every policy, built-in or the tenant's, with its
//! plain-English sentence, the Cedar text and the settings — a check of a draft against the
//! schema (it changes nothing: saving stays with `portcullis policy put`, which runs the
//! same check), and an explanation of which policies decide one call, and why, under the
//! policy in force.

use super::page::frame;
use super::{Failure, Signed, tenant_for};
use crate::admin::policy::PolicyView;
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use portcullis_core::policy::table;
use serde::Deserialize;
use std::sync::Arc;

/// The largest draft checked (as the API's limit for a policy document).
const MAX_DRAFT: usize = 1_000_000;

fn rules(view: &PolicyView) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Policy" } th scope="col" { "Does" } th scope="col" { "What it says" } } }
            tbody {
                @for p in &view.policies {
                    tr {
                        th scope="row" { (p.id) @if p.builtin { br; span class="meta" { "built-in" } } }
                        td { (format!("{:?}", p.kind).to_lowercase()) }
                        td { (p.english) }
                    }
                }
            }
        }
    }
}

/// What the page's forms show again after a check or an explanation.
#[derive(Default)]
struct Drafts<'a> {
    /// A checked draft (cedar, settings); none: the policy in force.
    document: Option<(&'a str, &'a str)>,
    call: &'a str,
}

async fn render(
    state: &Arc<AppState>,
    signed: &Signed,
    tenant: &str,
    drafts: Drafts<'_>,
    result: Option<Markup>,
) -> Result<Response, Failure> {
    let tenant = tenant_for(state, signed, tenant).await?;
    let view = crate::admin::policy::get_policy(
        State(state.clone()),
        signed.ctx.clone(),
        Path(tenant.name.clone()),
    )
    .await?
    .0;
    let settings = serde_json::to_string_pretty(&view.settings).unwrap_or_default();
    let (cedar, settings) = drafts
        .document
        .unwrap_or((view.cedar.as_str(), settings.as_str()));
    let call = drafts.call;
    let base = format!("/console/t/{}/policy", tenant.name);
    let csrf = &signed.csrf;
    let who = signed.ctx.actor();
    let body = html! {
        @if let Some(result) = result { (result) }
        p class="meta" {
            (view.version.map_or("Built-in policies only".to_owned(), |v| format!("Version {v}")))
            " · policy hash " code { (view.hash) }
        }
        (rules(&view))
        form class="card" method="post" action={ (base) "/explain" } {
            input type="hidden" name="csrf" value=(csrf);
            label for="call" { "Explain a call under the policy in force: AGENT CONNECTION/TOOL EFFECT {ARGS} [OPTIONS]" }
            input id="call" name="call" value=(call) placeholder=r#"support-bot crm/issue_refund spend {"amount_cents": 20000} cost_arg=amount_cents"# required;
            button type="submit" { "Explain" }
        }
        form class="card" method="post" action={ (base) "/validate" } {
            input type="hidden" name="csrf" value=(csrf);
            label for="cedar" { "Cedar policies (a draft: checking changes nothing)" }
            textarea id="cedar" name="cedar" rows="14" spellcheck="false" { (cedar) }
            label for="settings" { "Settings of the built-in approval points (JSON)" }
            textarea id="settings" name="settings" rows="8" spellcheck="false" { (settings) }
            button type="submit" { "Check against the schema" }
        }
    };
    Ok(frame("Policy", Some(signed.nav(&tenant.name, &who)), body).into_response())
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
) -> Result<Response, Failure> {
    render(&state, &signed, &tenant, Drafts::default(), None).await
}

#[derive(Deserialize)]
pub struct ValidateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    cedar: String,
    #[serde(default)]
    settings: String,
}

/// Check a draft: every problem the schema finds, or its policies as sentences. A POST (with
/// the CSRF token) only so a draft of any length fits; it changes nothing.
pub async fn validate(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Form(form): Form<ValidateForm>,
) -> Result<Response, Failure> {
    signed.check_csrf(&form.csrf)?;
    // The tenant first: nothing is compiled for a page this human may not see.
    tenant_for(&state, &signed, &tenant).await?;
    if form.cedar.len() + form.settings.len() > MAX_DRAFT {
        return Err(Failure::BadRequest("A policy document is at most 1 MB."));
    }
    let settings_text = if form.settings.trim().is_empty() {
        "{}"
    } else {
        form.settings.as_str()
    };
    let document = serde_json::from_str(settings_text)
        .map_err(|e| format!("policy settings are not JSON: {e}"))
        .and_then(|settings| crate::engines::document(&form.cedar, &settings));
    let checked = match document {
        Ok(document) => crate::engines::compile_untrusted(document).await,
        Err(problem) => Err(problem),
    };
    let result = match checked {
        Ok(engine) => html! {
            section class="card" role="status" aria-labelledby="checked" {
                h2 id="checked" class="ok" { "Valid" }
                p class="meta" { (engine.rules().len()) " policies · policy hash " code { (engine.hash()) } }
                ul { @for r in engine.rules() { li { strong { (r.id) } ": " (r.english()) } } }
            }
        },
        Err(problems) => html! {
            section class="card" role="alert" aria-labelledby="checked" {
                h2 id="checked" class="bad" { "Not valid" }
                pre { (problems) }
            }
        },
    };
    let drafts = Drafts {
        document: Some((&form.cedar, &form.settings)),
        call: "",
    };
    render(&state, &signed, &tenant, drafts, Some(result)).await
}

#[derive(Deserialize)]
pub struct ExplainForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    call: String,
}

/// Which policies decide one call under the policy in force, and why.
pub async fn explain(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(tenant): Path<String>,
    Form(form): Form<ExplainForm>,
) -> Result<Response, Failure> {
    signed.check_csrf(&form.csrf)?;
    let found = tenant_for(&state, &signed, &tenant).await?;
    let engine = crate::policy::engine(&state, &found.id)
        .await?
        .map_err(Failure::Refused)?;
    let result = match table::explain(&engine, &form.call) {
        Ok(explained) => {
            let e = &explained.evaluation;
            html! {
                section class="card" role="status" aria-labelledby="explained" {
                    h2 id="explained" { (e.outcome().as_str().to_uppercase()) }
                    @if !e.reasons().is_empty() { ul { @for r in e.reasons() { li { "because: " (r) } } } }
                    @for d in &explained.deciding {
                        p { strong { "policy " (d.id) } ": " (d.english.as_deref().unwrap_or("(not a policy: evaluation error)")) }
                        @if let Some(cedar) = &d.cedar { details { summary { "Cedar" } pre { (cedar) } } }
                    }
                    @if !e.points().is_empty() {
                        p { "Approval points: " (e.points().iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")) }
                    }
                    p class="meta" { "policy hash " code { (e.policy_hash()) } }
                }
            }
        }
        Err(problem) => html! {
            section class="card" role="alert" aria-labelledby="explained" {
                h2 id="explained" class="bad" { "Cannot explain that call" }
                pre { (problem) }
            }
        },
    };
    let drafts = Drafts {
        document: None,
        call: &form.call,
    };
    render(&state, &signed, &tenant, drafts, Some(result)).await
}
