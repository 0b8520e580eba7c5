//! The scheduler's HTTP server (`--http-bind`): the dashboard at `/`, the
//! JSON API under `/api/` and Prometheus metrics at `/metrics`. Every
//! answer is rendered by the core from one event (see `state::views`), so
//! the server holds no state of its own.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use keel_proto::auth::AuthToken;
use keel_proto::ids::JobId;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::error::SchedulerError;
use crate::state::{Event, View};

/// The dashboard page: one file, its script and styles inline, built into
/// the binary (clusters may have no internet for a CDN).
const DASHBOARD: &str = include_str!("dashboard.html");

#[derive(Clone)]
struct Api {
    events: mpsc::Sender<Event>,
    /// The cluster's token: changing state (cancelling) requires it; the
    /// read-only views stay open for dashboards and Prometheus.
    token: Option<AuthToken>,
}

type Events = mpsc::Sender<Event>;

pub fn router(events: Events, token: Option<AuthToken>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/workers", get(workers))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/cancel", post(cancel))
        .route("/api/tasks", get(tasks))
        .route("/api/overview", get(overview))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(Api { events, token })
}

/// Serves until `stopping` becomes true.
pub async fn serve(
    listener: TcpListener,
    events: Events,
    token: Option<AuthToken>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(events, token))
        .with_graceful_shutdown(async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
        .await
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD,
    )
        .into_response()
}

async fn workers(State(Api { events, .. }): State<Api>) -> Response {
    view(&events, View::Workers).await
}

async fn jobs(State(Api { events, .. }): State<Api>) -> Response {
    view(&events, View::Jobs).await
}

async fn job(State(Api { events, .. }): State<Api>, Path(id): Path<String>) -> Response {
    view(&events, View::Job(JobId(id))).await
}

/// `GET /api/tasks?since=MS`: attempts that ended after MS (ms since the
/// scheduler started) and the running ones.
async fn tasks(State(Api { events, .. }): State<Api>, RawQuery(query): RawQuery) -> Response {
    match since(query) {
        Ok(since_ms) => view(&events, View::Tasks { since_ms }).await,
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// `GET /api/overview?since=MS`: what the dashboard's page shows, in one request.
async fn overview(State(Api { events, .. }): State<Api>, RawQuery(query): RawQuery) -> Response {
    const JOBS_SHOWN: usize = 50;
    match since(query) {
        Ok(since_ms) => {
            let jobs = JOBS_SHOWN;
            view(&events, View::Overview { since_ms, jobs }).await
        }
        Err(message) => error(StatusCode::BAD_REQUEST, message),
    }
}

/// The `since` query parameter (0 when absent).
fn since(query: Option<String>) -> Result<u64, &'static str> {
    let since = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("since="))
        .map(|v| v.parse::<u64>());
    match since {
        None => Ok(0),
        Some(Ok(ms)) => Ok(ms),
        Some(Err(_)) => Err("since must be a whole number of milliseconds"),
    }
}

async fn metrics(State(Api { events, .. }): State<Api>) -> Response {
    match ask(&events, |reply| Event::ViewRequested {
        view: View::Metrics,
        reply,
    })
    .await
    {
        Ok(Some(text)) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no metrics"),
        Err(r) => r,
    }
}

async fn cancel(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(token) = &api.token {
        let metadata = tonic::metadata::MetadataMap::from_headers(headers);
        if let Err(refused) = token.check(&metadata) {
            return error(
                StatusCode::UNAUTHORIZED,
                &format!("authentication failed: {}", refused.message()),
            );
        }
    }
    let events = api.events;
    let job = JobId(id);
    match ask(&events, |reply| Event::CancelRequested { job, reply }).await {
        Ok(Ok(cancelled)) => json(format!("{{\"cancelled\":{cancelled}}}")),
        Ok(Err(e @ SchedulerError::UnknownJob { .. })) => {
            error(StatusCode::NOT_FOUND, &e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(r) => r,
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

async fn view(events: &Events, view: View) -> Response {
    let what = match &view {
        View::Job(id) => Some(format!("job {id} is not known")),
        _ => None,
    };
    match ask(events, |reply| Event::ViewRequested { view, reply }).await {
        Ok(Some(body)) => json(body),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            &what.unwrap_or_else(|| "not found".into()),
        ),
        Err(r) => r,
    }
}

/// Sends the core an event carrying a reply channel and waits for the answer.
async fn ask<T>(
    events: &Events,
    make: impl FnOnce(oneshot::Sender<T>) -> Event,
) -> Result<T, Response> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the scheduler is shutting down",
        )
    };
    events.send(make(tx)).await.map_err(|_| unavailable())?;
    rx.await.map_err(|_| unavailable())
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
