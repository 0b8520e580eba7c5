//! `keel demo`: story 1 end to end on an embedded cluster.

use std::time::Instant;

use arrow::array::{Array, Float64Array, Int64Array};

use crate::cli::run_query;
use crate::client::KeelClient;
use crate::datagen::{generate, ImbalancedJoin};
use crate::embedded::EmbeddedCluster;
use crate::error::ClientError;

pub const STORY1_QUERY: &str =
    "SELECT df2_group, bucket, group1, group2, group3, group4, sum(value) AS value \
FROM df1 JOIN df2 USING (key) GROUP BY df2_group, bucket, group1, group2, group3, group4";

pub async fn run(scale: f64, workers: usize) -> Result<(), ClientError> {
    let dir = tempfile::Builder::new()
        .prefix("keel-demo-")
        .tempdir()
        .map_err(|e| ClientError::Io {
            path: "temp dir".into(),
            source: e,
        })?;
    let started = Instant::now();
    let g = generate(&ImbalancedJoin::new(scale, 42), dir.path())?;
    println!(
        "generated story 1 at scale {scale}: {} df1 rows, {} df2 rows ({:.1}s)",
        g.df1_rows,
        g.df2_rows,
        started.elapsed().as_secs_f64()
    );
    let cluster = EmbeddedCluster::start(workers.max(1), 1).await?;
    let client = KeelClient::connect(&cluster.url, &Default::default()).await?;
    let tables = vec![
        (
            "df1".to_string(),
            dir.path().join("df1").display().to_string(),
        ),
        (
            "df2".to_string(),
            dir.path().join("df2").display().to_string(),
        ),
    ];
    let sql =
        format!("SELECT count(*) AS groups, sum(value) AS total FROM ({STORY1_QUERY}) AS story1");
    let started = Instant::now();
    let result = run_query(&client, &sql, &tables).await;
    cluster.shutdown().await;
    let result = result?;
    let elapsed = started.elapsed();
    let batch = result
        .batches
        .first()
        .ok_or_else(|| ClientError::Protocol {
            message: "the demo query returned no rows".into(),
        })?;
    let groups = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .map(|a| a.value(0))
        .unwrap_or(0);
    let total = batch
        .column(1)
        .as_any()
        .downcast_ref::<Float64Array>()
        .filter(|a| !a.is_null(0))
        .map(|a| a.value(0))
        .unwrap_or(0.0);
    println!("story 1 on {workers} embedded workers: {groups} output groups, sum(value) = {total:.3}, {:.2}s", elapsed.as_secs_f64());
    println!(
        "{:<6} {:<28} {:>6} {:>12} {:>10} {:>9}",
        "stage", "operators", "tasks", "rows out", "peak mem", "time"
    );
    for s in &result.report.stages {
        println!(
            "{:<6} {:<28} {:>6} {:>12} {:>10} {:>8.2}s",
            s.stage_id,
            s.name,
            s.tasks_total,
            s.rows_out,
            keel_scheduler::planner::stages::human_bytes(s.peak_memory),
            s.elapsed_ms as f64 / 1000.0
        );
    }
    for note in &result.report.notes {
        println!("note: {note}");
    }
    Ok(())
}
