//! `keel health --worker URL`: the standard gRPC health check
//! (`grpc.health.v1.Health/Check`), which both Keel processes serve.

use std::time::Duration;

use keel_proto::net::Connect;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::client::source_chain;
use crate::error::ClientError;

pub async fn check_worker(url: &str, connect: &Connect) -> Result<(), ClientError> {
    let unreachable = |message: String| ClientError::Unreachable {
        what: "worker".into(),
        url: url.to_string(),
        message,
    };
    let channel = connect
        .endpoint(url)
        .map_err(unreachable)?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| unreachable(source_chain(&e)))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| unreachable(s.message().to_string()))?;
    match response.into_inner().status() {
        ServingStatus::Serving => {
            println!("ok: worker {url} is serving");
            Ok(())
        }
        other => Err(ClientError::Usage {
            message: format!("worker {url} reports {other:?}"),
        }),
    }
}
