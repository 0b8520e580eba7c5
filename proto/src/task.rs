//! The task descriptor a worker runs, and the tickets that name shuffle data.

use serde::{Deserialize, Serialize};

use crate::ids::{AttemptId, JobId, StageId};
use crate::plan::{PlanNode, Sink};
use crate::ProtoError;

/// Where to fetch one map task's output and which of its partitions to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchSpec {
    pub flight_url: String,
    pub stage: StageId,
    pub map_task: u32,
    pub attempt: u32,
    pub partitions: Vec<u32>,
    /// Only rows `start..end` of the (single) partition: a skewed partition
    /// is split between tasks by row ranges of its map outputs.
    pub rows: Option<(u64, u64)>,
}

/// Everything one `ShuffleRead` leaf reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShuffleInput {
    pub fetches: Vec<FetchSpec>,
    /// Every task of the stage reads all of it (a broadcast join side):
    /// the worker fetches it once and shares it between those tasks.
    pub broadcast: bool,
    /// Bytes the fetches hold, as their map tasks reported them (sizes the
    /// task's in-flight buffer: a small input does not reserve a big one).
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDescriptor {
    pub job: JobId,
    pub attempt: AttemptId,
    pub plan: PlanNode,
    pub sink: Sink,
    pub inputs: Vec<ShuffleInput>,
}

/// Names one partition of one map task's output; the Flight ticket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionTicket {
    pub job: JobId,
    pub stage: StageId,
    pub map_task: u32,
    pub attempt: u32,
    pub partition: u32,
    /// Only rows `start..end` of the partition (see [`FetchSpec::rows`]).
    pub rows: Option<(u64, u64)>,
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ProtoError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtoError> {
    Ok(bincode::serde::decode_from_slice(bytes, config())?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{BinaryOp, Expr, ScalarValue};
    use crate::plan::FileSplit;
    use arrow_schema::{DataType, Field, Schema};

    #[test]
    fn descriptor_round_trips_through_bincode() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let plan = PlanNode::Filter {
            input: Box::new(PlanNode::Scan {
                splits: vec![FileSplit {
                    path: "/x.parquet".into(),
                    row_groups: vec![0, 2],
                }],
                schema,
                predicate: None,
            }),
            predicate: Expr::binary(
                BinaryOp::Gt,
                Expr::Column(0),
                Expr::Literal(ScalarValue::Int64(3)),
            ),
        };
        let task = TaskDescriptor {
            job: JobId("j1".into()),
            attempt: AttemptId::new(1, 4, 0),
            plan,
            sink: Sink::Hash {
                keys: vec![Expr::Column(0)],
                partitions: 8,
            },
            inputs: vec![],
        };
        let bytes = encode(&task).unwrap();
        let back: TaskDescriptor = decode(&bytes).unwrap();
        assert_eq!(back, task);
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let err = decode::<TaskDescriptor>(&[0xff, 0x01]).unwrap_err();
        assert!(err.to_string().contains("malformed task descriptor"));
    }
}
