//! The worker process: serves Flight, registers with the scheduler, follows
//! its command stream, heartbeats, and reports every task's outcome.
//!
//! If the scheduler goes away the worker cancels what it was running (those
//! jobs are gone with the scheduler's state) and registers again, with backoff.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use keel_proto::auth::AddToken;
use keel_proto::ids::JobId;
use keel_proto::net::{Connect, Serve};
use keel_proto::paths::AllowedPaths;
use keel_proto::pb::worker_command::Command;
use keel_proto::pb::worker_service_client::WorkerServiceClient;
use keel_proto::pb::{ConnectRequest, HeartbeatRequest, RegisterWorkerRequest, RunningTask};
use keel_proto::task::{decode, TaskDescriptor};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Server};

use crate::error::{Result, WorkerError};
use crate::flight::KeelFlight;
use crate::input::BroadcastCache;
use crate::memory::MemoryPool;
use crate::runner::{run_task, spill_root, TaskEnv};
use crate::shuffle::{job_dir, ShuffleCompression, ShuffleReader};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub scheduler_url: String,
    /// host:port other workers and clients use to reach this worker.
    pub advertise: Option<String>,
    pub cores: usize,
    pub memory_limit: usize,
    pub work_dir: PathBuf,
    pub shuffle_compression: ShuffleCompression,
    /// The token and CA used to call the scheduler and other workers.
    pub connect: Connect,
    /// The token callers of this worker's Flight service must present, and its TLS identity.
    pub serve: Serve,
    /// Where tasks may read and write (`--allow-path`; empty: anywhere).
    pub allowed: AllowedPaths,
}

/// The scheduler's worker service, every call carrying the token.
type SchedulerClient = WorkerServiceClient<InterceptedService<Channel, AddToken>>;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Tasks running on this worker, by job, so a job can be cancelled.
#[derive(Default)]
struct Running {
    /// Per job, each attempt the worker holds and its cancel flag.
    jobs: Mutex<HashMap<JobId, Vec<(RunningTask, Arc<AtomicBool>)>>>,
}

impl Running {
    fn add(&self, task: &TaskDescriptor) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let held = RunningTask {
            job_id: task.job.0.clone(),
            stage_id: task.attempt.stage().0,
            task: task.attempt.index(),
            attempt: task.attempt.attempt,
        };
        self.jobs
            .lock()
            .expect("running")
            .entry(task.job.clone())
            .or_default()
            .push((held, flag.clone()));
        flag
    }

    fn remove(&self, job: &JobId, flag: &Arc<AtomicBool>) {
        let mut jobs = self.jobs.lock().expect("running");
        if let Some(tasks) = jobs.get_mut(job) {
            tasks.retain(|(_, f)| !Arc::ptr_eq(f, flag));
            if tasks.is_empty() {
                jobs.remove(job);
            }
        }
    }

    fn cancel(&self, job: &JobId) {
        if let Some(tasks) = self.jobs.lock().expect("running").remove(job) {
            tasks
                .iter()
                .for_each(|(_, f)| f.store(true, Ordering::Relaxed));
        }
    }

    fn cancel_all(&self) {
        for (_, tasks) in self.jobs.lock().expect("running").drain() {
            tasks
                .iter()
                .for_each(|(_, f)| f.store(true, Ordering::Relaxed));
        }
    }

    /// The attempts held, for the heartbeat.
    fn held(&self) -> Vec<RunningTask> {
        self.jobs
            .lock()
            .expect("running")
            .values()
            .flatten()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// Runs the worker until `shutdown` resolves.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| WorkerError::io("listener", e))?;
    let advertise = config
        .advertise
        .clone()
        .unwrap_or_else(|| default_advertise(local));
    let flight_url = format!("{}://{advertise}", config.serve.scheme());
    std::fs::create_dir_all(&config.work_dir)
        .map_err(|e| WorkerError::io(config.work_dir.display(), e))?;
    // --memory-limit is everything the process may use (a container's limit).
    let pool =
        MemoryPool::new(keel_proto::size::memory_pool_size(config.memory_limit as u64) as usize);
    // Spill files of a previous life of this worker belong to tasks that are gone.
    let spill = spill_root(&config.work_dir);
    if let Err(e) = std::fs::remove_dir_all(&spill) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %e, dir = %spill.display(), "could not sweep old spill files");
        }
    }
    let env = Arc::new(TaskEnv {
        shuffle_compression: config.shuffle_compression,
        work_dir: config.work_dir.clone(),
        pool: pool.clone(),
        reader: Arc::new(ShuffleReader::new(
            config.work_dir.clone(),
            flight_url.clone(),
            config.connect.clone(),
        )),
        allowed: config.allowed.clone(),
        broadcasts: BroadcastCache::new(pool.clone(), spill),
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FlightServiceServer<KeelFlight>>()
        .await;
    let flight = FlightServiceServer::new(KeelFlight {
        work_dir: config.work_dir.clone(),
    })
    .max_decoding_message_size(usize::MAX)
    .max_encoding_message_size(usize::MAX);
    // Every Flight call (clients fetching results, workers fetching shuffle
    // data) carries the token; health probes stay open.
    let flight = InterceptedService::new(flight, config.serve.check());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = config.serve.tls_config().map_err(WorkerError::Config)? {
        builder = builder
            .tls_config(tls)
            .map_err(|e| WorkerError::Config(format!("TLS: {e}")))?;
    }
    let server = builder
        .add_service(health_service)
        .add_service(flight)
        .serve_with_incoming_shutdown(
            tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |s| {
                // Nagle off: Flight sends small messages (a schema, a batch, the
                // end), and Nagle with delayed ACKs held each fetch ~40 ms.
                s.inspect(|s| {
                    let _ = s.set_nodelay(true);
                })
            }),
            async {
                let _ = stop_rx.await;
            },
        );
    let server = tokio::spawn(server);
    tracing::info!(%flight_url, cores = config.cores, memory_limit = config.memory_limit, "worker serving Flight");

    let running = Arc::new(Running::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(config.cores.max(1)));
    let control = control_loop(
        config.clone(),
        flight_url,
        env,
        pool,
        running.clone(),
        slots,
    );
    tokio::select! {
        _ = shutdown => tracing::info!("worker shutting down"),
        _ = control => {}
    }
    running.cancel_all();
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(())
}

fn default_advertise(local: SocketAddr) -> String {
    if local.ip().is_unspecified() {
        format!("127.0.0.1:{}", local.port())
    } else {
        local.to_string()
    }
}

async fn control_loop(
    config: WorkerConfig,
    flight_url: String,
    env: Arc<TaskEnv>,
    pool: Arc<MemoryPool>,
    running: Arc<Running>,
    slots: Arc<tokio::sync::Semaphore>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match session(&config, &flight_url, &env, &pool, &running, &slots).await {
            Ok(()) => tracing::warn!("scheduler closed the command stream; registering again"),
            Err(e) => tracing::warn!(error = %e, "lost the scheduler; retrying in {backoff:?}"),
        }
        // Jobs of a lost scheduler cannot finish; stop their tasks.
        running.cancel_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// One registration with the scheduler: lasts until its command stream ends.
async fn session(
    config: &WorkerConfig,
    flight_url: &str,
    env: &Arc<TaskEnv>,
    pool: &Arc<MemoryPool>,
    running: &Arc<Running>,
    slots: &Arc<tokio::sync::Semaphore>,
) -> Result<()> {
    let unreachable = |e: &dyn std::fmt::Display| WorkerError::Scheduler {
        url: config.scheduler_url.clone(),
        message: e.to_string(),
    };
    let channel = config
        .connect
        .endpoint(&config.scheduler_url)
        .map_err(|e| unreachable(&e))?
        .connect()
        .await
        .map_err(|e| unreachable(&e))?;
    let mut client =
        WorkerServiceClient::with_interceptor(channel.clone(), config.connect.interceptor());
    let worker_id = client
        .register_worker(RegisterWorkerRequest {
            flight_url: flight_url.to_string(),
            cores: config.cores as u32,
            memory_limit: config.memory_limit as u64,
        })
        .await
        .map_err(|s| unreachable(&s.message()))?
        .into_inner()
        .worker_id;
    tracing::info!(%worker_id, "registered with scheduler");
    let mut commands = client
        .open_commands(ConnectRequest {
            worker_id: worker_id.clone(),
        })
        .await
        .map_err(|s| unreachable(&s.message()))?
        .into_inner();

    let heartbeat = tokio::spawn(heartbeats(
        client.clone(),
        worker_id.clone(),
        pool.clone(),
        running.clone(),
    ));
    let result = loop {
        let command = match commands.message().await {
            Ok(Some(c)) => c,
            Ok(None) => break Ok(()),
            Err(s) => break Err(unreachable(&s.message())),
        };
        match command.command {
            Some(Command::LaunchTask(bytes)) => match decode::<TaskDescriptor>(&bytes) {
                Ok(task) => launch(
                    client.clone(),
                    worker_id.clone(),
                    env.clone(),
                    running.clone(),
                    slots.clone(),
                    task,
                ),
                Err(e) => tracing::error!(error = %e, "scheduler sent a malformed task"),
            },
            Some(Command::CancelJob(job)) => {
                let job = JobId(job);
                running.cancel(&job);
                env.broadcasts.remove_job(&job);
            }
            Some(Command::RemoveJob(job)) => {
                let job = JobId(job);
                running.cancel(&job);
                env.broadcasts.remove_job(&job);
                let dir = job_dir(&config.work_dir, &job);
                if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(error = %e, dir = %dir.display(), "could not remove job files");
                    }
                }
            }
            None => {}
        }
    };
    heartbeat.abort();
    result
}

fn launch(
    mut client: SchedulerClient,
    worker_id: String,
    env: Arc<TaskEnv>,
    running: Arc<Running>,
    slots: Arc<tokio::sync::Semaphore>,
    task: TaskDescriptor,
) {
    let job = task.job.clone();
    let cancelled = running.add(&task);
    tokio::spawn(async move {
        // The scheduler sends at most --cores tasks; the semaphore makes that a guarantee.
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        let pool = env.pool.clone();
        let mut status = run_task(env, task, cancelled.clone()).await;
        running.remove(&job, &cancelled);
        status.worker_memory_used = pool.used() as u64;
        status.worker_memory_pinned = pool.pinned() as u64;
        // Reported even when cancelled: the scheduler frees the task's slot.
        status.worker_id = worker_id;
        if let Err(e) = client.report_task(status).await {
            tracing::warn!(error = %e.message(), "could not report a task to the scheduler");
        }
    });
}

async fn heartbeats(
    mut client: SchedulerClient,
    worker_id: String,
    pool: Arc<MemoryPool>,
    running: Arc<Running>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tick.tick().await;
        let held = running.held();
        let request = HeartbeatRequest {
            worker_id: worker_id.clone(),
            memory_used: pool.used() as u64,
            memory_pinned: pool.pinned() as u64,
            running_tasks: held.len() as u32,
            running: held,
        };
        if let Err(e) = client.heartbeat(request).await {
            tracing::debug!(error = %e.message(), "heartbeat failed");
        }
    }
}

/// The memory a worker may use by default: the cgroup limit, or total memory.
pub fn default_memory_limit() -> usize {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let Ok(sys) = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()),
    ) else {
        return 4 << 30;
    };
    let total = sys
        .cgroup_limits()
        .map(|c| c.total_memory)
        .unwrap_or_else(|| sys.total_memory()) as usize;
    total.max(256 << 20)
}
