use super::*;

use arrow::datatypes::{DataType, Field};
use keel_proto::expr::Expr;
use keel_proto::pb::PartitionStats;
use keel_proto::plan::Sink;

use crate::adaptive::tests::join_stage;
use crate::planner::stages::{ScanTask, TaskSource};
use crate::skew::SkewConfig;

fn scan_stage(id: u32, maps: usize) -> StagePlan {
    let schema = Schema::new(vec![Field::new("k", DataType::Int64, true)]);
    StagePlan {
        id: StageId(id),
        plan: PlanNode::Scan {
            splits: vec![],
            schema,
            predicate: None,
        },
        sink: Sink::Hash {
            keys: vec![Expr::Column(0)],
            partitions: 4,
        },
        inputs: vec![],
        tasks: TaskSource::Scan(
            (0..maps)
                .map(|i| ScanTask {
                    splits: vec![FileSplit {
                        path: format!("/{id}/{i}.parquet"),
                        row_groups: vec![0],
                    }],
                    bytes: 1,
                })
                .collect(),
        ),
        estimated_rows: 0,
        estimated_bytes: 0,
    }
}

fn join_job() -> Job {
    let graph = StageGraph {
        stages: vec![scan_stage(1, 2), scan_stage(2, 1), join_stage()],
        output_schema: Schema::empty(),
        copy_to: None,
    };
    Job::new(JobId("j".into()), String::new(), graph)
}

fn config() -> AdaptiveConfig {
    AdaptiveConfig {
        cores: 2,
        min_task_bytes: 1 << 20,
        max_task_bytes: 1 << 20,
        broadcast_bytes: 0,
        skew: Some(SkewConfig {
            factor: 4.0,
            min_bytes: 1 << 20,
        }),
    }
}

/// Runs task `t` of stage `s` on `worker` to success with these partitions.
fn finish(job: &mut Job, s: usize, t: usize, worker: &str, parts: &[(u64, u64)]) {
    let id = TaskId {
        stage: job.stages[s].plan.id,
        index: t as u32,
    };
    let descriptor = job.start(id, &WorkerId(worker.into()), 0);
    let stats = TaskSucceeded {
        partitions: parts
            .iter()
            .enumerate()
            .map(|(p, &(rows, bytes))| PartitionStats {
                partition: p as u32,
                rows,
                bytes,
            })
            .collect(),
        ..Default::default()
    };
    let url = format!("http://{worker}");
    let outcome = job.task_succeeded(descriptor.attempt, url, stats, &config());
    assert_eq!(outcome, Outcome::Progressed);
}

#[test]
fn a_recomputed_map_output_reruns_the_splits_that_read_row_ranges_of_it() {
    let mut job = join_job();
    job.advance(&config());
    // Left map 0 (on worker a) holds a skewed partition 1 of 8 MiB; map 1 (on b) is small.
    finish(
        &mut job,
        0,
        0,
        "a",
        &[(10, 1000), (8000, 8 << 20), (10, 1000), (10, 1000)],
    );
    finish(&mut job, 0, 1, "b", &[(10, 1000); 4]);
    finish(&mut job, 1, 0, "b", &[(10, 1000); 4]);
    let splits: Vec<usize> = (0..job.stages[2].tasks.len())
        .filter(|&t| job.stages[2].tasks[t].spec.skew_partition == Some(1))
        .collect();
    assert!(splits.len() >= 4, "{} splits", splits.len());
    assert!(job
        .notes
        .iter()
        .any(|n| n.contains("partition 1 is skewed")));
    // Two splits finish on worker b; then worker a, holding left map 0, is lost.
    for &t in &splits[..2] {
        finish(&mut job, 2, t, "b", &[(1, 1)]);
    }
    job.worker_lost(&WorkerId("a".into()));
    assert!(matches!(job.stages[0].tasks[0].state, TaskState::Pending));
    // Every split reads a row range of map 0, so the finished ones run again.
    for &t in &splits {
        assert!(matches!(job.stages[2].tasks[t].state, TaskState::Pending));
    }
    assert!(job.retries.iter().any(|r| r.contains("read a row range")));
}
