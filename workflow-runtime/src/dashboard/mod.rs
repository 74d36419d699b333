//! A web dashboard: an axum [`Router`] to mount in your application (feature
//! `dashboard`).
//!
//! - the overview: registered workflows with their statistics (success rate,
//!   average and 95th-percentile duration, errors by kind, from the newest 1,000
//!   ended executions of each), the executions that have not ended, dead letters;
//! - one workflow (at `{name}`, beside the overview; the event stream `events`
//!   shadows a workflow of that name): its DAG, its schedules with
//!   their next fire times and the events that start it, the statistics of its
//!   recent executions overall and per step, and those executions;
//! - one execution: its DAG coloured by step state, the timeline of its steps'
//!   latest attempts, its context and failure;
//! - live: pages update without reloading, from a stream of the engine's events
//!   (server-sent events at `events`), and every few seconds besides (on a
//!   cluster, events come from this node only);
//! - actions: cancel, resume (with a JSON context), retry a dead letter. They are
//!   `POST` routes that [`router`] leaves out: [`Dashboard::bearer_token`] puts them
//!   behind a bearer token, or [`Dashboard::actions`] hands them to you to wrap in
//!   your own authentication layer.
//!
//! ```no_run
//! # async fn run(engine: sagaflow_runtime::Engine) -> std::io::Result<()> {
//! use sagaflow_runtime::dashboard::Dashboard;
//! let app = axum::Router::new()
//!     .nest("/workflows", Dashboard::new(engine).bearer_token("change-me").router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```
//!
//! Mounted with `nest("/workflows", ...)`, the overview is at `/workflows` itself
//! (axum does not match `/workflows/`). JSON is served under `api/`: `api/overview`,
//! `api/workflows/{name}` (what the workflow's page shows), `api/executions/{id}` (the
//! execution's state and its picture as SVG), and the actions
//! `api/executions/{id}/cancel`, `api/executions/{id}/resume`,
//! `api/dead-letters/{id}/retry`.

mod page;
mod stats;
mod svg;
mod workflow;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::NestedPathRejection;
use axum::extract::{NestedPath, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value, json};

use self::stats::Stats;
use crate::engine::{CancelOptions, Engine, EngineError};
use crate::model::ExecutionId;
use crate::store::ExecutionQuery;

/// The read-only dashboard of `engine`: pages, JSON and live updates, no actions.
pub fn router(engine: Engine) -> Router {
    Dashboard::new(engine).router()
}

/// The dashboard, configured.
#[derive(Clone, Debug)]
pub struct Dashboard {
    engine: Engine,
    token: Option<Arc<str>>,
}

impl Dashboard {
    /// The dashboard of `engine`.
    pub fn new(engine: Engine) -> Self {
        Dashboard { engine, token: None }
    }

    /// Serves the actions too, to requests that carry `Authorization: Bearer
    /// <token>` (the pages ask for the token once and keep it for the browser
    /// session). Other requests get `401`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into().into());
        self
    }

    /// The pages, the JSON API and the event stream; with a bearer token, the
    /// actions behind it.
    pub fn router(&self) -> Router {
        let pages = Router::new()
            .route("/", get(overview_page))
            .route("/executions/{id}", get(execution_page))
            .route("/{name}", get(workflow::page))
            .route("/api/overview", get(overview))
            .route("/api/executions/{id}", get(execution))
            .route("/api/workflows/{name}", get(workflow::api))
            .route("/events", get(events))
            .with_state(self.engine.clone());
        match &self.token {
            Some(token) => {
                let token = Arc::clone(token);
                let actions = self.actions().route_layer(middleware::from_fn(move |req: Request, next: Next| {
                    let token = Arc::clone(&token);
                    async move { bearer(&token, req, next).await }
                }));
                pages.merge(actions)
            }
            None => pages,
        }
    }

    /// The action routes alone, without authentication: wrap them in your own
    /// layer (`.route_layer(...)`) and merge them with [`router`](Self::router).
    pub fn actions(&self) -> Router {
        Router::new()
            .route("/api/executions/{id}/cancel", post(cancel))
            .route("/api/executions/{id}/resume", post(resume))
            .route("/api/dead-letters/{id}/retry", post(retry))
            .with_state(self.engine.clone())
    }
}

/// Lets a request through if it carries the token.
async fn bearer(token: &str, req: Request, next: Next) -> Response {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match given.and_then(|v| v.strip_prefix("Bearer ")) {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "a valid bearer token is required for this action" })),
        )
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The mount point, for links.
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

#[derive(Serialize)]
struct WorkflowRow {
    name: String,
    steps: usize,
    trigger: String,
    running: usize,
    stats: Stats,
}

#[derive(Serialize)]
struct RunningRow {
    id: ExecutionId,
    workflow: String,
    status: String,
    started_at: chrono::DateTime<chrono::Utc>,
    done: u32,
    total: u32,
    running: Vec<String>,
}

#[derive(Serialize)]
struct LetterRow {
    id: ExecutionId,
    workflow: String,
    error: Option<String>,
    error_step: Option<String>,
    failed_at: chrono::DateTime<chrono::Utc>,
}

async fn overview(State(engine): State<Engine>) -> Result<Json<Value>, ApiError> {
    let mut workflows = Vec::new();
    let mut running = Vec::new();
    for info in engine.list_all() {
        let live = engine.list_running(&info.name).await?;
        let history = engine.history(&ExecutionQuery { workflow: Some(info.name.clone()), limit: 1000 }).await?;
        running.extend(live.iter().map(|s| RunningRow {
            id: s.id,
            workflow: s.workflow.clone(),
            status: s.status.to_string(),
            started_at: s.started_at,
            done: s.progress.done,
            total: s.progress.total,
            running: s.running.clone(),
        }));
        workflows.push(WorkflowRow {
            name: info.name.clone(),
            steps: info.steps,
            trigger: info.trigger_type.as_str().to_owned(),
            running: live.len(),
            stats: Stats::of(&history),
        });
    }
    running.sort_by_key(|r| std::cmp::Reverse(r.started_at));
    let letters: Vec<LetterRow> = engine
        .dead_letters()
        .list(None)
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
    Ok(Json(json!({ "workflows": workflows, "running": running, "dead_letters": letters })))
}

async fn execution(State(engine): State<Engine>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let state = engine.get_state(id).await?;
    let dag = engine.definition(&state.workflow).map(|d| svg::dag(&d.snapshot(), Some(&state)));
    Ok(Json(json!({ "state": state, "dag": dag })))
}

async fn events(State(engine): State<Engine>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = engine.subscribe().into_stream().map(|e| {
        let data = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
        Ok(SseEvent::default().data(data))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn cancel(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Option<Json<Map<String, Value>>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let reason = body
        .as_ref()
        .and_then(|b| b.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("cancelled from the dashboard")
        .to_owned();
    engine.cancel(id, CancelOptions::reason(reason)).await?;
    Ok(Json(json!({ "cancelled": id })))
}

async fn resume(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    body: Option<Json<Map<String, Value>>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let context = body.map(|Json(b)| b).unwrap_or_default();
    engine.resume(id, context).await?;
    Ok(Json(json!({ "resumed": id })))
}

async fn retry(State(engine): State<Engine>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let new = engine.dead_letters().replay(id).await?;
    Ok(Json(json!({ "execution": new })))
}

fn parse_id(text: &str) -> Result<ExecutionId, ApiError> {
    text.parse::<uuid::Uuid>()
        .map(ExecutionId::from_uuid)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("`{text}` is not an execution id: {e}")))
}

/// An error as a JSON answer.
struct ApiError(StatusCode, String);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::UnknownExecution(_) | EngineError::UnknownWorkflow { .. } => StatusCode::NOT_FOUND,
            EngineError::InvalidState { .. } | EngineError::InvalidInput { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}
