//! The scheduler process: gRPC services (jobs, workers, Flight SQL, health),
//! the HTTP server, the event loop and its timer.

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use keel_proto::pb::job_service_server::JobServiceServer;
use keel_proto::pb::worker_service_server::WorkerServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;

use crate::flight_sql::KeelFlightSql;
use crate::grpc::Handle;
use crate::state::{run_event_loop, Event, SchedulerConfig, SchedulerState};

/// Runs the scheduler, gRPC on `listener` and HTTP (dashboard, API,
/// metrics) on `http` if given, until `shutdown` resolves.
pub async fn run(
    config: SchedulerConfig,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if config.serve.token.is_none() {
        tracing::warn!("no auth token (KEEL_AUTH_TOKEN or --auth-token-file): anyone who can reach this scheduler and its workers can use them");
    }
    let tls = config.serve.tls_config().map_err(anyhow::Error::msg)?;
    let total_cores = Arc::new(AtomicUsize::new(1));
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let state = SchedulerState::new(config.clone(), total_cores.clone());
    let event_loop = tokio::spawn(run_event_loop(state, rx));
    let ticker = {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if tx.send(Event::TimerTicked).await.is_err() {
                    return;
                }
            }
        })
    };
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let http = http.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "dashboard and HTTP API listening");
        }
        let (events, stopping) = (tx.clone(), stopping.clone());
        let token = config.serve.token.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::http::serve(listener, events, token, stopping).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        })
    });
    let check = config.serve.check();
    let connect = config.connect.clone();
    let handle = Handle::new(tx, total_cores, config, stopping);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<JobServiceServer<Handle>>().await;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "scheduler listening");
    }
    let flight_sql = FlightServiceServer::new(KeelFlightSql::new(handle.clone(), connect))
        .max_encoding_message_size(usize::MAX);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    // Every service but health checks the token on every call.
    let result = server
        .add_service(health_service)
        .add_service(InterceptedService::new(
            JobServiceServer::new(handle.clone()),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            WorkerServiceServer::new(handle),
            check.clone(),
        ))
        .add_service(InterceptedService::new(flight_sql, check))
        .serve_with_incoming_shutdown(
            tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
                // Nagle off: Flight sends small messages (a schema, a batch, the
                // end), and Nagle with delayed ACKs held each fetch ~40 ms.
                s.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            }),
            async move {
                shutdown.await;
                tracing::info!("scheduler shutting down");
                // End workers' command streams and clients' watch streams so the server can stop.
                let _ = stopping_tx.send(true);
            },
        )
        .await;
    ticker.abort();
    event_loop.abort();
    if let Some(http) = http {
        http.abort();
    }
    Ok(result?)
}
