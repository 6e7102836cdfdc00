//! The conformance upstream: an MCP server with the fixed catalog of tools, resources, prompts,
//! completions and logging that the official MCP conformance suite
//! (`@modelcontextprotocol/conformance` 0.1.16, active server suite) exercises.
//!
//! Every tool is annotated read-only, so a gateway in front of it forwards calls without
//! holding them. Per-connection state (log level, resource subscriptions) lives in the
//! [`ConformanceServer`] value the transport creates for each session.
//!
//! Logging, sampling and `resources/subscribe` are deprecated by SEP-2577 in rmcp but are
//! still part of the protocol versions the suite speaks (2025-06-18, 2025-11-25).
#![allow(
    deprecated,
    reason = "the suite exercises logging, sampling and resource subscriptions (SEP-2577 deprecated)"
)]

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ClientResult, CompleteRequestParams, CompleteResult, CompletionInfo,
        ContentBlock, CreateMessageRequestParams, ElicitRequest, ElicitRequestParams,
        ElicitationSchema, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        Implementation, JsonObject, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, LoggingLevel, LoggingMessageNotificationParam, PaginatedRequestParams,
        ProgressNotificationParam, Prompt, PromptArgument, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Reference,
        RequestMetaObject, Resource, ResourceContents, ResourceTemplate, Role, SamplingMessage,
        ServerCapabilities, ServerConfig, ServerRequest, SetLevelRequestParams,
        SubscribeRequestParams, UnsubscribeRequestParams,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// A 1x1 red PNG, base64.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file (one silent sample), base64.
const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";
const TEMPLATE_PREFIX: &str = "test://template/";
const TEMPLATE_SUFFIX: &str = "/data";

const SIMPLE_PROMPT: &str = "test_simple_prompt";
const ARGS_PROMPT: &str = "test_prompt_with_arguments";
const EMBEDDED_PROMPT: &str = "test_prompt_with_embedded_resource";
const IMAGE_PROMPT: &str = "test_prompt_with_image";

/// Logger name on the log notifications this server sends.
const LOGGER: &str = "conformance";
/// Pause between the notifications of the logging and progress tools.
const STEP_DELAY: Duration = Duration::from_millis(50);

/// Severity rank of a level: a message is sent when its rank is at least the session's.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn embedded_text(uri: &str, mime_type: &str, text: impl Into<String>) -> ContentBlock {
    ContentBlock::resource(ResourceContents::text(text, uri).with_mime_type(mime_type))
}

fn peer_error(what: &str, error: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(format!("{what}: {error}"), None)
}

/// Arguments of `test_sampling`.
#[derive(Debug, Deserialize, JsonSchema)]
struct SamplingArgs {
    /// The prompt to send to the LLM
    prompt: String,
}

/// Arguments of `test_elicitation`.
#[derive(Debug, Deserialize, JsonSchema)]
struct ElicitationArgs {
    /// The message to show the user
    message: String,
}

/// The input schema of `json_schema_2020_12_tool`, served verbatim.
fn json_schema_2020_12() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" }
        },
        "additionalProperties": false
    });
    match schema {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("the literal is an object"),
    }
}

/// `requestedSchema` of `test_elicitation`.
fn user_info_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    })
}

/// `requestedSchema` of `test_elicitation_sep1034_defaults`: one field of each primitive type,
/// each with a default.
fn defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": {
                "type": "boolean",
                "description": "Verification status",
                "default": true
            }
        },
        "required": []
    })
}

/// `requestedSchema` of `test_elicitation_sep1330_enums`: the five enum shapes of SEP-1330.
fn enums_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": [
                    { "const": "value1", "title": "First Option" },
                    { "const": "value2", "title": "Second Option" },
                    { "const": "value3", "title": "Third Option" }
                ]
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "minItems": 1,
                "maxItems": 3,
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "minItems": 1,
                "maxItems": 3,
                "items": {
                    "anyOf": [
                        { "const": "value1", "title": "First Choice" },
                        { "const": "value2", "title": "Second Choice" },
                        { "const": "value3", "title": "Third Choice" }
                    ]
                }
            }
        },
        "required": []
    })
}

/// The MCP server the conformance suite tests. Clone it per session: clones share nothing
/// but the tool router.
#[derive(Clone)]
pub struct ConformanceServer {
    /// Least severe level sent as `notifications/message` (`logging/setLevel`).
    log_level: Arc<Mutex<LoggingLevel>>,
    /// URIs this session subscribed to.
    subscriptions: Arc<Mutex<BTreeSet<String>>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for ConformanceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConformanceServer")
            .field("log_level", &self.log_level)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl Default for ConformanceServer {
    fn default() -> Self {
        Self::new()
    }
}

impl ConformanceServer {
    /// A server with fresh session state (log level `info`, no subscriptions).
    pub fn new() -> Self {
        Self {
            log_level: Arc::new(Mutex::new(LoggingLevel::Info)),
            subscriptions: Arc::new(Mutex::new(BTreeSet::new())),
            tool_router: Self::tool_router(),
        }
    }

    fn level(&self) -> LoggingLevel {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subscriptions(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends an `info` log message unless the session asked for a higher level.
    async fn log_info(&self, peer: &Peer<RoleServer>, message: &str) -> Result<(), ErrorData> {
        if severity(LoggingLevel::Info) < severity(self.level()) {
            return Ok(());
        }
        peer.notify_logging_message(
            LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
                .with_logger(LOGGER),
        )
        .await
        .map_err(|e| peer_error("logging", e))
    }

    /// Sends `elicitation/create` (form mode) on the calling request's stream and describes the
    /// answer as text.
    async fn elicit(
        peer: &Peer<RoleServer>,
        message: impl Into<String>,
        schema: Value,
        label: &str,
    ) -> Result<CallToolResult, ErrorData> {
        let Value::Object(schema) = schema else {
            return Err(ErrorData::internal_error("schema is not an object", None));
        };
        let requested_schema = ElicitationSchema::from_json_schema(schema)
            .map_err(|e| peer_error("elicitation schema", e))?;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.into(),
            requested_schema,
        };
        let answer = match peer
            .send_request(ServerRequest::ElicitRequest(ElicitRequest::new(params)))
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Ok(text_result(format!("Elicitation failed: {e}"))),
        };
        let (action, content) = match answer {
            ClientResult::ElicitResult(result) => (
                serde_json::to_value(&result.action).unwrap_or(Value::Null),
                result.content.unwrap_or_else(|| json!({})),
            ),
            other => {
                let raw = serde_json::to_value(&other).unwrap_or(Value::Null);
                (
                    raw.get("action").cloned().unwrap_or(Value::Null),
                    raw.get("content").cloned().unwrap_or_else(|| json!({})),
                )
            }
        };
        let action = action.as_str().unwrap_or("unknown").to_owned();
        Ok(text_result(format!(
            "{label}: action={action}, content={content}"
        )))
    }
}

#[tool_router]
impl ConformanceServer {
    /// Returns a single text content block.
    #[tool(annotations(title = "Simple text", read_only_hint = true))]
    async fn test_simple_text(&self) -> CallToolResult {
        text_result("This is a simple text response for testing.")
    }

    /// Returns a single image content block (a 1x1 PNG).
    #[tool(annotations(title = "Image content", read_only_hint = true))]
    async fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(PNG_BASE64, "image/png")])
    }

    /// Returns a single audio content block (a minimal WAV).
    #[tool(annotations(title = "Audio content", read_only_hint = true))]
    async fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::audio(WAV_BASE64, "audio/wav")])
    }

    /// Returns an embedded text resource.
    #[tool(annotations(title = "Embedded resource", read_only_hint = true))]
    async fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![embedded_text(
            "test://embedded-resource",
            "text/plain",
            "This is an embedded resource content.",
        )])
    }

    /// Returns text, image and embedded-resource content together.
    #[tool(annotations(title = "Mixed content", read_only_hint = true))]
    async fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_BASE64, "image/png"),
            embedded_text(
                "test://mixed-content-resource",
                "application/json",
                json!({ "test": "data", "value": 123 }).to_string(),
            ),
        ])
    }

    /// Sends three info log notifications while it runs, then returns text.
    #[tool(annotations(title = "Tool with logging", read_only_hint = true))]
    async fn test_tool_with_logging(
        &self,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.log_info(&peer, "Tool execution started").await?;
        tokio::time::sleep(STEP_DELAY).await;
        self.log_info(&peer, "Tool processing data").await?;
        tokio::time::sleep(STEP_DELAY).await;
        self.log_info(&peer, "Tool execution completed").await?;
        Ok(text_result("Tool with logging executed successfully"))
    }

    /// Reports progress 0, 50 and 100 of 100 when the request has a progress token.
    #[tool(annotations(title = "Tool with progress", read_only_hint = true))]
    async fn test_tool_with_progress(
        &self,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = meta.get_progress_token();
        for step in [0_u32, 50, 100] {
            if let Some(token) = &token {
                peer.notify_progress(
                    ProgressNotificationParam::new(token.clone(), f64::from(step))
                        .with_total(100.0)
                        .with_message(format!("Completed step {step} of 100")),
                )
                .await
                .map_err(|e| peer_error("progress", e))?;
            }
            if step < 100 {
                tokio::time::sleep(STEP_DELAY).await;
            }
        }
        Ok(text_result("Progress tool completed"))
    }

    /// Always fails: returns a result with isError set.
    #[tool(annotations(title = "Error handling", read_only_hint = true))]
    async fn test_error_handling(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )])
    }

    /// Not part of the suite: lists the client's roots (`roots/list`) as text, so the
    /// gateway's roots forwarding can be tested.
    #[tool(annotations(title = "Roots", read_only_hint = true))]
    async fn test_roots(&self, peer: Peer<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let text = match peer.list_roots().await {
            Ok(result) => {
                let uris: Vec<&str> = result.roots.iter().map(|r| r.uri.as_str()).collect();
                format!("Roots: {}", uris.join(", "))
            }
            Err(e) => format!("Roots failed: {e}"),
        };
        Ok(text_result(text))
    }

    /// Asks the client's LLM (sampling/createMessage) and returns its answer.
    #[tool(annotations(title = "Sampling", read_only_hint = true))]
    async fn test_sampling(
        &self,
        Parameters(args): Parameters<SamplingArgs>,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let params =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(args.prompt)], 100);
        let text = match peer.create_message(params).await {
            Ok(result) => {
                let answer = result
                    .message
                    .content
                    .first()
                    .and_then(|block| block.as_text())
                    .map_or("No response", |t| t.text.as_str())
                    .to_owned();
                format!("LLM response: {answer}")
            }
            Err(e) => format!("Sampling failed: {e}"),
        };
        Ok(text_result(text))
    }

    /// Asks the user for a username and email (elicitation/create) and returns the answer.
    #[tool(annotations(title = "Elicitation", read_only_hint = true))]
    async fn test_elicitation(
        &self,
        Parameters(args): Parameters<ElicitationArgs>,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        Self::elicit(&peer, args.message, user_info_schema(), "User response").await
    }

    /// Elicitation whose fields all carry defaults (SEP-1034).
    #[tool(annotations(title = "Elicitation with defaults", read_only_hint = true))]
    async fn test_elicitation_sep1034_defaults(
        &self,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        Self::elicit(
            &peer,
            "Please review and update the form fields with defaults",
            defaults_schema(),
            "Elicitation completed",
        )
        .await
    }

    /// Elicitation with every enum shape: untitled, titled, legacy, multi-select (SEP-1330).
    #[tool(annotations(title = "Elicitation with enums", read_only_hint = true))]
    async fn test_elicitation_sep1330_enums(
        &self,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        Self::elicit(
            &peer,
            "Please select options from the enum fields",
            enums_schema(),
            "Elicitation completed",
        )
        .await
    }

    /// Takes an input schema using JSON Schema 2020-12 features ($schema, $defs, $ref).
    #[tool(
        input_schema = json_schema_2020_12(),
        annotations(title = "JSON Schema 2020-12", read_only_hint = true)
    )]
    async fn json_schema_2020_12_tool(&self, arguments: JsonObject) -> CallToolResult {
        text_result(format!(
            "JSON Schema 2020-12 tool called with: {}",
            Value::Object(arguments)
        ))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_prompts()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-conformance-upstream",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixture server for the MCP conformance suite.")
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = vec![
            Resource::new(STATIC_TEXT_URI, "static-text")
                .with_title("Static Text Resource")
                .with_description("A static text resource for testing")
                .with_mime_type("text/plain"),
            Resource::new(STATIC_BINARY_URI, "static-binary")
                .with_title("Static Binary Resource")
                .with_description("A static binary resource (a PNG image) for testing")
                .with_mime_type("image/png"),
            Resource::new(WATCHED_URI, "watched-resource")
                .with_title("Watched Resource")
                .with_description("A resource clients can subscribe to")
                .with_mime_type("text/plain"),
        ];
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(TEMPLATE_URI, "template")
            .with_title("Resource Template")
            .with_description("A resource template with parameter substitution")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri;
        let contents = match uri.as_str() {
            STATIC_TEXT_URI => ResourceContents::text(
                "This is the content of the static text resource.",
                uri.clone(),
            )
            .with_mime_type("text/plain"),
            STATIC_BINARY_URI => {
                ResourceContents::blob(PNG_BASE64, uri.clone()).with_mime_type("image/png")
            }
            WATCHED_URI => ResourceContents::text("Watched resource content", uri.clone())
                .with_mime_type("text/plain"),
            _ => {
                let id = uri
                    .strip_prefix(TEMPLATE_PREFIX)
                    .and_then(|rest| rest.strip_suffix(TEMPLATE_SUFFIX))
                    .filter(|id| !id.is_empty() && !id.contains('/'));
                let Some(id) = id else {
                    return Err(ErrorData::resource_not_found(
                        format!("Resource not found: {uri}"),
                        None,
                    ));
                };
                let text = json!({
                    "id": id,
                    "templateTest": true,
                    "data": format!("Data for ID: {id}"),
                })
                .to_string();
                ResourceContents::text(text, uri.clone()).with_mime_type("application/json")
            }
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions().insert(request.uri);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.subscriptions().remove(&request.uri);
        Ok(())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let required = |name: &str, description: &str| {
            PromptArgument::new(name)
                .with_description(description)
                .with_required(true)
        };
        let prompts = vec![
            Prompt::new(
                SIMPLE_PROMPT,
                Some("A simple prompt without arguments"),
                None,
            )
            .with_title("Simple Test Prompt"),
            Prompt::new(
                ARGS_PROMPT,
                Some("A prompt with required arguments"),
                Some(vec![
                    required("arg1", "First test argument"),
                    required("arg2", "Second test argument"),
                ]),
            )
            .with_title("Prompt With Arguments"),
            Prompt::new(
                EMBEDDED_PROMPT,
                Some("A prompt that includes an embedded resource"),
                Some(vec![required(
                    "resourceUri",
                    "URI of the resource to embed",
                )]),
            )
            .with_title("Prompt With Embedded Resource"),
            Prompt::new(
                IMAGE_PROMPT,
                Some("A prompt that includes image content"),
                None,
            )
            .with_title("Prompt With Image"),
        ];
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let argument = |name: &str| -> String {
            match request.arguments.as_ref().and_then(|a| a.get(name)) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            }
        };
        let messages = match request.name.as_str() {
            SIMPLE_PROMPT => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            ARGS_PROMPT => vec![PromptMessage::new_text(
                Role::User,
                format!(
                    "Prompt with arguments: arg1='{}', arg2='{}'",
                    argument("arg1"),
                    argument("arg2")
                ),
            )],
            EMBEDDED_PROMPT => vec![
                PromptMessage::new(
                    Role::User,
                    embedded_text(
                        &argument("resourceUri"),
                        "text/plain",
                        "Embedded resource content for testing.",
                    ),
                ),
                PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
            ],
            IMAGE_PROMPT => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_BASE64, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            other => {
                return Err(ErrorData::invalid_params(
                    format!("Unknown prompt: {other}"),
                    None,
                ));
            }
        };
        Ok(GetPromptResult::new(messages).into())
    }

    /// Suggestions for `test_prompt_with_arguments`' arguments that start with what was typed.
    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match &request.r#ref {
            Reference::Prompt(prompt) if prompt.name == ARGS_PROMPT => {
                &["test", "testing", "tested"]
            }
            _ => &[],
        };
        let values: Vec<String> = candidates
            .iter()
            .filter(|v| v.starts_with(&request.argument.value))
            .map(|v| (*v).to_owned())
            .collect();
        let info = CompletionInfo::with_all_values(values)
            .map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = request.level;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed elicitation schema must re-encode exactly what the suite checks.
    #[test]
    fn elicitation_schemas_round_trip() {
        for schema in [user_info_schema(), defaults_schema(), enums_schema()] {
            let Value::Object(object) = schema.clone() else {
                panic!("not an object");
            };
            let typed = ElicitationSchema::from_json_schema(object).expect("valid schema");
            let mut encoded = serde_json::to_value(&typed).expect("encodes");
            let mut expected = schema;
            // An empty `required` may be dropped.
            for value in [&mut encoded, &mut expected] {
                if value["required"] == json!([]) {
                    value.as_object_mut().map(|o| o.remove("required"));
                }
            }
            assert_eq!(encoded, expected);
        }
    }
}
