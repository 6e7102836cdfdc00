//! Scrub: what crosses the gate as data is checked on its way. An upstream's tool result is
//! redacted per its connection's setting (personal data off, masked or pseudonymised within
//! the agent's session — the session's map sealed in the store under the tenant's vault key,
//! for a day; credentials masked unless an admin turned that off) and read by the
//! injection spotter; an effect's arguments are scanned for personal data (which becomes the
//! data class `customer` for the policies) and for credentials (which refuse the call).
//!
//! INVARIANT: one place per direction. Every tool result an agent receives passes
//! [`Scrub::result`] (called by `execute` on the upstream's answer, before it becomes a
//! `CallOutcome::Completed`), and every effect is decided with [`arguments`]' findings
//! (`decide`). Each redaction, each flagged result and each observed or blocked argument
//! writes one audit event of kinds and counts — never a value, a span or the text — and the
//! result reaches the agent only once those events are durable (withheld otherwise).

use super::call_draft;
use crate::cache::AccessCache;
use crate::clock::Clock;
use crate::policy::Caller;
use crate::state::AppState;
use crate::upstream::UpstreamError;
use portcullis_core::UnixMillis;
use portcullis_core::action::HashedAction;
use portcullis_core::audit::{AuditDraft, AuditKind};
use portcullis_core::id::{AgentId, ConnectionId, TenantId};
use portcullis_redact::injection::{self, SignalKind};
use portcullis_redact::{Finding, Kind, Pseudonyms, Redactor, Treatment};
use portcullis_store::{MapKey, PiiMode, ResultRedaction, SecretsMode, Store};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `_meta` key a tool result carries when the injection spotter flagged it.
pub const UNTRUSTED_META_KEY: &str = "dev.portcullis/untrusted";

/// The data class personal data found in an effect's arguments counts as.
pub const CUSTOMER_CLASS: &str = "customer";

/// Most distinct values one session's map labels; later ones are masked instead.
const MAX_VALUES_PER_SESSION: usize = 1_000;
/// A map's lifetime from when it was made, however busy: labels do not outlive a day.
const SESSION_MAP_LIFETIME_MS: UnixMillis = 24 * 60 * 60 * 1000;
/// How often a result is redacted again when another request of the same session stored
/// new labels meanwhile.
const MAP_ATTEMPTS: usize = 4;

/// The data class each kind of personal data in an effect's arguments counts as, for the
/// policies (`context.argument_classes`). Every kind that identifies or reaches a person, or
/// their money, is customer data; IP addresses are left out (they name machines far more
/// often than people in the calls agents make: firewall rules, deploys, lookups).
pub fn argument_class(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Email | Kind::Phone | Kind::UsSsn | Kind::PaymentCard | Kind::Iban => {
            Some(CUSTOMER_CLASS)
        }
        _ => None,
    }
}

/// Everything one tool result is checked for, on behalf of one call: owned, so a call that
/// runs detached (a 2026-07-28 agent's, see `bridge`) can carry it.
pub struct ResultScope {
    tenant: TenantId,
    agent: AgentId,
    session_key: String,
    connection: ConnectionId,
    tool: String,
    /// The call's audit skeleton: tool as resource, session, actor, arguments hash.
    draft: AuditDraft,
}

impl ResultScope {
    pub fn of(state: &AppState, caller: &Caller, action: &HashedAction) -> Self {
        let a = action.action();
        Self {
            tenant: caller.tenant.clone(),
            agent: caller.agent.clone(),
            session_key: caller.session_key(),
            connection: a.connection.clone(),
            tool: a.tool.clone(),
            draft: call_draft(state, caller, action, AuditKind::Redaction),
        }
    }
}

/// What checks a result: the redactor, the session pseudonym maps and what the audit needs.
/// Cheap to clone (handles only).
#[derive(Clone)]
pub struct Scrub {
    redactor: Arc<Redactor>,
    vault: Arc<crate::vault::Vault>,
    store: Store,
    cache: Arc<AccessCache>,
    clock: Clock,
}

impl Scrub {
    pub fn of(state: &AppState) -> Self {
        Self {
            redactor: state.redactor.clone(),
            vault: state.vault.clone(),
            store: state.store.clone(),
            cache: state.cache.clone(),
            clock: state.clock.clone(),
        }
    }

    /// The result as the agent may read it: redacted per the connection's setting, marked
    /// when the spotter flagged it, with the audit events of both written. A connection no
    /// longer found is treated with everything masked; a store that cannot be read or an
    /// event that cannot be written withholds the result.
    pub async fn result(
        &self,
        scope: ResultScope,
        mut result: CallToolResult,
    ) -> Result<CallToolResult, UpstreamError> {
        let connections = self
            .cache
            .connections(&self.store, &scope.tenant)
            .await
            .map_err(|e| withheld(&e))?;
        let (connection, redaction) = match connections.iter().find(|c| c.id == scope.connection) {
            Some(c) => (c.name.clone(), c.redaction),
            None => (
                scope.connection.to_string(),
                ResultRedaction {
                    pii: PiiMode::Mask,
                    secrets: SecretsMode::Mask,
                },
            ),
        };
        let now = self.clock.now();
        let tally = if redaction.pii == PiiMode::Pseudonymise {
            self.pseudonymised(&scope, &mut result, redaction, now)
                .await?
        } else {
            self.check(&mut result, redaction, None)
        };
        let event = |kind: AuditKind, detail: Value| {
            let mut draft = scope.draft.clone();
            draft.kind = kind;
            draft.detail = detail;
            draft
        };
        let mut events = Vec::new();
        if !tally.signals.is_empty() {
            let signals: BTreeMap<String, usize> = tally
                .signals
                .iter()
                .map(|(kind, n)| (signal_name(*kind), *n))
                .collect();
            events.push(event(
                AuditKind::UntrustedContent,
                json!({ "signals": signals, "connection": connection, "tool": scope.tool }),
            ));
            result
                .meta
                .get_or_insert_with(Default::default)
                .0
                .insert(UNTRUSTED_META_KEY.to_owned(), Value::Bool(true));
        }
        for (action, kinds) in [
            ("masked", &tally.masked),
            ("pseudonymised", &tally.pseudonymised),
        ] {
            if !kinds.is_empty() {
                events.push(event(
                    AuditKind::Redaction,
                    redaction_detail("tool_result", action, kinds, &connection, &scope.tool),
                ));
            }
        }
        for draft in events {
            self.store
                .append_audit(draft, now)
                .await
                .map_err(|e| withheld(&e))?;
        }
        Ok(result)
    }

    /// Redact with the session's pseudonym map: read (sealed, from the store), extended,
    /// stored again if it grew. When another request of the session stored the map
    /// meanwhile, the result is redacted again from the upstream's text with the newer map.
    async fn pseudonymised(
        &self,
        scope: &ResultScope,
        result: &mut CallToolResult,
        redaction: ResultRedaction,
        now: UnixMillis,
    ) -> Result<Tally, UpstreamError> {
        let at = MapKey {
            tenant: &scope.tenant,
            agent: &scope.agent,
            session: &scope.session_key,
        };
        let place = map_place(&scope.agent, &scope.session_key);
        let original = result.clone();
        for _ in 0..MAP_ATTEMPTS {
            let stored = self
                .store
                .pseudonym_map(at, now)
                .await
                .map_err(|e| withheld(&e))?;
            let (mut map, read, created_at) = match stored {
                Some(sealed) => {
                    let plain = self
                        .vault
                        .open_data(&scope.tenant, &place, &sealed.key, &sealed.blobs)
                        .await
                        .map_err(|e| map_unusable(&e))?;
                    let map: Pseudonyms = serde_json::from_slice(&plain)
                        // Not the parser's message: it can quote a value of the map.
                        .map_err(|_| map_unusable(&"the opened map does not parse"))?;
                    (map, Some(sealed.version), sealed.created_at)
                }
                None => (
                    Pseudonyms::with_max_entries(MAX_VALUES_PER_SESSION),
                    None,
                    now,
                ),
            };
            let before = map.len();
            *result = original.clone();
            let tally = self.check(result, redaction, Some(&mut map));
            if map.len() == before {
                return Ok(tally);
            }
            let plain =
                zeroize::Zeroizing::new(serde_json::to_vec(&map).map_err(|e| map_unusable(&e))?);
            let (kek_version, blobs) = self
                .vault
                .seal_data(&scope.tenant, &place, &plain, now)
                .await
                .map_err(|e| map_unusable(&e))?;
            let lifetime = created_at + SESSION_MAP_LIFETIME_MS;
            match self
                .store
                .put_pseudonym_map(at, kek_version, &blobs, read, created_at, lifetime, now)
                .await
            {
                Ok(()) => return Ok(tally),
                Err(portcullis_store::StoreError::Conflict(_)) => continue,
                Err(e) => return Err(withheld(&e)),
            }
        }
        tracing::error!("a session's pseudonym map kept changing; the result is withheld");
        Err(UpstreamError::Withheld)
    }

    /// Redact every text block (and embedded text resource) and every string of the
    /// structured content, and run the spotter over each as the upstream sent it.
    fn check(
        &self,
        result: &mut CallToolResult,
        redaction: ResultRedaction,
        mut pseudonyms: Option<&mut Pseudonyms>,
    ) -> Tally {
        let mut tally = Tally::default();
        let treat = |kind: Kind| treatment(redaction, kind);
        let mut visit = |text: &mut String| {
            for signal in injection::spot(text) {
                *tally.signals.entry(signal.kind()).or_default() += 1;
            }
            let redacted = self
                .redactor
                .redact_each(text, treat, pseudonyms.as_deref_mut());
            if redacted.findings.is_empty() {
                return;
            }
            let findings: Vec<Finding> = redacted.findings;
            let replaced = redacted.text.into_owned();
            for finding in findings {
                let counts = match treat(finding.kind()) {
                    Treatment::Pseudonymise => &mut tally.pseudonymised,
                    _ => &mut tally.masked,
                };
                *counts.entry(finding.kind().to_string()).or_default() += 1;
            }
            *text = replaced;
        };
        for block in &mut result.content {
            match block {
                ContentBlock::Text(content) => visit(&mut content.text),
                ContentBlock::Resource(embedded) => {
                    if let ResourceContents::TextResourceContents { text, .. } =
                        &mut embedded.resource
                    {
                        visit(text);
                    }
                }
                _ => {}
            }
        }
        if let Some(structured) = &mut result.structured_content {
            strings_of(structured, &mut visit);
        }
        tally
    }
}

/// How the connection's setting treats one kind of finding.
fn treatment(redaction: ResultRedaction, kind: Kind) -> Treatment {
    if kind.is_secret() {
        return match redaction.secrets {
            SecretsMode::Mask => Treatment::Mask,
            SecretsMode::Off => Treatment::Keep,
        };
    }
    match redaction.pii {
        PiiMode::Off => Treatment::Keep,
        PiiMode::Mask => Treatment::Mask,
        PiiMode::Pseudonymise => Treatment::Pseudonymise,
    }
}

/// Every string value inside `value`, depth first. Object keys stay as they are (renaming
/// them could merge two keys into one).
fn strings_of(value: &mut Value, visit: &mut impl FnMut(&mut String)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter_mut().for_each(|v| strings_of(v, visit)),
        Value::Object(map) => map.values_mut().for_each(|v| strings_of(v, visit)),
        _ => {}
    }
}

/// What one result held: spotter signals and the findings replaced, by what replaced them.
#[derive(Default)]
struct Tally {
    signals: BTreeMap<SignalKind, usize>,
    masked: BTreeMap<String, usize>,
    pseudonymised: BTreeMap<String, usize>,
}

/// The detail of a `redaction` event: where, what was done, the kinds with their counts and
/// the connection and tool by name.
fn redaction_detail(
    surface: &str,
    action: &str,
    kinds: &BTreeMap<String, usize>,
    connection: &str,
    tool: &str,
) -> Value {
    json!({
        "surface": surface,
        "action": action,
        "kinds": kinds,
        "connection": connection,
        "tool": tool,
    })
}

/// `instruction_phrase`, `unicode_tags`, … (the spotter's own serialised names).
fn signal_name(kind: SignalKind) -> String {
    match serde_json::to_value(kind) {
        Ok(Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

fn withheld(error: &portcullis_store::StoreError) -> UpstreamError {
    tracing::error!(%error, "a tool result's scrub could not be recorded; the result is withheld");
    UpstreamError::Withheld
}

/// What the redactor found in an effect's arguments.
#[derive(Debug, Default)]
pub struct ArgumentFindings {
    /// The data classes for the policies (`context.argument_classes`), sorted, distinct.
    pub classes: Vec<String>,
    /// Personal data that counted, by kind name.
    pub observed: BTreeMap<String, usize>,
    /// Credentials, by kind name: any one refuses the call.
    pub secrets: BTreeMap<String, usize>,
}

impl ArgumentFindings {
    /// Why the call is refused, naming the kinds (never a value); `None` without credentials.
    pub fn refusal(&self) -> Option<String> {
        (!self.secrets.is_empty()).then(|| {
            let kinds: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
            format!(
                "the arguments carry a credential ({}): credentials never leave through a tool call",
                kinds.join(", ")
            )
        })
    }
}

/// Scan an effect's arguments: every string value, at any depth.
///
/// An addressee is not counted as customer data: a top-level argument whose whole value is
/// one e-mail address or phone number (or a list of them) — the `to` of a send, the number
/// an SMS goes to — is where the action goes, not data it carries. The same address inside a
/// body, a note or a nested record counts; so does every SSN, card and IBAN, wherever it is.
/// Credentials count everywhere.
pub fn arguments(redactor: &Redactor, arguments: &Value) -> ArgumentFindings {
    let mut found = ArgumentFindings::default();
    let mut note = |text: &str, top_level: bool| {
        let findings = redactor.scan(text);
        let addressee = top_level
            && findings.len() == 1
            && matches!(findings[0].kind(), Kind::Email | Kind::Phone)
            && findings[0].span() == trimmed_span(text);
        for finding in findings {
            let kind = finding.kind();
            if kind.is_secret() {
                *found.secrets.entry(kind.to_string()).or_default() += 1;
            } else if let Some(class) = argument_class(kind)
                && !addressee
            {
                *found.observed.entry(kind.to_string()).or_default() += 1;
                if !found.classes.iter().any(|c| c == class) {
                    found.classes.push(class.to_owned());
                }
            }
        }
    };
    let Value::Object(map) = arguments else {
        return found;
    };
    for value in map.values() {
        match value {
            Value::String(text) => note(text, true),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                for item in items.iter().filter_map(Value::as_str) {
                    note(item, true);
                }
            }
            nested => nested_strings(nested, &mut |text| note(text, false)),
        }
    }
    found.classes.sort();
    found
}

fn nested_strings(value: &Value, visit: &mut impl FnMut(&str)) {
    match value {
        Value::String(text) => visit(text),
        Value::Array(items) => items.iter().for_each(|v| nested_strings(v, visit)),
        Value::Object(map) => map.values().for_each(|v| nested_strings(v, visit)),
        _ => {}
    }
}

/// The span of `text` without its surrounding whitespace.
fn trimmed_span(text: &str) -> std::ops::Range<usize> {
    let start = text.len() - text.trim_start().len();
    start..text.trim_end().len().max(start)
}

/// Write the `redaction` event for an effect's arguments: `observed` personal data, or
/// `blocked` credentials. Nothing when nothing was found.
pub async fn record_arguments(
    state: &AppState,
    caller: &Caller,
    action: &HashedAction,
    connection: &str,
    found: &ArgumentFindings,
    now: UnixMillis,
) -> Result<(), portcullis_store::StoreError> {
    let tool = &action.action().tool;
    for (what, kinds) in [("blocked", &found.secrets), ("observed", &found.observed)] {
        if kinds.is_empty() {
            continue;
        }
        let mut draft = call_draft(state, caller, action, AuditKind::Redaction);
        draft.detail = redaction_detail("effect_arguments", what, kinds, connection, tool);
        state.store.append_audit(draft, now).await?;
    }
    Ok(())
}

/// Where a session's map is sealed: binds the ciphertext to the agent and session (and, by
/// the vault, to the tenant), so a row copied to another session does not open.
fn map_place(agent: &AgentId, session: &str) -> String {
    format!("pseudonyms/{agent}/{session}")
}

fn map_unusable(error: &dyn std::fmt::Display) -> UpstreamError {
    tracing::error!(%error, "a session's pseudonym map cannot be used; the result is withheld");
    UpstreamError::Withheld
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(arguments: Value) -> (Vec<String>, BTreeMap<String, usize>) {
        let found = super::arguments(&Redactor::default(), &arguments);
        (found.classes, found.secrets)
    }

    #[test]
    fn customer_data_in_arguments_is_found_but_an_addressee_is_not() {
        let none: Vec<String> = Vec::new();
        let customer = vec!["customer".to_owned()];
        assert_eq!(
            classes(json!({ "to": "ada@example.com", "body": "Lunch?" })).0,
            none
        );
        assert_eq!(
            classes(json!({ "to": ["ada@example.com", " +44 20 7946 0958 "] })).0,
            none
        );
        assert_eq!(
            classes(json!({ "to": "grace@example.com", "body": "Ada is ada@example.com" })).0,
            customer
        );
        assert_eq!(
            classes(json!({ "contact": { "email": "ada@example.com" } })).0,
            customer
        );
        assert_eq!(classes(json!({ "ssn": "123-45-6789" })).0, customer);
        assert_eq!(classes(json!({ "host": "10.0.0.7" })).0, none);
    }

    #[test]
    fn a_credential_in_arguments_refuses_by_kind() {
        let key = ["ghp_", "0123456789abcdefghijABCDEFGHIJ012345"].concat();
        let found = super::arguments(
            &Redactor::default(),
            &json!({ "body": format!("use {key}") }),
        );
        let refusal = found.refusal().expect("refused");
        assert!(refusal.contains("secret:github_pat"), "{refusal}");
        assert!(!refusal.contains(&key));
    }

    #[test]
    fn results_are_treated_per_setting() {
        let redaction = |pii, secrets| ResultRedaction { pii, secrets };
        let key = Kind::Jwt;
        assert_eq!(
            treatment(redaction(PiiMode::Off, SecretsMode::Mask), key),
            Treatment::Mask
        );
        assert_eq!(
            treatment(redaction(PiiMode::Pseudonymise, SecretsMode::Off), key),
            Treatment::Keep
        );
        assert_eq!(
            treatment(redaction(PiiMode::Off, SecretsMode::Mask), Kind::Email),
            Treatment::Keep
        );
        assert_eq!(
            treatment(
                redaction(PiiMode::Pseudonymise, SecretsMode::Mask),
                Kind::Email
            ),
            Treatment::Pseudonymise
        );
    }
}
