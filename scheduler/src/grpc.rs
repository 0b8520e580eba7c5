//! gRPC handlers: unpack the request, call the domain code or send the
//! event loop an event, map errors to a `Status`. Nothing else.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::Stream;
use keel_proto::ids::{JobId, WorkerId};
use keel_proto::pb::job_service_server::JobService;
use keel_proto::pb::worker_service_server::WorkerService;
use keel_proto::pb::*;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::catalog::Catalog;
use crate::error::SchedulerError;
use crate::job::Job;
use crate::planner::stages::StageGraph;
use crate::planner::PlannerConfig;
use crate::state::{Event, SchedulerConfig};

#[derive(Clone)]
pub struct Handle {
    pub events: mpsc::Sender<Event>,
    pub total_cores: Arc<AtomicUsize>,
    pub config: SchedulerConfig,
    next_job: Arc<AtomicU64>,
    /// Becomes true when the scheduler shuts down: long-lived streams end then,
    /// or the server would wait on them forever.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl Handle {
    pub fn new(
        events: mpsc::Sender<Event>,
        total_cores: Arc<AtomicUsize>,
        config: SchedulerConfig,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Handle {
            events,
            total_cores,
            config,
            next_job: Arc::new(AtomicU64::new(1)),
            stopping,
        }
    }

    async fn send(&self, event: Event) -> Result<(), Status> {
        self.events
            .send(event)
            .await
            .map_err(|_| SchedulerError::ShuttingDown.to_status())
    }

    /// A stream that ends when the scheduler starts shutting down.
    fn until_stopping<S: Stream + Send + 'static>(
        &self,
        stream: S,
    ) -> impl Stream<Item = S::Item> + Send + 'static {
        let mut stopping = self.stopping.clone();
        futures::StreamExt::take_until(stream, async move {
            let _ = stopping.wait_for(|s| *s).await;
        })
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Event) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await
            .map_err(|_| SchedulerError::ShuttingDown.to_status())
    }

    /// Parses, binds, optimizes and plans a query (reads Parquet metadata, so off the async threads).
    pub(crate) async fn plan(&self, request: SubmitJobRequest) -> Result<StageGraph, Status> {
        let config = PlannerConfig {
            total_cores: self.total_cores.load(Ordering::Relaxed).max(1),
            shuffle_partitions: self.config.shuffle_partitions,
            broadcast_bytes: self.config.broadcast_bytes,
            split_bytes: self.config.split_bytes,
            tree_fan_in: self.config.tree_fan_in,
        };
        let registered = self.config.tables.clone();
        let allowed = self.config.allowed.clone();
        tokio::task::spawn_blocking(move || {
            // The request's tables override the registered ones of the same name.
            let tables: HashMap<String, String> = registered
                .into_iter()
                .chain(request.tables.into_iter().map(|t| (t.name, t.path)))
                .collect();
            let mut catalog = Catalog::new(tables).with_allowed(allowed.clone());
            let bound = crate::sql::bind(&request.sql, &mut catalog)?;
            if let Some(dir) = &bound.copy_to {
                allowed
                    .check(std::path::Path::new(dir), "COPY output")
                    .map_err(SchedulerError::bind)?;
            }
            let logical = crate::optimizer::optimize(bound.plan);
            Ok::<_, SchedulerError>(crate::planner::plan(&logical, bound.copy_to, config))
        })
        .await
        .map_err(|e| Status::internal(format!("planning panicked: {e}")))?
        .map_err(|e| e.to_status())
    }

    /// Plans and submits a query; returns its job's ID.
    pub(crate) async fn submit(&self, request: SubmitJobRequest) -> Result<JobId, Status> {
        let sql = request.sql.clone();
        let graph = self.plan(request).await?;
        let n = self.next_job.fetch_add(1, Ordering::Relaxed);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let id = JobId(format!("job-{n}-{stamp:x}"));
        let job = Job::new(id.clone(), sql, graph);
        self.send(Event::JobSubmitted { job: Box::new(job) })
            .await?;
        Ok(id)
    }

    /// Follows a job to its end: its completion report, or its failure as a status.
    pub(crate) async fn finish(&self, job: JobId) -> Result<JobCompleted, Status> {
        let (tx, mut rx) = mpsc::channel(256);
        self.ask(|reply| Event::WatchRequested {
            job: job.clone(),
            events: tx,
            reply,
        })
        .await?
        .map_err(|e| e.to_status())?;
        while let Some(event) = rx.recv().await {
            match event?.event {
                Some(job_event::Event::Completed(done)) => return Ok(done),
                Some(job_event::Event::Failed(failed)) => {
                    return Err(Status::failed_precondition(failed.message))
                }
                _ => {}
            }
        }
        Err(SchedulerError::ShuttingDown.to_status())
    }

    /// Deletes a finished job's results on the workers.
    pub(crate) async fn release(&self, job: JobId) -> Result<bool, Status> {
        self.ask(|reply| Event::ReleaseRequested { job, reply })
            .await?
            .map_err(|e| e.to_status())
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, Status>> + Send>>;
type CommandStream = Pin<Box<dyn Stream<Item = Result<WorkerCommand, Status>> + Send>>;

fn job_id(id: &str) -> Result<JobId, Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("job_id is required"));
    }
    Ok(JobId(id.to_string()))
}

#[tonic::async_trait]
impl JobService for Handle {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let id = self.submit(request.into_inner()).await?;
        Ok(Response::new(SubmitJobResponse { job_id: id.0 }))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job = job_id(&request.into_inner().job_id)?;
        let (tx, rx) = mpsc::channel(256);
        self.ask(|reply| Event::WatchRequested {
            job,
            events: tx,
            reply,
        })
        .await?
        .map_err(|e| e.to_status())?;
        Ok(Response::new(Box::pin(
            self.until_stopping(ReceiverStream::new(rx)),
        )))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let job = job_id(&request.into_inner().job_id)?;
        let cancelled = self
            .ask(|reply| Event::CancelRequested { job, reply })
            .await?
            .map_err(|e| e.to_status())?;
        Ok(Response::new(CancelJobResponse { cancelled }))
    }

    async fn release_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let job = job_id(&request.into_inner().job_id)?;
        let released = self.release(job).await?;
        Ok(Response::new(CancelJobResponse {
            cancelled: released,
        }))
    }

    async fn explain(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let graph = self.plan(request.into_inner()).await?;
        Ok(Response::new(ExplainResponse {
            plan: graph.explain(self.config.skew.is_some()),
        }))
    }

    async fn list_jobs(
        &self,
        _: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let jobs = self.ask(|reply| Event::JobsListed { reply }).await?;
        Ok(Response::new(ListJobsResponse { jobs }))
    }

    async fn cluster_status(
        &self,
        _: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        Ok(Response::new(
            self.ask(|reply| Event::ClusterStatusRequested { reply })
                .await?,
        ))
    }
}

#[tonic::async_trait]
impl WorkerService for Handle {
    async fn register_worker(
        &self,
        request: Request<RegisterWorkerRequest>,
    ) -> Result<Response<RegisterWorkerResponse>, Status> {
        let r = request.into_inner();
        if r.flight_url.is_empty() {
            return Err(Status::invalid_argument("flight_url is required"));
        }
        let id = self
            .ask(|reply| Event::WorkerRegistered {
                flight_url: r.flight_url,
                cores: r.cores,
                memory_limit: r.memory_limit,
                reply,
            })
            .await?;
        Ok(Response::new(RegisterWorkerResponse { worker_id: id.0 }))
    }

    type OpenCommandsStream = CommandStream;

    async fn open_commands(
        &self,
        request: Request<ConnectRequest>,
    ) -> Result<Response<Self::OpenCommandsStream>, Status> {
        let worker = WorkerId(request.into_inner().worker_id);
        let (tx, rx) = mpsc::channel::<WorkerCommand>(4096);
        let watch = tx.clone();
        let known = self
            .ask(|reply| Event::WorkerConnected {
                worker: worker.clone(),
                commands: tx,
                reply,
            })
            .await?;
        if !known {
            return Err(SchedulerError::UnknownWorker { worker: worker.0 }.to_status());
        }
        // The stream is dropped when the worker's connection goes: that worker is lost at once.
        let events = self.events.clone();
        tokio::spawn(async move {
            watch.closed().await;
            let _ = events.send(Event::WorkerDisconnected { worker }).await;
        });
        let stream = self.until_stopping(futures::StreamExt::map(ReceiverStream::new(rx), Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let known = self
            .ask(|reply| Event::HeartbeatReceived {
                worker: WorkerId(r.worker_id),
                memory_used: r.memory_used,
                memory_pinned: r.memory_pinned,
                running: r.running,
                reply,
            })
            .await?;
        Ok(Response::new(HeartbeatResponse { known }))
    }

    async fn report_task(
        &self,
        request: Request<TaskStatus>,
    ) -> Result<Response<ReportTaskResponse>, Status> {
        let status = request.into_inner();
        if status.job_id.is_empty() || status.result.is_none() {
            return Err(Status::invalid_argument("job_id and result are required"));
        }
        self.send(Event::TaskReported(status)).await?;
        Ok(Response::new(ReportTaskResponse {}))
    }
}
