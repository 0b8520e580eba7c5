//! Flight SQL on the scheduler's gRPC port, for ADBC/JDBC drivers and BI
//! tools. A statement (or a prepared statement, without parameters) runs
//! as a job; its FlightInfo lists one endpoint per result partition, and
//! each endpoint's ticket streams that partition through the scheduler from
//! the worker holding it (clients need reach only the scheduler). The job's
//! results are released once every endpoint was read (or after the result
//! TTL). The registered tables (`--table`) are the catalog `keel`, schema
//! `main`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};

use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTables, CommandPreparedStatementQuery, CommandStatementQuery,
    ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use keel_proto::ids::JobId;
use keel_proto::net::Connect;
use keel_proto::pb::{JobCompleted, ResultLocation, SubmitJobRequest};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::Catalog;
use crate::grpc::Handle;

pub const CATALOG: &str = "keel";
pub const SCHEMA: &str = "main";

type DataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Keel");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.build().expect("static SQL info")
});

/// Names one result partition: the job, and where the worker serves it.
#[derive(Clone, PartialEq, Message)]
struct PartitionHandle {
    #[prost(string, tag = "1")]
    job: String,
    #[prost(message, optional, tag = "2")]
    location: Option<ResultLocation>,
}

#[derive(Clone)]
pub struct KeelFlightSql {
    handle: Handle,
    connect: Connect,
    /// Per job: result partitions not yet read.
    unread: Arc<Mutex<HashMap<String, usize>>>,
}

impl KeelFlightSql {
    pub fn new(handle: Handle, connect: Connect) -> Self {
        KeelFlightSql {
            handle,
            connect,
            unread: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Runs `sql` to its end and describes its result partitions.
    async fn run(&self, sql: String) -> Result<FlightInfo, Status> {
        let job = self
            .handle
            .submit(SubmitJobRequest {
                sql: sql.clone(),
                tables: vec![],
            })
            .await?;
        let done = self.handle.finish(job.clone()).await?;
        let schema = result_schema(&done)?;
        let mut info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("cannot encode the result schema: {e}")))?
            .with_descriptor(FlightDescriptor::new_cmd(sql.into_bytes()))
            .with_ordered(true);
        let rows: u64 = done.stages.last().map(|s| s.rows_out).unwrap_or(0);
        if done.copied_to.is_empty() {
            info = info.with_total_records(rows as i64);
        }
        for location in &done.results {
            let handle = PartitionHandle {
                job: job.0.clone(),
                location: Some(location.clone()),
            };
            let ticket = TicketStatementQuery {
                statement_handle: handle.encode_to_vec().into(),
            };
            info = info.with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            );
        }
        if done.results.is_empty() {
            self.handle.release(job).await?;
        } else {
            self.unread
                .lock()
                .expect("unread")
                .insert(job.0, done.results.len());
        }
        Ok(info)
    }

    /// One partition has been streamed: the last one releases the job's results.
    async fn read_one(&self, job: String) {
        let last = {
            let mut unread = self.unread.lock().expect("unread");
            match unread.get_mut(&job) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                Some(_) => {
                    unread.remove(&job);
                    true
                }
                None => false,
            }
        };
        if last {
            let _ = self.handle.release(JobId(job)).await;
        }
    }

    fn registered(&self) -> Vec<(String, String)> {
        let mut tables = self.handle.config.tables.clone();
        tables.sort();
        tables
    }
}

/// The result's schema from the job report (an IPC stream with no batches).
fn result_schema(done: &JobCompleted) -> Result<Schema, Status> {
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&done.schema), None)
            .map_err(|e| Status::internal(format!("cannot decode the result schema: {e}")))?;
    Ok(reader.schema().as_ref().clone())
}

fn schema_ipc(schema: &Schema) -> Result<Vec<u8>, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// A FlightInfo whose one endpoint's ticket is the command itself (for
/// metadata calls answered from the scheduler's own state).
fn metadata_info(command: impl ProstMessageExt, schema: &Schema) -> Result<FlightInfo, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    Ok(FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket)))
}

fn one_batch<E: std::fmt::Display>(
    batch: Result<arrow::array::RecordBatch, E>,
) -> Result<DataStream, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Ok(Box::pin(stream))
}

fn sql_text(handle: &[u8]) -> Result<String, Status> {
    String::from_utf8(handle.to_vec())
        .map_err(|_| Status::invalid_argument("the prepared statement handle is not Keel's"))
}

#[tonic::async_trait]
impl FlightSqlService for KeelFlightSql {
    type FlightService = KeelFlightSql;

    /// The token is checked on every call (the interceptor), so the
    /// handshake only answers; it hands back the bearer header it was given.
    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let auth = request.metadata().get("authorization").cloned();
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: Default::default(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        if let Some(auth) = auth {
            response.metadata_mut().insert("authorization", auth);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Ok(Response::new(self.run(query.query).await?))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let sql = sql_text(&query.prepared_statement_handle)?;
        Ok(Response::new(self.run(sql).await?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let handle = PartitionHandle::decode(ticket.statement_handle)
            .map_err(|_| Status::invalid_argument("not a Keel result ticket"))?;
        let location = handle
            .location
            .ok_or_else(|| Status::invalid_argument("a result ticket without a location"))?;
        let channel = self
            .connect
            .endpoint(&location.flight_url)
            .map_err(Status::internal)?
            .connect()
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "cannot reach the worker holding this result at {}: {e}",
                    location.flight_url
                ))
            })?;
        let mut client = FlightServiceClient::with_interceptor(channel, self.connect.interceptor())
            .max_decoding_message_size(usize::MAX);
        let upstream = client
            .do_get(Ticket::new(location.ticket))
            .await?
            .into_inner();
        // The partition's batches pass through as they are; its end counts it read.
        let this = self.clone();
        let job = handle.job;
        let counted = futures::stream::once(async move {
            this.read_one(job).await;
            None
        })
        .filter_map(futures::future::ready);
        let stream = upstream.chain(counted);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let graph = self
            .handle
            .plan(SubmitJobRequest {
                sql: query.query.clone(),
                tables: vec![],
            })
            .await?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: query.query.into_bytes().into(),
            dataset_schema: schema_ipc(&graph.output_schema)?.into(),
            parameter_schema: Default::default(),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        Ok(Response::new(metadata_info(query, &schema)?))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        Ok(Response::new(one_batch(
            query.into_builder(&SQL_INFO).build(),
        )?))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        Ok(Response::new(metadata_info(query, &schema)?))
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(metadata_info(query, &schema)?))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG, SCHEMA);
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        Ok(Response::new(metadata_info(query, &schema)?))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let include_schema = query.include_schema;
        let tables = self.registered();
        let allowed = self.handle.config.allowed.clone();
        // Reading footers is blocking work.
        let schemas = tokio::task::spawn_blocking(move || {
            let mut catalog = Catalog::new(tables.iter().cloned().collect()).with_allowed(allowed);
            tables
                .into_iter()
                .map(|(name, path)| {
                    let schema = if include_schema {
                        catalog
                            .load(&[path])
                            .map(|t| t.schema.clone())
                            .map_err(|e| e.to_status())?
                    } else {
                        Schema::empty()
                    };
                    Ok::<_, Status>((name, schema))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let mut builder = query.into_builder();
        for (name, schema) in schemas {
            builder
                .append(CATALOG, SCHEMA, name, "TABLE", &schema)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(Response::new(one_batch(builder.build())?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
