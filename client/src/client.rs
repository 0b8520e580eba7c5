//! The Rust client library: submit SQL, follow progress, fetch results.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::Ticket;
use futures::TryStreamExt;
use keel_proto::auth::AddToken;
use keel_proto::net::Connect;
use keel_proto::pb::job_event::Event;
use keel_proto::pb::job_service_client::JobServiceClient;
use keel_proto::pb::{
    CancelJobRequest, ClusterStatusRequest, JobCompleted, ListJobsRequest, StageProgress,
    SubmitJobRequest, TableRef, WatchJobRequest, WorkerSummary,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::error::ClientError;

#[derive(Clone)]
pub struct KeelClient {
    url: String,
    /// The token and CA, for the scheduler and the workers serving results.
    connect: Connect,
    jobs: JobServiceClient<InterceptedService<Channel, AddToken>>,
}

/// A finished query: its schema, its rows (empty for `COPY … TO`) and the job report.
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub report: JobCompleted,
}

impl QueryResult {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

impl KeelClient {
    pub async fn connect(url: &str, connect: &Connect) -> Result<Self, ClientError> {
        let unreachable = |message: String| ClientError::Unreachable {
            what: "scheduler".into(),
            url: url.to_string(),
            message,
        };
        let endpoint = connect
            .endpoint(url)
            .map_err(unreachable)?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| unreachable(source_chain(&e)))?;
        let jobs = JobServiceClient::with_interceptor(channel, connect.interceptor())
            .max_decoding_message_size(64 << 20);
        Ok(KeelClient {
            url: url.to_string(),
            connect: connect.clone(),
            jobs,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn submit(
        &self,
        sql: &str,
        tables: &[(String, String)],
    ) -> Result<String, ClientError> {
        let response = self
            .jobs
            .clone()
            .submit_job(request(sql, tables))
            .await
            .map_err(ClientError::from_status)?;
        Ok(response.into_inner().job_id)
    }

    pub async fn explain(
        &self,
        sql: &str,
        tables: &[(String, String)],
    ) -> Result<String, ClientError> {
        let response = self
            .jobs
            .clone()
            .explain(request(sql, tables))
            .await
            .map_err(ClientError::from_status)?;
        Ok(response.into_inner().plan)
    }

    pub async fn cancel(&self, job_id: &str) -> Result<bool, ClientError> {
        let r = self
            .jobs
            .clone()
            .cancel_job(CancelJobRequest {
                job_id: job_id.into(),
            })
            .await
            .map_err(ClientError::from_status)?;
        Ok(r.into_inner().cancelled)
    }

    pub async fn release(&self, job_id: &str) -> Result<(), ClientError> {
        self.jobs
            .clone()
            .release_job(CancelJobRequest {
                job_id: job_id.into(),
            })
            .await
            .map_err(ClientError::from_status)?;
        Ok(())
    }

    pub async fn workers(&self) -> Result<Vec<WorkerSummary>, ClientError> {
        let r = self
            .jobs
            .clone()
            .cluster_status(ClusterStatusRequest {})
            .await
            .map_err(ClientError::from_status)?;
        Ok(r.into_inner().workers)
    }

    pub async fn jobs(&self) -> Result<Vec<keel_proto::pb::JobSummary>, ClientError> {
        let r = self
            .jobs
            .clone()
            .list_jobs(ListJobsRequest {})
            .await
            .map_err(ClientError::from_status)?;
        Ok(r.into_inner().jobs)
    }

    /// Follows a job to its end, calling `progress` on every update.
    pub async fn wait(
        &self,
        job_id: &str,
        mut progress: impl FnMut(&[StageProgress]),
    ) -> Result<JobCompleted, ClientError> {
        let mut stream = self
            .jobs
            .clone()
            .watch_job(WatchJobRequest {
                job_id: job_id.into(),
            })
            .await
            .map_err(ClientError::from_status)?
            .into_inner();
        while let Some(event) = stream.message().await.map_err(ClientError::from_status)? {
            match event.event {
                Some(Event::Progress(p)) => progress(&p.stages),
                Some(Event::Completed(c)) => {
                    progress(&c.stages);
                    return Ok(c);
                }
                Some(Event::Failed(f)) => {
                    return Err(ClientError::JobFailed { message: f.message })
                }
                None => {}
            }
        }
        Err(ClientError::Unreachable {
            what: "scheduler".into(),
            url: self.url.clone(),
            message: "the job's progress stream ended before the job did".into(),
        })
    }

    /// Fetches a completed job's rows from the workers holding them.
    pub async fn fetch(
        &self,
        report: &JobCompleted,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), ClientError> {
        let schema =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&report.schema), None)
                .map_err(|e| ClientError::Protocol {
                    message: format!("bad result schema: {e}"),
                })?
                .schema();
        let mut batches = vec![];
        for loc in &report.results {
            let unreachable = |message: String| ClientError::Unreachable {
                what: "worker".into(),
                url: loc.flight_url.clone(),
                message,
            };
            let channel = self
                .connect
                .endpoint(&loc.flight_url)
                .map_err(unreachable)?
                .connect()
                .await
                .map_err(|e| unreachable(source_chain(&e)))?;
            let mut flight =
                FlightServiceClient::with_interceptor(channel, self.connect.interceptor())
                    .max_decoding_message_size(usize::MAX);
            let stream = flight
                .do_get(Ticket {
                    ticket: loc.ticket.clone().into(),
                })
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::Unauthenticated => ClientError::from_status(s),
                    _ => unreachable(s.message().to_string()),
                })?
                .into_inner();
            let part: Vec<RecordBatch> =
                FlightRecordBatchStream::new_from_flight_data(stream.map_err(|e| e.into()))
                    .try_collect()
                    .await
                    .map_err(|e| unreachable(e.to_string()))?;
            for b in part {
                batches.push(
                    RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| {
                        ClientError::Protocol {
                            message: e.to_string(),
                        }
                    })?,
                );
            }
        }
        Ok((schema, batches))
    }

    /// Submits, waits, fetches and releases: one query start to finish.
    pub async fn query(
        &self,
        sql: &str,
        tables: &[(String, String)],
        progress: impl FnMut(&[StageProgress]),
    ) -> Result<QueryResult, ClientError> {
        let job = self.submit(sql, tables).await?;
        let report = self.wait(&job, progress).await?;
        let fetched = self.fetch(&report).await;
        let _ = self.release(&job).await;
        let (schema, batches) = fetched?;
        Ok(QueryResult {
            schema,
            batches,
            report,
        })
    }
}

fn request(sql: &str, tables: &[(String, String)]) -> SubmitJobRequest {
    SubmitJobRequest {
        sql: sql.to_string(),
        tables: tables
            .iter()
            .map(|(name, path)| TableRef {
                name: name.clone(),
                path: path.clone(),
            })
            .collect(),
    }
}

/// An error with its causes, e.g. "transport error: Connection refused".
pub fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}
