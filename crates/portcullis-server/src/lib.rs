//! The running Portcullis process as a library: configuration, the agent-facing MCP endpoint,
//! the admin API, the upstream supervisor, metrics and background workers.
//!
//! Only this crate knows HTTP and JSON-RPC. [`Application::build`] prepares everything (data
//! folder, key file, database, bootstrap admin) and [`Application::serve`] runs on a listener
//! the caller bound, until a shutdown future resolves — so tests start the real server on
//! port 0.

pub mod admin;
pub mod amend;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod clock;
pub mod config;
pub mod error;
pub mod gate;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod preview;
pub mod state;
pub mod tasks;
pub mod trust;
pub mod upstream;

use crate::bootstrap::BootstrapError;
use crate::clock::Clock;
use crate::config::Config;
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
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
    /// Seed the demo tenant on first start, with this program as the demo upstream command.
    pub demo_upstream_command: Option<PathBuf>,
}

/// What first start created and must be shown once.
#[derive(Default)]
pub struct FirstStart {
    pub admin_token: Option<BearerSecret>,
    pub demo: Option<bootstrap::Demo>,
}

pub struct Application {
    state: Arc<AppState>,
    pub first_start: FirstStart,
    /// Cancelled when shutdown begins: ends open MCP streams (legacy sessions' GET streams),
    /// which would otherwise keep graceful shutdown waiting forever.
    streams: tokio_util::sync::CancellationToken,
}

impl Application {
    /// Prepare the data folder, keys and database; create the bootstrap admin (and demo) on
    /// first start.
    pub async fn build(config: Config, options: BuildOptions) -> Result<Self, BootstrapError> {
        bootstrap::ensure_data_dir(&config)?;
        let keys = Arc::new(bootstrap::load_or_create_keys(&config.key_file())?);
        let store_options = StoreOptions {
            max_read_connections: config.data.max_connections.min(64),
            max_connections: config.data.max_connections,
        };
        let store = Store::open(&config.database_url(), &store_options).await?;
        let clock = options.clock;
        let now = clock.now();
        let admin_token = bootstrap::bootstrap_admin(&store, now).await?;
        let demo = match &options.demo_upstream_command {
            Some(command) => {
                bootstrap::seed_demo(
                    &store,
                    command,
                    now,
                    config.auth.token_ttl_secs as i64 * 1000,
                )
                .await?
            }
            None => None,
        };
        let cache = Arc::new(cache::AccessCache::default());
        // Another replica's changes are only seen through the change feed: until it is
        // listening (see `watch_access_changes`), bypass the cache.
        cache.set_enabled(!store.is_shared());
        let upstreams = upstream::Upstreams::new(
            store.clone(),
            cache.clone(),
            clock.clone(),
            Duration::from_secs(config.upstream.call_timeout_secs),
            Duration::from_secs(config.upstream.restart_backoff_max_secs),
        );
        let state = Arc::new(AppState {
            config,
            cache,
            store,
            keys,
            clock,
            metrics: metrics::Metrics::new(),
            guards: auth::Guards::default(),
            upstreams,
            engines: policy::Engines::default(),
        });
        Ok(Self {
            state,
            first_start: FirstStart { admin_token, demo },
            streams: tokio_util::sync::CancellationToken::new(),
        })
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
            .with_state((state.clone(), endpoint));
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
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
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                state.config.server.max_body_bytes,
            ))
    }

    /// Start upstreams and background workers, then serve until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        match state.store.all_active_connections().await {
            Ok(connections) => connections
                .into_iter()
                .for_each(|c| state.upstreams.start(c)),
            Err(e) => tracing::error!(error = %e, "cannot load connections"),
        }
        let workers = tokio_util::sync::CancellationToken::new();
        tokio::spawn(checkpoint_worker(state.clone(), workers.clone()));
        tokio::spawn(watch_access_changes(state.clone(), workers.clone()));
        let router = self.router();
        let result = axum::serve(
            listener,
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
        // A final checkpoint on clean shutdown keeps the truncation window small.
        if let Err(e) = audit::checkpoint_all(&state.store, &state.keys, state.clock.now()).await {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
        result
    }
}

/// Every admin write may change what agents can reach: drop cached access data after the
/// handler ran and before its response leaves, so the next request sees the change.
async fn invalidate_after_writes(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let writes = request.method() != http::Method::GET && request.method() != http::Method::HEAD;
    let response = next.run(request).await;
    if writes {
        state.cache.invalidate();
    }
    response
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.store.health().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready", "store": "ok" })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable", "store": e.to_string() })),
        ),
    }
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
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

async fn checkpoint_worker(state: Arc<AppState>, stop: tokio_util::sync::CancellationToken) {
    let secs = state.config.audit.checkpoint_interval_secs;
    if secs == 0 {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_secs(secs));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                if let Err(e) = audit::checkpoint_all(&state.store, &state.keys, state.clock.now()).await {
                    tracing::warn!(error = %e, "periodic checkpoint failed");
                }
            }
            () = stop.cancelled() => return,
        }
    }
}

/// Install the tracing subscriber per the log configuration (`RUST_LOG` wins over `log.filter`).
pub fn init_tracing(config: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}
