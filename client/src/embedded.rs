//! An embedded cluster: a scheduler and N workers in this process, still
//! talking gRPC and Flight over loopback, so the laptop path is the cluster path.

use std::time::Duration;

use keel_scheduler::state::SchedulerConfig;
use keel_worker::service::{default_memory_limit, WorkerConfig};
use tokio::sync::watch;

use crate::client::KeelClient;
use crate::error::ClientError;

pub struct EmbeddedCluster {
    pub url: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _work_dir: tempfile::TempDir,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl EmbeddedCluster {
    /// Starts a scheduler and `workers` workers with `cores` task slots each,
    /// and waits until every worker has registered.
    pub async fn start(workers: usize, cores: usize) -> Result<Self, ClientError> {
        let io = |path: &str, e: std::io::Error| ClientError::Io {
            path: path.to_string(),
            source: e,
        };
        let work_dir = tempfile::Builder::new()
            .prefix("keel-embedded-")
            .tempdir()
            .map_err(|e| io("temp dir", e))?;
        let (stop, rx) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| io("127.0.0.1:0", e))?;
        let url = format!(
            "http://{}",
            listener.local_addr().map_err(|e| io("listener", e))?
        );
        let mut tasks = vec![];
        let srx = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = keel_scheduler::server::run(
                SchedulerConfig::default(),
                listener,
                None,
                stopped(srx),
            )
            .await
            {
                tracing::error!(error = %e, "embedded scheduler failed");
            }
        }));
        let memory_limit = default_memory_limit() / workers.max(1);
        for i in 0..workers {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| io("127.0.0.1:0", e))?;
            let config = WorkerConfig {
                scheduler_url: url.clone(),
                advertise: None,
                cores,
                memory_limit,
                work_dir: work_dir.path().join(format!("worker-{i}")),
                shuffle_compression: Default::default(),
                connect: Default::default(),
                serve: Default::default(),
                allowed: Default::default(),
            };
            let wrx = rx.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = keel_worker::service::run(config, listener, stopped(wrx)).await {
                    tracing::error!(error = %e, "embedded worker failed");
                }
            }));
        }
        let cluster = EmbeddedCluster {
            url,
            stop,
            tasks,
            _work_dir: work_dir,
        };
        cluster
            .wait_for_workers(workers, Duration::from_secs(20))
            .await?;
        Ok(cluster)
    }

    async fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(client) = KeelClient::connect(&self.url, &Default::default()).await {
                if client.workers().await.map(|w| w.len()).unwrap_or(0) >= n {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ClientError::Unreachable {
                    what: "embedded cluster".into(),
                    url: self.url.clone(),
                    message: format!("{n} workers did not register within {timeout:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}
