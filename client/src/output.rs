//! Printing results as a table, CSV or JSON.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::error::ClientError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

pub fn print(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    out: &mut dyn Write,
) -> Result<(), ClientError> {
    let err = |e: arrow::error::ArrowError| ClientError::Protocol {
        message: format!("formatting results: {e}"),
    };
    let io = |e: std::io::Error| ClientError::Io {
        path: "stdout".into(),
        source: e,
    };
    match format {
        Format::Table => {
            let table = if batches.is_empty() {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                    schema.clone(),
                )])
                .map_err(err)?
            } else {
                arrow::util::pretty::pretty_format_batches(batches).map_err(err)?
            };
            writeln!(out, "{table}").map_err(io)?;
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(err)?;
            }
            for b in batches {
                w.write(b).map_err(err)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs).map_err(err)?;
            w.finish().map_err(err)?;
            writeln!(out).map_err(io)?;
        }
    }
    Ok(())
}
