//! The running Portcullis process as a library: configuration, the agent-facing MCP endpoint,
//! the admin API, the upstream supervisor, metrics and background workers.
//!
//! Only this crate knows HTTP and JSON-RPC. [`Application::build`] prepares everything (data
//! folder, key file, database, bootstrap admin) and [`Application::serve`] runs on a listener
//! the caller bound, until a shutdown future resolves — so tests start the real server on
//! port 0.

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod bridge;
pub mod cache;
pub mod clock;
pub mod config;
pub mod console;
pub mod egress;
pub mod engines;
pub mod error;
pub mod gate;
pub mod guards;
pub mod identity;
pub mod logs;
pub mod mcp;
pub mod metrics;
pub mod models;
pub mod policy;
pub mod programs;
pub mod sandbox;
pub mod sessions;
pub mod state;
pub mod tunnel;
pub mod upstream;
pub mod vault;
pub mod web;
pub mod webhooks;

use crate::bootstrap::BootstrapError;
use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get, post};
use portcullis_core::token::BearerSecret;
use portcullis_store::{Store, StoreOptions};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Options that are not configuration: they come from the embedding program.
#[derive(Default)]
pub struct BuildOptions {
    pub clock: Clock,
    /// The `portcullis` binary: what `@self` means in the program catalog.
    pub self_exe: Option<PathBuf>,
    /// The configuration file read (no launched program may see it).
    pub config_file: Option<PathBuf>,
    /// Add the demo upstream to the catalog (as `demo`, unless configured) and seed the demo
    /// tenant on first start.
    pub demo: bool,
    /// How outbound requests resolve names (tests give a resolver they control; by default
    /// the system's).
    pub lookup: Option<Arc<dyn egress::Lookup>>,
    /// Shown every chunk of every response body the gateway sends (leak tests scan them for
    /// canary secrets). None in production.
    pub probe: Option<Probe>,
}

/// See [`BuildOptions::probe`].
pub type Probe = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// What first start created and must be shown once.
#[derive(Default)]
pub struct FirstStart {
    pub admin_token: Option<BearerSecret>,
    pub demo: Option<bootstrap::Demo>,
}

pub struct Application {
    state: Arc<AppState>,
    pub first_start: FirstStart,
    /// The separate `/metrics` listener (`metrics.listen`), bound by `build`.
    metrics_listener: Option<tokio::net::TcpListener>,
    /// Cancelled when shutdown begins: ends open MCP streams (legacy sessions' GET streams),
    /// which would otherwise keep graceful shutdown waiting forever.
    streams: tokio_util::sync::CancellationToken,
    probe: Option<Probe>,
}

impl Application {
    /// Prepare the data folder, keys and database; create the bootstrap admin (and demo) on
    /// first start.
    pub async fn build(config: Config, options: BuildOptions) -> Result<Self, BootstrapError> {
        bootstrap::ensure_data_dir(&config)?;
        let keys = Arc::new(bootstrap::load_or_create_keys(&config.key_file())?);
        bootstrap::prepare_database_file(&config)?;
        let catalog = Arc::new(bootstrap::catalog(&config, &options)?);
        let store_options = StoreOptions {
            max_read_connections: config.data.max_connections.min(64),
            max_connections: config.data.max_connections,
        };
        let store = Store::open(&config.database_url(), &store_options).await?;
        bootstrap::check_permissions(&config)?;
        let clock = options.clock;
        let now = clock.now();
        let cache = Arc::new(cache::AccessCache::default());
        let vault = Arc::new(
            vault::Vault::new(
                store.clone(),
                bootstrap::key_provider(&config, &keys)?,
                config.vault.min_format,
            )
            .with_cache(cache.clone()),
        );
        let egress = Arc::new(bootstrap::egress(&config, options.lookup.clone())?);
        let sandbox = Arc::new(
            sandbox::Sandbox::new(
                &config,
                options.self_exe.as_deref(),
                options.config_file.as_deref(),
            )
            .map_err(BootstrapError::Config)?,
        );
        let host = sandbox.host_report();
        let names = |set: &std::collections::BTreeSet<portcullis_sandbox::Protection>| {
            set.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
        };
        if host.missing.is_empty() {
            tracing::info!(active = %names(&host.active), landlock_abi = sandbox.landlock_abi(), "sandbox: every protection available for launched programs");
        } else {
            tracing::warn!(active = %names(&host.active), missing = %names(&host.missing), landlock_abi = sandbox.landlock_abi(), "sandbox: this host cannot give launched programs every protection; only catalog entries that allow the missing ones (allow_missing) start");
        }
        // Environments stored in plain text before the vault existed are sealed now (also
        // done by `portcullis migrate`); nothing is launched with a plain value.
        bootstrap::seal_plain_environments(&store, &vault, now).await?;
        let admin_token = bootstrap::bootstrap_admin(&store, now).await?;
        let demo = if options.demo {
            bootstrap::seed_demo(&store, now, config.auth.token_ttl_secs as i64 * 1000).await?
        } else {
            None
        };
        // Another replica's changes are only seen through the change feed: until it is
        // listening (see `watch_access_changes`), bypass the cache.
        cache.set_enabled(!store.is_shared());
        let upstreams = upstream::Upstreams::new(
            store.clone(),
            cache.clone(),
            clock.clone(),
            Duration::from_secs(config.upstream.call_timeout_secs),
            Duration::from_secs(config.upstream.restart_backoff_max_secs),
            upstream::Liveness {
                interval: Duration::from_secs(config.upstream.ping_interval_secs),
                timeout: Duration::from_secs(config.upstream.ping_timeout_secs),
            },
            upstream::Outbound {
                catalog: catalog.clone(),
                broker: Arc::new(vault::oauth::Broker::new(
                    vault.clone(),
                    egress.clone(),
                    clock.clone(),
                )),
                vault: vault.clone(),
                egress: egress.clone(),
                sandbox,
            },
        );
        let trusted_proxies = config
            .trusted_proxies()
            .map_err(|e| BootstrapError::Config(e.to_string()))?;
        let sites = config.sites().map_err(BootstrapError::Config)?;
        let state_call_timeout_secs = config.upstream.call_timeout_secs;
        let anchors = Arc::new(audit::Anchors::new(
            &store,
            config.audit.origin.clone(),
            config.witness_file(),
            config.audit.checkpoint_every_entries,
        ));
        let state = Arc::new(AppState {
            config,
            cache,
            store,
            keys,
            anchors,
            clock,
            metrics: metrics::Metrics::new(),
            guards: guards::Guards::default(),
            upstreams,
            engines: engines::Engines::default(),
            catalog,
            vault,
            egress,
            trusted_proxies,
            sites,
            bridges: bridge::Bridges::new(Duration::from_secs(state_call_timeout_secs)),
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
            redactor: Arc::new(portcullis_redact::Redactor::default()),
        });
        let metrics_listener = match state
            .config
            .metrics_listen()
            .map_err(BootstrapError::Config)?
        {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                BootstrapError::Config(format!("cannot listen for metrics on {addr}: {e}"))
            })?),
            None => None,
        };
        Ok(Self {
            state,
            first_start: FirstStart { admin_token, demo },
            metrics_listener,
            streams: tokio_util::sync::CancellationToken::new(),
            probe: options.probe,
        })
    }

    /// Where the separate `/metrics` listener is bound, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The HTTP router: MCP endpoint, admin API, health and metrics.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let endpoint = Arc::new(mcp::McpEndpoint::new(
            state.clone(),
            self.streams.child_token(),
        ));
        let mcp_routes = Router::new()
            .route("/t/{tenant}/mcp", any(mcp::endpoint))
            .with_state((state.clone(), endpoint))
            .merge(
                Router::new()
                    .route("/t/{tenant}/http/{connection}/{*path}", any(api::endpoint))
                    .route("/t/{tenant}/sessions", post(sessions::exchange))
                    .route(
                        "/t/{tenant}/v1/chat/completions",
                        post(models::chat_completions),
                    )
                    .route("/t/{tenant}/v1/messages", post(models::messages))
                    .route("/t/{tenant}/v1/models", get(models::list_models))
                    .route("/share/{token}", get(admin::shares::download))
                    .route("/t/{tenant}/hooks/{source}", post(webhooks::inbound))
                    .route(
                        "/t/{tenant}/hooks/{source}/events",
                        get(webhooks::inbound_events),
                    )
                    .with_state(state.clone()),
            );
        let router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_handler))
            .nest(
                "/admin/v1",
                admin::router().layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    invalidate_after_writes,
                )),
            )
            .with_state(state.clone())
            .merge(mcp_routes)
            .merge(console::router(state.clone()))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                state.config.server.max_body_bytes,
            ))
            // Outermost: what a web page could send never reaches authentication.
            .layer(axum::middleware::from_fn_with_state(
                state,
                web::refuse_cross_site,
            ));
        match self.probe.clone() {
            None => router,
            Some(probe) => router.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let probe = probe.clone();
                    async move {
                        use futures::StreamExt as _;
                        let (parts, body) = next.run(request).await.into_parts();
                        let chunks = body.into_data_stream().inspect(move |chunk| {
                            if let Ok(bytes) = chunk {
                                probe(bytes);
                            }
                        });
                        axum::response::Response::from_parts(
                            parts,
                            axum::body::Body::from_stream(chunks),
                        )
                    }
                },
            )),
        }
    }

    /// Start upstreams and background workers, then serve until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        // Outbound requests never reach the gateway's own listeners.
        state.egress.policy().add_own(listener.local_addr()?);
        if let Some(metrics) = self.metrics_addr() {
            state.egress.policy().add_own(metrics);
        }
        match state.store.all_active_connections().await {
            Ok(connections) => connections
                .into_iter()
                .for_each(|c| state.upstreams.start(c)),
            Err(e) => tracing::error!(error = %e, "cannot load connections"),
        }
        // Executions a previous process redeemed but never finished are reported now (and
        // never re-run). On SQLite this process is the only writer, so every one is from a
        // process that died; replicas sharing PostgreSQL may still be running theirs, so
        // there only those past the call timeout count.
        let redeemed_before = if state.store.is_shared() {
            state.clock.now() - unknown_after_ms(&state.config)
        } else {
            state.clock.now()
        };
        if let Err(e) = audit::report_unknown_executions(&state, redeemed_before).await {
            tracing::error!(error = %e, "cannot look for unfinished executions");
        }
        let workers = tokio_util::sync::CancellationToken::new();
        tokio::spawn(checkpoint_worker(state.clone(), workers.clone()));
        tokio::spawn(watch_access_changes(state.clone(), workers.clone()));
        tokio::spawn(unknown_executions_worker(state.clone(), workers.clone()));
        tokio::spawn(webhooks::worker(state.clone(), workers.clone()));
        let router = self.router();
        if let Some(listener) = self.metrics_listener {
            let metrics = Router::new()
                .route("/metrics", get(metrics_open))
                .with_state(state.clone());
            let stop = workers.clone();
            tokio::spawn(async move {
                let served = axum::serve(no_delay(listener), metrics)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
        }
        let result = axum::serve(
            no_delay(listener),
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let streams = self.streams.clone();
            async move {
                shutdown.await;
                streams.cancel();
            }
        })
        .await;
        workers.cancel();
        state.upstreams.shutdown();
        // A final checkpoint on clean shutdown leaves nothing unwitnessed.
        if let Err(e) =
            audit::checkpoint_all(&state.store, &state.keys, &state.anchors, state.clock.now())
                .await
        {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        result
    }
}

/// A listener whose accepted connections send small segments at once (`TCP_NODELAY`).
///
/// INVARIANT: every listener the project serves on sets it. Without it, Nagle's algorithm
/// holds the tail of a response (an SSE event after its headers) until the client's delayed
/// ACK — about 40 ms per call for any client that does not set it itself.
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(set_no_delay as fn(&mut tokio::net::TcpStream))
}

fn set_no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on an accepted connection");
    }
}

/// Every admin write (on the API or from the console) may change what agents can reach: drop
/// cached access data after the handler ran and before its response leaves, so the next
/// request sees the change. Only a write that was answered with success (2xx, or the 303 of
/// a console form) drops it: a refused or unauthenticated request changed nothing, and must
/// not be a way to flush the cache.
pub(crate) async fn invalidate_after_writes(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let writes = request.method() != http::Method::GET && request.method() != http::Method::HEAD;
    let response = next.run(request).await;
    let status = response.status();
    if writes && (status.is_success() || status.is_redirection()) {
        state.cache.invalidate();
    }
    response
}

/// Ready when the store answers. Upstreams are counted by state, never named (anyone may
/// ask); one tenant's dead upstream does not take the gateway out of a load balancer.
/// Liveness, and what confines launched programs: the host's protections and how many
/// running programs lack some, for anyone; each connection's protections only for an admin
/// who presents a token (and only the connections that admin may see). A request without a
/// token is never an authentication attempt (it cannot lock anyone out).
async fn healthz(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::extract::FromRequestParts as _;
    let (mut parts, _) = request.into_parts();
    // Only an admin's bearer token is an authentication attempt; any other header (a
    // monitor's, a proxy's) is ignored rather than counted toward a lockout.
    let admin_token = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|token| token.starts_with("pcadm_"));
    let admin = if admin_token {
        match identity::AdminContext::from_request_parts(&mut parts, &state).await {
            Ok(admin) => Some(admin),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let sandbox = state.upstreams.sandbox();
    let host = sandbox.host_report();
    let running = state.upstreams.confinements();
    let lacking = running
        .iter()
        .filter(|(_, _, r)| !r.missing.is_empty())
        .count();
    let mut body = serde_json::json!({
        "status": "ok",
        "sandbox": {
            "landlock_abi": sandbox.landlock_abi(),
            "host": host,
            "programs": { "running": running.len(), "lacking_protections": lacking },
        },
    });
    if let Some(admin) = admin {
        body["sandbox"]["connections"] = running
            .iter()
            .filter(|(tenant, _, _)| admin.may_access(tenant))
            .map(|(tenant, connection, report)| {
                serde_json::json!({
                    "tenant": tenant,
                    "connection": connection,
                    "active": report.active,
                    "missing": report.missing,
                })
            })
            .collect();
    }
    axum::Json(body).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "ready",
                "store": "ok",
                "upstreams": state.upstreams.counts(),
            })),
        ),
        Err(e) => {
            // The cause (hosts, roles, driver messages) is for the operator's log only.
            tracing::error!(error = %e, "readiness check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "unavailable", "store": "unavailable" })),
            )
        }
    }
}

fn metrics_body(state: &AppState) -> axum::response::Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// `/metrics` on the main listener: only with the metrics token (`metrics.token_sha256`).
/// Wrong tokens count towards the address's lockout like any failed authentication.
async fn metrics_handler(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
    headers: http::HeaderMap,
) -> axum::response::Response {
    match auth::authenticate_metrics(&state, peer.ip(), &headers).await {
        Ok(()) => metrics_body(&state),
        Err(refusal) => error::ApiError::from(refusal).into_response(),
    }
}

/// `/metrics` on the separate metrics listener (`metrics.listen`): no credentials there.
async fn metrics_open(State(state): State<Arc<AppState>>) -> axum::response::Response {
    metrics_body(&state)
}

/// How long after its redemption an execution with no recorded outcome is reported as
/// unknown: the call timeout (by then the call would have ended and recorded one) plus a
/// margin for recording it.
pub fn unknown_after_ms(config: &Config) -> i64 {
    (config.upstream.call_timeout_secs as i64 + 5) * 1000
}

/// Report executions whose outcome never arrived, twice per [`unknown_after_ms`] (at least
/// every second, at most every minute).
async fn unknown_executions_worker(
    state: Arc<AppState>,
    stop: tokio_util::sync::CancellationToken,
) {
    let every = Duration::from_millis((unknown_after_ms(&state.config) / 2) as u64)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        tokio::select! {
            _ = interval.tick() => {
                let before = state.clock.now() - unknown_after_ms(&state.config);
                if let Err(e) = audit::report_unknown_executions(&state, before).await {
                    tracing::warn!(error = %e, "cannot look for unfinished executions");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// The longest a replica may serve cached access data that another replica changed, should
/// the change notification be lost without the feed noticing.
const SHARED_CACHE_MAX_AGE: Duration = Duration::from_secs(2);

/// Follow the shared store's change feed: every committed change on any replica invalidates
/// this replica's cache; while the feed is down the cache is bypassed.
async fn watch_access_changes(state: Arc<AppState>, stop: tokio_util::sync::CancellationToken) {
    if !state.store.is_shared() {
        return;
    }
    loop {
        match state.store.access_changes().await {
            Ok(Some(mut feed)) => {
                state.cache.set_enabled(true);
                // The bounded fallback: even if the feed died silently, nothing cached is
                // older than this.
                let mut refresh = tokio::time::interval(SHARED_CACHE_MAX_AGE);
                loop {
                    let next = tokio::select! {
                        next = feed.next() => next,
                        _ = refresh.tick() => Ok(true),
                        () = stop.cancelled() => return,
                    };
                    match next {
                        // A change, or a reconnect after which changes may have been missed:
                        // drop cached access data and pick up connections created or revoked
                        // on other replicas.
                        Ok(_) => {
                            state.cache.invalidate();
                            if let Err(e) = state.upstreams.reconcile().await {
                                tracing::warn!(error = %e, "cannot reconcile upstream connections");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "access change feed lost; bypassing the cache");
                            break;
                        }
                    }
                }
                state.cache.set_enabled(false);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for access changes; bypassing the cache")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Writes checkpoints: a tenant's trail after `audit.checkpoint_every_entries` appended
/// entries, when an approval or execution nudges it, and every trail with new entries each
/// `audit.checkpoint_interval_secs`.
async fn checkpoint_worker(state: Arc<AppState>, stop: tokio_util::sync::CancellationToken) {
    let Some(mut ends) = state.anchors.take_receivers() else {
        return;
    };
    let secs = state.config.audit.checkpoint_interval_secs;
    let every = state.anchors.every_entries;
    // With no timer (0) the tick branch below is disabled.
    let period = Duration::from_secs(secs.max(1));
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counts: std::collections::HashMap<portcullis_core::id::TenantId, u64> =
        std::collections::HashMap::new();
    let checkpoint = |tenant: portcullis_core::id::TenantId| {
        let state = state.clone();
        async move {
            if let Err(e) = audit::checkpoint_in(&state, &tenant).await {
                tracing::warn!(error = %e, tenant = %tenant, "checkpoint failed");
            }
        }
    };
    loop {
        tokio::select! {
            Some(tenant) = ends.nudged.recv() => {
                counts.remove(&tenant);
                checkpoint(tenant).await;
            }
            Some(tenant) = ends.appended.recv() => {
                state.webhook_wake.notify_one();
                let n = counts.entry(tenant.clone()).or_default();
                *n += 1;
                if every > 0 && *n >= every {
                    counts.remove(&tenant);
                    checkpoint(tenant).await;
                }
            }
            _ = interval.tick(), if secs > 0 => {
                counts.clear();
                if let Err(e) = audit::checkpoint_all(&state.store, &state.keys, &state.anchors, state.clock.now()).await {
                    tracing::warn!(error = %e, "periodic checkpoint failed");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Install the tracing subscriber per the log configuration (`RUST_LOG` wins over `log.filter`).
///
/// INVARIANT: tool arguments and results never reach the log, whatever the filter says. The
/// gateway's own code never logs them; the libraries that would (rmcp logs whole messages at
/// debug and notifications at info; HTTP and database drivers log bodies or statements at
/// debug and trace) are capped by [`payload_guard`], a second filter every event must also
/// pass. Every line is then masked by the redactor ([`logs::Redacting`]) on its way out.
pub fn init_tracing(config: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    // Both filters are global: an event is written only when each of them enables it.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(payload_guard());
    let _ = match config.format {
        config::LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(logs::Redacting::new(std::io::stderr)),
            )
            .try_init(),
        config::LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer().with_writer(logs::Redacting::new(std::io::stderr)),
            )
            .try_init(),
    };
    logs::warm();
}

/// The most any library may log: rmcp warnings (it logs messages and notifications below
/// that), other libraries information (they log bodies, headers and statements below that).
/// Portcullis's own crates are limited only by the configured filter.
pub fn payload_guard() -> tracing_subscriber::filter::Targets {
    use tracing::level_filters::LevelFilter;
    tracing_subscriber::filter::Targets::new()
        .with_target("portcullis", LevelFilter::TRACE)
        .with_target("rmcp", LevelFilter::WARN)
        .with_default(LevelFilter::INFO)
}
