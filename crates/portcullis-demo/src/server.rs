//! The demo MCP server: in-memory CRM state and the seven tools.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, MutexGuard},
};

use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, RequestMetaObject,
        ServerCapabilities, ServerConfig,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::effect_log::EffectLog;

/// Environment variable selecting a tool-definition variant (`changed`).
pub const VARIANT_ENV: &str = "PORTCULLIS_DEMO_VARIANT";
/// Like [`VARIANT_ENV`], but names a file holding the variant, read when the server starts, so a
/// test can change the definitions a restarted upstream serves.
pub const VARIANT_FILE_ENV: &str = "PORTCULLIS_DEMO_VARIANT_FILE";
/// Names a file: while it exists, every effect tool waits before it acts, so a test can stop
/// the gateway in the middle of an upstream call.
pub const HOLD_FILE_ENV: &str = "PORTCULLIS_DEMO_HOLD_FILE";

fn variant_is_changed() -> bool {
    std::env::var(VARIANT_ENV).is_ok_and(|v| v == "changed")
        || std::env::var(VARIANT_FILE_ENV)
            .ok()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .is_some_and(|v| v.trim() == "changed")
}

const SEND_EMAIL_DESCRIPTION: &str =
    "Send an email to a recipient. Delivery is immediate and cannot be recalled.";
const SEND_EMAIL_CHANGED_SUFFIX: &str = " (now also BCCs the sales team)";

/// Contact cards as resources: `crm://contacts/{id}`.
const CONTACT_PREFIX: &str = "crm://contacts/";
const CONTACT_TEMPLATE: &str = "crm://contacts/{id}";
/// The demo prompt.
const FOLLOW_UP_PROMPT: &str = "follow_up";

fn contact_uri(id: &str) -> String {
    format!("{CONTACT_PREFIX}{id}")
}

/// Largest `n` accepted by `count_to`.
const COUNT_TO_MAX: u32 = 50;

/// A CRM contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Contact {
    /// Stable contact id, e.g. `c_1`.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Employer.
    pub company: String,
}

#[derive(Debug)]
struct Draft {
    #[expect(dead_code, reason = "kept to model a real draft store")]
    to: String,
    #[expect(dead_code, reason = "kept to model a real draft store")]
    subject: String,
    #[expect(dead_code, reason = "kept to model a real draft store")]
    body: String,
}

#[derive(Debug)]
struct Crm {
    contacts: BTreeMap<String, Contact>,
    drafts: BTreeMap<String, Draft>,
    next_draft: u64,
    next_message: u64,
    next_refund: u64,
}

impl Crm {
    fn seeded() -> Self {
        let contacts = [
            (
                "c_1",
                "Ada Lovelace",
                "ada@analytical.example.com",
                "Analytical Engines Ltd",
            ),
            (
                "c_2",
                "Grace Hopper",
                "grace@compilers.example.com",
                "Compiler Corp",
            ),
            (
                "c_3",
                "Alan Turing",
                "alan@bombe.example.com",
                "Bletchley Systems",
            ),
        ]
        .into_iter()
        .map(|(id, name, email, company)| {
            (
                id.to_owned(),
                Contact {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    email: email.to_owned(),
                    company: company.to_owned(),
                },
            )
        })
        .collect();
        Self {
            contacts,
            drafts: BTreeMap::new(),
            next_draft: 1,
            next_message: 1,
            next_refund: 1,
        }
    }
}

/// Arguments of `get_contact`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct GetContactArgs {
    /// Contact id, e.g. `c_1`.
    pub id: String,
}

/// Arguments of `draft_email` and `send_email`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct EmailArgs {
    /// Recipient email address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Arguments of `update_contact`; absent fields are left unchanged.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct UpdateContactArgs {
    /// Contact id, e.g. `c_1`.
    pub id: String,
    /// New full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// New employer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
}

/// Arguments of `issue_refund`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct IssueRefundArgs {
    /// Customer (contact) id to refund.
    pub customer_id: String,
    /// Amount in cents; must be positive.
    #[schemars(range(min = 1))]
    pub amount_cents: i64,
    /// Why the refund is issued.
    pub reason: String,
}

/// Arguments of `count_to`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CountToArgs {
    /// How far to count (1..=50).
    #[schemars(range(min = 1, max = 50))]
    pub n: u32,
}

/// The demo server. Cloning shares the in-memory state, so one value can back
/// many connections (the HTTP endpoint clones it per request).
#[derive(Debug, Clone)]
pub struct DemoServer {
    crm: Arc<Mutex<Crm>>,
    watchers: Watchers,
    effect_log: EffectLog,
    hold_file: Option<std::path::PathBuf>,
    tool_router: ToolRouter<Self>,
}

/// Sessions subscribed to contact resources (`resources/subscribe`), told when one changes.
#[derive(Clone, Default)]
struct Watchers(Arc<Mutex<Vec<Watcher>>>);

/// A session and the resource URI it watches.
type Watcher = (Peer<RoleServer>, String);

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watchers")
    }
}

impl Watchers {
    fn list(&self) -> MutexGuard<'_, Vec<Watcher>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Tell every session watching `uri` that it changed.
    async fn changed(&self, uri: &str) {
        let peers: Vec<Peer<RoleServer>> = self
            .list()
            .iter()
            .filter(|(_, u)| u == uri)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in peers {
            let _ = peer
                .notify_resource_updated(rmcp::model::ResourceUpdatedNotificationParam::new(uri))
                .await;
        }
    }
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

fn json_result(value: serde_json::Value) -> CallToolResult {
    CallToolResult::structured(value)
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn effect_log_error(err: std::io::Error) -> ErrorData {
    ErrorData::internal_error(format!("cannot write effect log: {err}"), None)
}

impl DemoServer {
    /// A server with freshly seeded state, configured from the environment
    /// ([`crate::EFFECT_LOG_ENV`], [`VARIANT_ENV`]).
    pub fn new() -> Self {
        let mut tool_router = Self::tool_router();
        if variant_is_changed() {
            if let Some(route) = tool_router.map.get_mut("send_email") {
                route.attr.description =
                    Some(format!("{SEND_EMAIL_DESCRIPTION}{SEND_EMAIL_CHANGED_SUFFIX}").into());
            }
            // A read tool changes too, so a test can see a changed definition turn an allowed
            // read into a hold.
            if let Some(route) = tool_router.map.get_mut("get_contact") {
                route.attr.description =
                    Some("Get one contact by id (now also records who looked).".into());
            }
        }
        Self {
            crm: Arc::new(Mutex::new(Crm::seeded())),
            watchers: Watchers::default(),
            effect_log: EffectLog::from_env(),
            hold_file: std::env::var_os(HOLD_FILE_ENV)
                .filter(|p| !p.is_empty())
                .map(std::path::PathBuf::from),
            tool_router,
        }
    }

    /// Wait while the hold file ([`HOLD_FILE_ENV`]) exists.
    async fn wait_while_held(&self) {
        if let Some(path) = &self.hold_file {
            while path.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }

    fn crm(&self) -> MutexGuard<'_, Crm> {
        // The state stays consistent across a panicking holder: every
        // mutation is a single insert or field assignment.
        self.crm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[tool_router]
impl DemoServer {
    /// List every contact in the CRM.
    #[tool(annotations(title = "List contacts", read_only_hint = true))]
    async fn list_contacts(&self) -> CallToolResult {
        let contacts: Vec<Contact> = self.crm().contacts.values().cloned().collect();
        json_result(json!({ "contacts": contacts }))
    }

    /// Fetch one contact by id.
    #[tool(annotations(title = "Get contact", read_only_hint = true))]
    async fn get_contact(&self, Parameters(args): Parameters<GetContactArgs>) -> CallToolResult {
        match self.crm().contacts.get(&args.id) {
            Some(contact) => json_result(json!(contact)),
            None => tool_error(format!("unknown contact id: {}", args.id)),
        }
    }

    /// Save an email draft (kept in memory; nothing is sent). Returns the draft id.
    #[tool(annotations(
        title = "Draft email",
        read_only_hint = false,
        destructive_hint = false
    ))]
    async fn draft_email(&self, Parameters(args): Parameters<EmailArgs>) -> CallToolResult {
        let mut crm = self.crm();
        let draft_id = format!("d_{}", crm.next_draft);
        crm.next_draft += 1;
        crm.drafts.insert(
            draft_id.clone(),
            Draft {
                to: args.to,
                subject: args.subject,
                body: args.body,
            },
        );
        json_result(json!({ "draft_id": draft_id, "status": "drafted" }))
    }

    #[tool(
        description = SEND_EMAIL_DESCRIPTION,
        annotations(
            title = "Send email",
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = true
        )
    )]
    async fn send_email(
        &self,
        Parameters(args): Parameters<EmailArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.wait_while_held().await;
        self.effect_log
            .record("send_email", &args)
            .map_err(effect_log_error)?;
        let mut crm = self.crm();
        let message_id = format!("msg_{}", crm.next_message);
        crm.next_message += 1;
        Ok(json_result(json!({
            "status": "sent",
            "message_id": message_id,
            "to": args.to,
        })))
    }

    /// Update a contact's name, email and/or company. Returns the updated contact.
    #[tool(annotations(
        title = "Update contact",
        read_only_hint = false,
        destructive_hint = false,
        idempotent_hint = true
    ))]
    async fn update_contact(
        &self,
        Parameters(args): Parameters<UpdateContactArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.wait_while_held().await;
        self.effect_log
            .record("update_contact", &args)
            .map_err(effect_log_error)?;
        let updated = {
            let mut crm = self.crm();
            let Some(contact) = crm.contacts.get_mut(&args.id) else {
                return Ok(tool_error(format!("unknown contact id: {}", args.id)));
            };
            if let Some(name) = args.name {
                contact.name = name;
            }
            if let Some(email) = args.email {
                contact.email = email;
            }
            if let Some(company) = args.company {
                contact.company = company;
            }
            contact.clone()
        };
        self.watchers.changed(&contact_uri(&updated.id)).await;
        Ok(json_result(json!(updated)))
    }

    /// Create a contact under a new id. Refused when the id is taken. Returns the contact.
    #[tool(annotations(
        title = "Create contact",
        read_only_hint = false,
        destructive_hint = false
    ))]
    async fn create_contact(
        &self,
        Parameters(contact): Parameters<Contact>,
    ) -> Result<CallToolResult, ErrorData> {
        self.wait_while_held().await;
        self.effect_log
            .record("create_contact", &contact)
            .map_err(effect_log_error)?;
        let mut crm = self.crm();
        if crm.contacts.contains_key(&contact.id) {
            return Ok(tool_error(format!("contact id {} is taken", contact.id)));
        }
        crm.contacts.insert(contact.id.clone(), contact.clone());
        Ok(json_result(json!(contact)))
    }

    /// Refund a customer. Money leaves the business; returns the refund id.
    #[tool(annotations(
        title = "Issue refund",
        read_only_hint = false,
        destructive_hint = false
    ))]
    async fn issue_refund(
        &self,
        Parameters(args): Parameters<IssueRefundArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.wait_while_held().await;
        self.effect_log
            .record("issue_refund", &args)
            .map_err(effect_log_error)?;
        if args.amount_cents <= 0 {
            return Ok(tool_error("amount_cents must be positive"));
        }
        let mut crm = self.crm();
        let refund_id = format!("rf_{}", crm.next_refund);
        crm.next_refund += 1;
        Ok(json_result(json!({
            "refund_id": refund_id,
            "customer_id": args.customer_id,
            "amount_cents": args.amount_cents,
            "status": "issued",
        })))
    }

    /// Count from 1 to n (1..=50), reporting each step as progress when the request has a progress token.
    #[tool(annotations(title = "Count to n", read_only_hint = true))]
    async fn count_to(
        &self,
        Parameters(args): Parameters<CountToArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let n = args.n;
        if !(1..=COUNT_TO_MAX).contains(&n) {
            return Ok(tool_error(format!(
                "n must be between 1 and {COUNT_TO_MAX}, got {n}"
            )));
        }
        if let Some(token) = meta.get_progress_token() {
            for i in 1..=n {
                peer.notify_progress(
                    ProgressNotificationParam::new(token.clone(), f64::from(i))
                        .with_total(f64::from(n))
                        .with_message(format!("{i} of {n}")),
                )
                .await
                .map_err(|e| ErrorData::internal_error(format!("progress: {e}"), None))?;
            }
            #[expect(
                deprecated,
                reason = "logging is deprecated by SEP-2577 but still served"
            )]
            peer.notify_logging_message(
                rmcp::model::LoggingMessageNotificationParam::new(
                    rmcp::model::LoggingLevel::Info,
                    json!({ "message": format!("counted to {n}") }),
                )
                .with_logger("portcullis-demo"),
            )
            .await
            .map_err(|e| ErrorData::internal_error(format!("logging: {e}"), None))?;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "counted to {n}"
        ))]))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        #[expect(
            deprecated,
            reason = "logging is deprecated by SEP-2577 but still served"
        )]
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_logging()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Demo CRM, mail and billing tools for trying out the Portcullis gateway.",
            )
    }

    /// Every contact as a resource, `crm://contacts/{id}`.
    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        let resources = self
            .crm()
            .contacts
            .values()
            .map(|c| {
                rmcp::model::Resource::new(contact_uri(&c.id), c.name.clone())
                    .with_description(format!("Contact card of {} ({})", c.name, c.company))
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(rmcp::model::ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        let template = rmcp::model::ResourceTemplate::new(CONTACT_TEMPLATE, "contact")
            .with_description("A contact card by id")
            .with_mime_type("application/json");
        Ok(rmcp::model::ListResourceTemplatesResult::with_all_items(
            vec![template],
        ))
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        let contact = request
            .uri
            .strip_prefix(CONTACT_PREFIX)
            .and_then(|id| self.crm().contacts.get(id).cloned());
        let Some(contact) = contact else {
            return Err(ErrorData::resource_not_found(
                format!("no resource {}", request.uri),
                None,
            ));
        };
        let text = serde_json::to_string(&contact).unwrap_or_default();
        Ok(rmcp::model::ReadResourceResult::new(vec![
            rmcp::model::ResourceContents::text(text, request.uri)
                .with_mime_type("application/json"),
        ])
        .into())
    }

    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.watchers
            .list()
            .push((context.peer.clone(), request.uri));
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.watchers.list().retain(|(_, uri)| *uri != request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        let prompt = rmcp::model::Prompt::new(
            FOLLOW_UP_PROMPT,
            Some("Ask for a short follow-up email to a contact"),
            Some(vec![
                rmcp::model::PromptArgument::new("customer_id")
                    .with_description("Contact id, e.g. c_1")
                    .with_required(true),
            ]),
        );
        Ok(rmcp::model::ListPromptsResult::with_all_items(vec![prompt]))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        if request.name != FOLLOW_UP_PROMPT {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {}", request.name),
                None,
            ));
        }
        let id = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("customer_id"))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let Some(contact) = self.crm().contacts.get(&id).cloned() else {
            return Err(ErrorData::invalid_params(
                format!("unknown contact id: {id}"),
                None,
            ));
        };
        let text = format!(
            "Write a short, friendly follow-up email to {} <{}> at {}.",
            contact.name, contact.email, contact.company
        );
        Ok(
            rmcp::model::GetPromptResult::new(vec![rmcp::model::PromptMessage::new_text(
                rmcp::model::Role::User,
                text,
            )])
            .with_description("Follow-up email")
            .into(),
        )
    }

    /// Contact ids starting with what was typed, for the prompt's `customer_id` and the
    /// template's `id`.
    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        let wanted = match &request.r#ref {
            rmcp::model::Reference::Prompt(p) => {
                p.name == FOLLOW_UP_PROMPT && request.argument.name == "customer_id"
            }
            rmcp::model::Reference::Resource(r) => {
                r.uri == CONTACT_TEMPLATE && request.argument.name == "id"
            }
            _ => false,
        };
        let values: Vec<String> = if wanted {
            self.crm()
                .contacts
                .keys()
                .filter(|id| id.starts_with(&request.argument.value))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let info = rmcp::model::CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(rmcp::model::CompleteResult::new(info))
    }

    /// Accepts any level; `count_to` is the only source of log messages.
    #[expect(
        deprecated,
        reason = "logging is deprecated by SEP-2577 but still served"
    )]
    async fn set_level(
        &self,
        _request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }
}
