//! Arrow Flight service: `do_get` streams one partition of one map task's
//! output (shuffle data or final results), named by a [`PartitionTicket`].

use std::path::PathBuf;
use std::pin::Pin;

use arrow::ipc::reader::StreamReader;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt};
use keel_proto::task::{decode, PartitionTicket};
use tonic::{Request, Response, Status, Streaming};

use crate::shuffle::{partition_path, row_range};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct KeelFlight {
    pub work_dir: PathBuf,
}

#[tonic::async_trait]
impl FlightService for KeelFlight {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoExchangeStream = BoxStream<FlightData>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket: PartitionTicket = decode(&request.into_inner().ticket)
            .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
        let path = partition_path(&self.work_dir, &ticket);
        let file = std::fs::File::open(&path).map_err(|e| {
            Status::not_found(format!(
                "no output for {} stage {} task {} partition {}: {e}",
                ticket.job, ticket.stage.0, ticket.map_task, ticket.partition
            ))
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let reader = match StreamReader::try_new(std::io::BufReader::new(file), None) {
                Ok(r) => r,
                Err(e) => {
                    let _ = tx.blocking_send(Err(FlightError::Arrow(e)));
                    return;
                }
            };
            for batch in row_range(reader, ticket.rows) {
                if tx.blocking_send(batch.map_err(FlightError::Arrow)).is_err() {
                    return;
                }
            }
        });
        let batches = tokio_stream::wrappers::ReceiverStream::new(rx);
        let shown = path.display().to_string();
        let stream = FlightDataEncoderBuilder::new()
            .build(batches)
            .map_err(move |e| Status::internal(format!("streaming {shown}: {e}")));
        Ok(Response::new(stream.boxed()))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}
