//! A web dashboard: an axum [`Router`] to mount in your application (feature
//! `dashboard`), or to serve over a store alone (`sagaflow serve`).
//!
//! - the overview: workflows with the statistics of their recent executions
//!   (success rate, average and 95th-percentile duration, errors by kind, over
//!   the newest [`STATS_WINDOW`] ended executions of each), the executions that
//!   have not ended (a page at a time), dead letters;
//! - one workflow (at `{name}`, beside the overview; `events`, `login` and
//!   `logout` shadow workflows of those names): its DAG, its schedules with their
//!   next fire times and the events that start it, the statistics of its recent
//!   executions overall and per step, and those executions;
//! - one execution: its DAG coloured by step state, every attempt of its steps
//!   and their compensations as bars on one time axis,
//!   its context and failure; an execution that another process holds is shown
//!   from its store row and its journal as a timeline (never replayed);
//! - live: pages update without reloading, from a stream of the engine's events
//!   (server-sent events at `events`), and every few seconds besides;
//! - actions: cancel, pause, resume (with a JSON context), restart an ended
//!   execution from a step, retry a dead letter.
//!
//! ## Safe to expose
//!
//! - **One authentication layer covers everything** once configured: pages, JSON,
//!   the event stream and the actions. [`Dashboard::bearer_token`] is the simple
//!   case (browsers log in once on a page of the dashboard's own, which sets an
//!   `HttpOnly`, `SameSite=Strict` cookie; API clients send `Authorization:
//!   Bearer <token>`); [`Dashboard::layer`] puts everything behind the host's own
//!   layer instead, and [`Dashboard::unauthenticated_router`] hands the whole
//!   router over for the host to wrap. Without either, [`Dashboard::router`] is
//!   read-only (no actions) and meant for a trusted network: its pages show
//!   executions' contexts, which hold user data.
//! - An empty token is refused when the dashboard is built
//!   ([`DashboardError::EmptyToken`]).
//! - Actions are `POST`s that take a JSON object with `Content-Type:
//!   application/json` (anything else gets `415` or `400`): no cross-site form can
//!   send one, and a cross-site `fetch` of JSON needs a CORS preflight the
//!   dashboard never grants.
//! - The number of event-stream clients is capped
//!   ([`Dashboard::max_event_streams`], 64 by default); beyond it `events`
//!   answers `503`.
//! - Every read is bounded and runs no user code: lists are paged
//!   (`?offset=&limit=`, at most [`MAX_PAGE`] rows), statistics cover a window of
//!   recent executions, the overview and workflow figures are computed at most
//!   once a second however many clients poll them, and no request replays a
//!   journal (on a cluster, executions that other nodes hold are shown from their
//!   store rows).
//! - Error texts never carry a store URL's password.
//!
//! ```no_run
//! # async fn run(engine: sagaflow_runtime::Engine) -> Result<(), Box<dyn std::error::Error>> {
//! use sagaflow_runtime::dashboard::Dashboard;
//! let dashboard = Dashboard::new(engine).bearer_token("change-me")?;
//! let app = axum::Router::new().nest("/workflows", dashboard.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Mounted with `nest("/workflows", ...)`, the overview is at `/workflows` itself
//! (axum does not match `/workflows/`). JSON is served under `api/`: `api/overview`
//! (`?offset=&limit=` page the unfinished executions, `?letters_offset=&letters_limit=`
//! the dead letters), `api/workflows/{name}` (what the workflow's page shows;
//! `?offset=&limit=` page its executions), `api/executions/{id}` (the execution's
//! state and its picture as SVG), and the actions `api/executions/{id}/cancel`
//! (`{"reason": ...}`), `api/executions/{id}/pause`, `api/executions/{id}/resume`
//! (the context to merge), `api/executions/{id}/restart` (`{"step": ..., "context":
//! {...}}`: an ended execution restarted from a step), `api/dead-letters/{id}/retry`,
//! each with a JSON body.

mod auth;
mod page;
mod source;
mod stats;
mod svg;
mod workflow;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, NestedPathRejection};
use axum::extract::{NestedPath, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;

pub use self::auth::DashboardError;
use self::auth::Token;
use self::source::{Action, EngineSource, ExecutionView, RunningRow, Source, StoreSource};
use self::stats::Stats;
use crate::engine::{CancelOptions, Engine, EngineError};
use crate::model::ExecutionId;
use crate::store::{ControlError, Store, StoreControl, StoreError, redact_secrets};

/// Ended executions per workflow that the statistics are computed from.
pub const STATS_WINDOW: usize = 200;

/// The most rows one page of a list holds (`?limit=`).
pub const MAX_PAGE: usize = 500;

/// Rows per page when `?limit=` is not given.
const DEFAULT_PAGE: usize = 100;

/// How long computed figures are served before they are computed again.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Event-stream clients served at once by default.
const DEFAULT_STREAMS: usize = 64;

/// The read-only dashboard of `engine`: pages, JSON and live updates, no actions,
/// no authentication. For a trusted network; see [`Dashboard`] for the rest.
pub fn router(engine: Engine) -> Router {
    Dashboard::new(engine).router()
}

/// The dashboard, configured. See the [module documentation](self).
#[derive(Clone)]
pub struct Dashboard {
    state: AppState,
    auth: Auth,
    max_streams: usize,
}

#[derive(Clone)]
enum Auth {
    /// Read-only, no authentication.
    Open,
    Bearer(Arc<Token>),
    Host(Arc<dyn Fn(Router) -> Router + Send + Sync>),
}

impl fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::Open => "none (read-only)",
            Auth::Bearer(_) => "bearer token",
            Auth::Host(_) => "the host's layer",
        };
        f.debug_struct("Dashboard").field("auth", &auth).field("max_event_streams", &self.max_streams).finish()
    }
}

impl Dashboard {
    /// The dashboard of `engine`.
    pub fn new(engine: Engine) -> Self {
        Self::from_source(Arc::new(EngineSource(engine)))
    }

    /// A dashboard over a store alone, without the engines that run the
    /// workflows or their code (what `sagaflow serve` runs): it reads `store`
    /// (open an SQLite file with [`SqliteStore::open_read_only`]), shows every
    /// unfinished execution from its row and journal, and sends its actions
    /// through `control` to the engines that hold the executions (`None`: no
    /// actions). There is no engine to stream events from: pages refresh every
    /// few seconds.
    ///
    /// [`SqliteStore::open_read_only`]: crate::store::SqliteStore::open_read_only
    pub fn over_store(store: Arc<dyn Store>, control: Option<StoreControl>) -> Self {
        Self::from_source(Arc::new(StoreSource { store, control }))
    }

    fn from_source(source: Arc<dyn Source>) -> Self {
        let state =
            AppState { source, cache: Arc::new(Cache::default()), streams: Arc::new(Semaphore::new(DEFAULT_STREAMS)) };
        Dashboard { state, auth: Auth::Open, max_streams: DEFAULT_STREAMS }
    }

    /// Puts everything (pages, JSON, events and the actions) behind a bearer
    /// token: requests must carry `Authorization: Bearer <token>`, or the cookie
    /// that the dashboard's login page sets for a browser that gave the token.
    /// Others get `401` (a page asking for the token, for a browser).
    ///
    /// Fails with [`DashboardError::EmptyToken`] for an empty token (which would
    /// let every request in) and [`DashboardError::InvalidToken`] for one that no
    /// header can carry (surrounding whitespace, control or non-ASCII characters).
    ///
    /// ```
    /// # async fn run(engine: sagaflow_runtime::Engine) {
    /// use sagaflow_runtime::dashboard::{Dashboard, DashboardError};
    /// let refused = Dashboard::new(engine.clone()).bearer_token("");
    /// assert_eq!(refused.unwrap_err(), DashboardError::EmptyToken);
    /// let dashboard = Dashboard::new(engine).bearer_token("a-long-random-token").expect("a valid token");
    /// # let _ = dashboard; }
    /// ```
    pub fn bearer_token(mut self, token: impl Into<String>) -> Result<Self, DashboardError> {
        self.auth = Auth::Bearer(Arc::new(Token::new(token.into())?));
        Ok(self)
    }

    /// Puts everything (pages, JSON, events and the actions) behind the host's
    /// own layer (a session check, an SSO proxy's header check...), applied to
    /// the whole router as [`Router::layer`] does.
    ///
    /// ```no_run
    /// # fn run(engine: sagaflow_runtime::Engine) {
    /// use axum::extract::Request;
    /// use axum::http::StatusCode;
    /// use axum::middleware::{self, Next};
    /// use axum::response::{IntoResponse, Response};
    /// use sagaflow_runtime::dashboard::Dashboard;
    ///
    /// async fn operators_only(req: Request, next: Next) -> Response {
    ///     match req.headers().get("x-operator") {
    ///         Some(_) => next.run(req).await,
    ///         None => StatusCode::FORBIDDEN.into_response(),
    ///     }
    /// }
    /// let router = Dashboard::new(engine).layer(middleware::from_fn(operators_only)).router();
    /// # let _ = router; }
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower_layer::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower_service::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Response: IntoResponse + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Error: Into<Infallible> + 'static,
        <L::Service as tower_service::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.auth = Auth::Host(Arc::new(move |router: Router| router.layer(layer.clone())));
        self
    }

    /// At most this many event-stream clients at once (default 64); more get
    /// `503 Service Unavailable` until one leaves.
    pub fn max_event_streams(mut self, clients: usize) -> Self {
        self.max_streams = clients;
        self.state.streams = Arc::new(Semaphore::new(clients));
        self
    }

    /// The dashboard's router: with a bearer token or a host layer, everything
    /// behind it; without either, the read-only pages, JSON and events.
    pub fn router(&self) -> Router {
        match &self.auth {
            Auth::Open => self.reads(),
            Auth::Bearer(token) => self
                .reads()
                .merge(self.actions())
                .route_layer(middleware::from_fn_with_state(Arc::clone(token), auth::guard))
                .merge(
                    Router::new()
                        .route("/login", post(auth::login))
                        .route("/logout", post(auth::logout))
                        .with_state(Arc::clone(token)),
                ),
            Auth::Host(wrap) => wrap(self.unauthenticated_router()),
        }
    }

    /// Everything, actions included, with no authentication at all: for a host
    /// that wraps it in its own layer where it mounts it. Never serve it as it is
    /// beyond a trusted network.
    pub fn unauthenticated_router(&self) -> Router {
        self.reads().merge(self.actions())
    }

    fn reads(&self) -> Router {
        Router::new()
            .route("/", get(overview_page))
            .route("/executions/{id}", get(execution_page))
            .route("/{name}", get(workflow::page))
            .route("/api/overview", get(overview))
            .route("/api/executions/{id}", get(execution))
            .route("/api/workflows/{name}", get(workflow::api))
            .route("/events", get(events))
            .with_state(self.state.clone())
    }

    fn actions(&self) -> Router {
        Router::new()
            .route("/api/executions/{id}/cancel", post(cancel))
            .route("/api/executions/{id}/pause", post(pause))
            .route("/api/executions/{id}/resume", post(resume))
            .route("/api/executions/{id}/restart", post(restart))
            .route("/api/dead-letters/{id}/retry", post(retry))
            .with_state(self.state.clone())
    }
}

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    source: Arc<dyn Source>,
    cache: Arc<Cache>,
    streams: Arc<Semaphore>,
}

/// Figures computed at most once per [`FRESH_FOR`], whatever the number of
/// clients: the first request after that computes them while the others wait for
/// its result.
#[derive(Default)]
struct Cache {
    overview: tokio::sync::Mutex<Option<(Instant, Arc<Overview>)>>,
    workflows: tokio::sync::Mutex<HashMap<String, (Instant, Arc<workflow::Figures>)>>,
}

impl Cache {
    async fn overview(&self, source: &dyn Source) -> Result<Arc<Overview>, ApiError> {
        let mut slot = self.overview.lock().await;
        if let Some((at, o)) = &*slot
            && at.elapsed() < FRESH_FOR
        {
            return Ok(Arc::clone(o));
        }
        let fresh = Arc::new(Overview::compute(source).await?);
        *slot = Some((Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }

    /// After an action: the next read computes afresh.
    async fn forget(&self) {
        *self.overview.lock().await = None;
        self.workflows.lock().await.clear();
    }
}

/// The base of the dashboard's path, for links.
fn base(nested: Result<NestedPath, NestedPathRejection>) -> String {
    nested.ok().map(|n| n.as_str().trim_end_matches('/').to_owned()).unwrap_or_default()
}

async fn overview_page(nested: Result<NestedPath, NestedPathRejection>) -> Html<String> {
    Html(page::overview(&base(nested)))
}

async fn execution_page(
    nested: Result<NestedPath, NestedPathRejection>,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let id = parse_id(&id)?;
    Ok(Html(page::execution(&base(nested), id)))
}

/// `?offset=&limit=` of a list.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
    letters_offset: Option<usize>,
    letters_limit: Option<usize>,
}

/// One page of `rows`.
fn page_of<T: Clone>(rows: &[T], offset: Option<usize>, limit: Option<usize>) -> Vec<T> {
    let limit = limit.unwrap_or(DEFAULT_PAGE).min(MAX_PAGE);
    rows.iter().skip(offset.unwrap_or(0)).take(limit).cloned().collect()
}

#[derive(Clone, Serialize)]
struct WorkflowRow {
    name: String,
    steps: usize,
    trigger: String,
    running: usize,
    stats: Stats,
}

#[derive(Clone, Serialize)]
struct LetterRow {
    id: ExecutionId,
    workflow: String,
    error: Option<String>,
    error_step: Option<String>,
    failed_at: chrono::DateTime<chrono::Utc>,
}

/// The overview's figures.
struct Overview {
    workflows: Vec<WorkflowRow>,
    /// Unfinished executions, newest first.
    running: Vec<RunningRow>,
    /// Dead letters, newest first.
    letters: Vec<LetterRow>,
    at: chrono::DateTime<chrono::Utc>,
}

impl Overview {
    async fn compute(source: &dyn Source) -> Result<Overview, ApiError> {
        let running = source.unfinished().await?;
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for r in &running {
            *counts.entry(r.workflow.as_str()).or_default() += 1;
        }
        let mut workflows = Vec::new();
        for w in source.workflows().await? {
            let history = source.history(&w.snapshot.name, STATS_WINDOW).await?;
            let info = crate::introspect::workflow_info(&w.snapshot, 0);
            workflows.push(WorkflowRow {
                running: counts.get(w.snapshot.name.as_str()).copied().unwrap_or(0),
                name: info.name,
                steps: info.steps,
                trigger: info.trigger_type.as_str().to_owned(),
                stats: Stats::of(&history),
            });
        }
        let mut letters: Vec<LetterRow> = source
            .dead_letters()
            .await?
            .into_iter()
            .map(|d| LetterRow {
                id: d.id,
                workflow: d.workflow,
                error: d.error.map(|e| e.to_string()),
                error_step: d.error_step,
                failed_at: d.failed_at,
            })
            .collect();
        letters.reverse();
        Ok(Overview { workflows, running, letters, at: source.now() })
    }
}

async fn overview(State(app): State<AppState>, Query(q): Query<PageQuery>) -> Result<Json<Value>, ApiError> {
    let o = app.cache.overview(&*app.source).await?;
    Ok(Json(json!({
        "workflows": o.workflows,
        "running": page_of(&o.running, q.offset, q.limit),
        "running_total": o.running.len(),
        "dead_letters": page_of(&o.letters, q.letters_offset, q.letters_limit),
        "dead_letters_total": o.letters.len(),
        "as_of": o.at,
    })))
}

async fn execution(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let now = app.source.now();
    let (state, stored) = match app.source.execution(id).await? {
        ExecutionView::State(s) => (*s, None),
        ExecutionView::Stored(v) => (v.to_state(now), Some(v)),
    };
    let snapshot = app.source.workflows().await?.into_iter().find(|w| w.snapshot.name == state.workflow);
    let dag = snapshot.map(|w| svg::dag(&w.snapshot, Some(&state)));
    Ok(Json(json!({
        "state": state,
        "dag": dag,
        "stored": stored.is_some(),
        "holder": stored.as_ref().and_then(|v| v.holder),
        "timeline": stored.as_ref().map(|v| &v.timeline),
    })))
}

async fn events(State(app): State<AppState>) -> Response {
    let Ok(permit) = Arc::clone(&app.streams).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            Json(json!({ "error": "too many event-stream clients; pages still refresh every few seconds" })),
        )
            .into_response();
    };
    let keep_alive = KeepAlive::new().interval(Duration::from_secs(15));
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        match app.source.subscribe() {
            Some(sub) => Box::pin(sub.into_stream().map(move |e| {
                // The stream holds its place among the clients until it is dropped.
                let _held = &permit;
                let data = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
                Ok(SseEvent::default().data(data))
            })),
            None => Box::pin(futures::stream::pending::<Result<SseEvent, Infallible>>().map(move |e| {
                let _held = &permit;
                e
            })),
        };
    Sse::new(stream).keep_alive(keep_alive).into_response()
}

/// The body of an action: a JSON object, sent as `application/json`.
fn action_body(body: Result<Json<Map<String, Value>>, JsonRejection>) -> Result<Map<String, Value>, ApiError> {
    body.map(|Json(b)| b).map_err(ApiError::from)
}

async fn act(app: &AppState, action: Action) -> Result<Json<Value>, ApiError> {
    let answer = app.source.act(action).await?;
    app.cache.forget().await;
    Ok(Json(answer))
}

async fn cancel(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = action_body(body)?;
    let id = parse_id(&id)?;
    act(&app, Action::Cancel { id, options: cancel_options(&body)? }).await
}

/// A cancel's options, as `Engine::cancel` takes them: `reason` (a string),
/// `cleanup` (run `on_cancel`) and `rollback` (compensate completed steps), both
/// booleans and off unless given.
fn cancel_options(body: &Map<String, Value>) -> Result<CancelOptions, ApiError> {
    let reason = match body.get("reason") {
        None | Some(Value::Null) => "cancelled from the dashboard",
        Some(Value::String(reason)) => reason,
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("`reason` must be a string, not {other}")));
        }
    };
    let flag = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(yes)) => Ok(*yes),
        Some(other) => Err(ApiError(StatusCode::BAD_REQUEST, format!("`{name}` must be true or false, not {other}"))),
    };
    Ok(CancelOptions::reason(reason).cleanup(flag("cleanup")?).rollback(flag("rollback")?))
}

async fn pause(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    action_body(body)?;
    let id = parse_id(&id)?;
    act(&app, Action::Pause(id)).await
}

async fn resume(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let context = action_body(body)?;
    let id = parse_id(&id)?;
    act(&app, Action::Resume { id, context }).await
}

/// `{"step": "...", "context": {...}}`: a restart of an ended execution from a
/// step, with `context` merged over its input.
async fn restart(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = action_body(body)?;
    let id = parse_id(&id)?;
    let step = match body.get("step") {
        Some(Value::String(step)) if !step.is_empty() => step.clone(),
        _ => return Err(ApiError(StatusCode::BAD_REQUEST, "`step` must name the step to restart from".into())),
    };
    let context = match body.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(context)) => context.clone(),
        Some(other) => {
            return Err(ApiError(StatusCode::BAD_REQUEST, format!("`context` must be a JSON object, not {other}")));
        }
    };
    act(&app, Action::Restart { id, step, context }).await
}

async fn retry(
    State(app): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Map<String, Value>>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    action_body(body)?;
    let id = parse_id(&id)?;
    act(&app, Action::Retry(id)).await
}

fn parse_id(text: &str) -> Result<ExecutionId, ApiError> {
    text.parse::<uuid::Uuid>()
        .map(ExecutionId::from_uuid)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("`{text}` is not an execution id: {e}")))
}

/// An error as a JSON answer; its text never shows a password.
struct ApiError(StatusCode, String);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::UnknownExecution(_)
            | EngineError::UnknownWorkflow { .. }
            | EngineError::UnknownStep { .. } => StatusCode::NOT_FOUND,
            EngineError::InvalidState { .. } | EngineError::InvalidInput { .. } => StatusCode::CONFLICT,
            EngineError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e).into()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let status = match &e {
            ControlError::UnknownExecution(_)
            | ControlError::UnknownDeadLetter(_)
            | ControlError::UnknownWorkflow(_)
            | ControlError::UnknownStep { .. } => StatusCode::NOT_FOUND,
            ControlError::Ended { .. } | ControlError::NotStarted { .. } | ControlError::NotEnded(_) => {
                StatusCode::CONFLICT
            }
            ControlError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let hint = "actions take a JSON object with `Content-Type: application/json`";
        ApiError(e.status(), format!("{}; {hint}", e.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": redact_secrets(&self.1) }))).into_response()
    }
}
