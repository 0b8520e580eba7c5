//! Aggregate accumulators, updated a batch at a time from group ids.
//!
//! Each holds one slot per group. In `Partial` mode it reads raw values and
//! emits its state; in `Final` mode it merges states; in `Single` mode it
//! reads raw values and emits the final value. The planner casts raw
//! arguments to the accumulator's type (sum of ints to Int64, avg to Float64).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BinaryArray, Float64Array, Int64Array,
    PrimitiveArray, StringArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use arrow_row::{RowConverter, SortField};
use keel_proto::plan::{AggExpr, AggFunc, AggMode};

use crate::error::{ArrowContext, Result, WorkerError};

pub trait Accumulator: Send {
    /// `inputs` are the raw argument (one column) or, when merging, the state columns.
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()>;
    /// Partial state columns; resets the accumulator.
    fn state(&mut self) -> Result<Vec<ArrayRef>>;
    /// The final value per group; resets the accumulator.
    fn finish(&mut self) -> Result<ArrayRef>;
    /// Approximate heap bytes held.
    fn size(&self) -> usize;
}

/// Creates the accumulator for `agg` over inputs of `input_types` (the
/// argument, further arguments and ORDER BY keys for raw input, the state
/// columns when merging; ignored for counts).
pub fn create(
    agg: &AggExpr,
    mode: AggMode,
    input_types: &[DataType],
) -> Result<Box<dyn Accumulator>> {
    let (func, distinct, params) = (agg.func, agg.distinct, &agg.params[..]);
    let input_type = input_types.first().unwrap_or(&DataType::Int64);
    let merge = matches!(mode, AggMode::Final | AggMode::Merge);
    if distinct && !matches!(func, AggFunc::Count | AggFunc::Sum | AggFunc::Avg) {
        // The plain aggregate reads the distinct rows, raw.
        let raw: Vec<DataType> = input_types
            .iter()
            .map(super::quantiles::item_type)
            .collect();
        let plain = AggExpr {
            distinct: false,
            ..agg.clone()
        };
        let inner = create(&plain, AggMode::Single, &raw)?;
        return Ok(Box::new(super::distinct::DistinctRows::new(
            inner,
            merge,
            input_types,
        )?));
    }
    if distinct {
        return match (func, input_type) {
            (AggFunc::Count, _) => Ok(Box::new(CountDistinct::new(input_type, merge)?)),
            // Merging (a spilled table's states): sets of values, tagged with their type.
            (
                AggFunc::Sum | AggFunc::Avg,
                DataType::Int64 | DataType::Float64 | DataType::Binary,
            ) => Ok(Box::new(SumDistinct {
                float: *input_type == DataType::Float64,
                avg: func == AggFunc::Avg,
                merge,
                seen: HashSet::new(),
                int_sums: vec![],
                float_sums: vec![],
                counts: vec![],
            })),
            _ => Err(WorkerError::eval(format!(
                "{}(DISTINCT …) over {input_type} in {mode:?} mode is not supported",
                func.name()
            ))),
        };
    }
    Ok(match func {
        AggFunc::CountStar | AggFunc::Count => Box::new(Count {
            counts: vec![],
            star: func == AggFunc::CountStar && !merge,
            merge,
        }),
        AggFunc::Sum => match input_type {
            DataType::Int64 => Box::new(Sum::<Int64Type>::new(input_type)),
            DataType::Float64 => Box::new(Sum::<Float64Type>::new(input_type)),
            DataType::Decimal128(..) => Box::new(Sum::<Decimal128Type>::new(input_type)),
            other => return Err(WorkerError::eval(format!("sum() over {other}"))),
        },
        AggFunc::Avg => Box::new(Avg {
            sums: vec![],
            counts: vec![],
            merge,
        }),
        AggFunc::ApproxCountDistinct => Box::new(super::sketches::ApproxCountDistinct::new(merge)),
        AggFunc::ThetaSketch { lg_k } => Box::new(super::sketches::ThetaAgg::new(lg_k, !merge)),
        AggFunc::ThetaUnionAgg => Box::new(super::sketches::ThetaAgg::new(12, false)),
        AggFunc::ThetaIntersectAgg => Box::new(super::sketches::ThetaIntersectAgg::new()),
        AggFunc::ApproxQuantile {
            q_millionths,
            integer,
        } => Box::new(super::sketches::ApproxQuantile::new(
            q_millionths as f64 / 1e6,
            integer,
            merge,
        )),
        AggFunc::MixtureStats => Box::new(super::mixture_stats::MixtureStats::new(params, merge)?),
        AggFunc::VarSamp | AggFunc::VarPop | AggFunc::StddevSamp | AggFunc::StddevPop => {
            Box::new(super::statistics::Variance::new(func, merge))
        }
        AggFunc::CovarSamp
        | AggFunc::CovarPop
        | AggFunc::Corr
        | AggFunc::RegrSlope
        | AggFunc::RegrIntercept
        | AggFunc::RegrR2 => Box::new(super::statistics::Covariance::new(func, merge)),
        AggFunc::QuantileCont { q_bits } => Box::new(super::quantiles::QuantileCont::new(
            f64::from_bits(q_bits),
            merge,
        )),
        AggFunc::QuantileDisc { num, den } => Box::new(super::quantiles::Collected::new(
            super::quantiles::Pick::Disc { num, den },
            merge,
            input_type,
        )?),
        AggFunc::Mode => Box::new(super::quantiles::Collected::new(
            super::quantiles::Pick::Mode,
            merge,
            input_type,
        )?),
        AggFunc::StringAgg => Box::new(super::string_agg::StringAgg::new(
            agg.separator.as_deref().unwrap_or(","),
            agg.order_by.iter().map(|k| k.options()).collect(),
            merge,
        )),
        AggFunc::ArgMin | AggFunc::ArgMax => {
            let key_type = input_types.get(1).ok_or_else(|| {
                WorkerError::eval(format!("{}() takes two arguments", func.name()))
            })?;
            Box::new(super::arg_extreme::ArgExtreme::new(
                func == AggFunc::ArgMin,
                input_type,
                key_type,
            )?)
        }
        AggFunc::BoolAnd | AggFunc::BoolOr => {
            Box::new(super::folds::BoolFold::new(func == AggFunc::BoolAnd))
        }
        AggFunc::Product => Box::new(super::folds::Product::default()),
        AggFunc::First => Box::new(First {
            merge,
            picks: vec![],
            sources: vec![],
            data_type: input_type.clone(),
        }),
        AggFunc::Min | AggFunc::Max => {
            let is_min = func == AggFunc::Min;
            match input_type {
                DataType::Int32 => Box::new(MinMax::<Int32Type>::new(is_min, input_type)),
                DataType::Int64 => Box::new(MinMax::<Int64Type>::new(is_min, input_type)),
                DataType::Float64 => Box::new(MinMax::<Float64Type>::new(is_min, input_type)),
                DataType::Decimal128(..) => {
                    Box::new(MinMax::<Decimal128Type>::new(is_min, input_type))
                }
                DataType::Date32 => Box::new(MinMax::<Date32Type>::new(is_min, input_type)),
                DataType::Timestamp(TimeUnit::Microsecond, None) => {
                    Box::new(MinMax::<TimestampMicrosecondType>::new(is_min, input_type))
                }
                DataType::Utf8 => Box::new(MinMaxString {
                    values: vec![],
                    is_min,
                }),
                other => {
                    return Err(WorkerError::eval(format!(
                        "{}() over {other} is not supported",
                        func.name()
                    )))
                }
            }
        }
    })
}

/// The first value each group meets (NULL included), of any type. Merging
/// takes the first non-NULL state: an empty partial's state is NULL too,
/// and which task's value counts as first is arbitrary anyway. Each batch
/// contributes only the rows it picks, copied out with `take`, so no input
/// batch is kept alive.
struct First {
    merge: bool,
    /// Per group: (source array, row) of its value, once it has one.
    picks: Vec<Option<(u32, u32)>>,
    sources: Vec<ArrayRef>,
    data_type: DataType,
}

impl Accumulator for First {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.picks.resize(n_groups, None);
        let source = self.sources.len() as u32;
        let mut rows: Vec<u32> = vec![];
        let skip = inputs[0].logical_nulls().filter(|_| self.merge);
        for (i, g) in groups.iter().enumerate() {
            if skip.as_ref().is_some_and(|n| n.is_null(i)) {
                continue;
            }
            let pick = &mut self.picks[*g as usize];
            if pick.is_none() {
                *pick = Some((source, rows.len() as u32));
                rows.push(i as u32);
            }
        }
        if !rows.is_empty() {
            let taken = arrow::compute::take(
                inputs[0].as_ref(),
                &arrow::array::UInt32Array::from(rows),
                None,
            )
            .context("first()")?;
            self.sources.push(taken);
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        // Source 0 is one NULL, for groups that met no row.
        let mut sources = vec![arrow::array::new_null_array(&self.data_type, 1)];
        sources.append(&mut self.sources);
        let picks: Vec<(usize, usize)> = std::mem::take(&mut self.picks)
            .into_iter()
            .map(|p| p.map_or((0, 0), |(s, r)| (s as usize + 1, r as usize)))
            .collect();
        let arrays: Vec<&dyn Array> = sources.iter().map(|a| a.as_ref()).collect();
        arrow::compute::interleave(&arrays, &picks).context("first()")
    }

    fn size(&self) -> usize {
        self.picks.capacity() * 12
            + self
                .sources
                .iter()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }
}

struct Count {
    counts: Vec<i64>,
    star: bool,
    merge: bool,
}

impl Accumulator for Count {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.counts.resize(n_groups, 0);
        let counts = &mut self.counts;
        if self.merge {
            let states = inputs[0].as_primitive::<Int64Type>();
            for (g, v) in groups.iter().zip(states.values()) {
                counts[*g as usize] += v;
            }
        } else if self.star || inputs[0].null_count() == 0 {
            for g in groups {
                counts[*g as usize] += 1;
            }
        } else {
            let nulls = inputs[0].logical_nulls().expect("has nulls");
            for (i, g) in groups.iter().enumerate() {
                counts[*g as usize] += nulls.is_valid(i) as i64;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))))
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// Sum of Int64 or Float64 values (and of partial sums: the same operation).
struct Sum<T: ArrowPrimitiveType> {
    sums: Vec<T::Native>,
    seen: Vec<bool>,
    /// The output type (a DECIMAL's precision and scale).
    data_type: DataType,
}

impl<T: ArrowPrimitiveType> Sum<T> {
    fn new(data_type: &DataType) -> Self {
        Sum {
            sums: vec![],
            seen: vec![],
            data_type: data_type.clone(),
        }
    }
}

impl<T> Accumulator for Sum<T>
where
    T: ArrowPrimitiveType,
    T::Native: std::ops::Add<Output = T::Native> + Copy,
{
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.sums.resize(n_groups, T::Native::default());
        self.seen.resize(n_groups, false);
        let values = inputs[0].as_primitive::<T>();
        let (sums, seen) = (&mut self.sums, &mut self.seen);
        match values.nulls().filter(|n| n.null_count() > 0) {
            None => {
                for (g, v) in groups.iter().zip(values.values()) {
                    let g = *g as usize;
                    sums[g] = sums[g] + *v;
                    seen[g] = true;
                }
            }
            Some(nulls) => {
                for (i, (g, v)) in groups.iter().zip(values.values()).enumerate() {
                    if nulls.is_valid(i) {
                        let g = *g as usize;
                        sums[g] = sums[g] + *v;
                        seen[g] = true;
                    }
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let nulls = NullBuffer::from(std::mem::take(&mut self.seen));
        let values = std::mem::take(&mut self.sums);
        Ok(Arc::new(
            PrimitiveArray::<T>::new(values.into(), Some(nulls))
                .with_data_type(self.data_type.clone()),
        ))
    }

    fn size(&self) -> usize {
        self.sums.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

struct Avg {
    sums: Vec<f64>,
    counts: Vec<i64>,
    merge: bool,
}

impl Accumulator for Avg {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.sums.resize(n_groups, 0.0);
        self.counts.resize(n_groups, 0);
        let values = inputs[0].as_primitive::<Float64Type>();
        if self.merge {
            let counts = inputs[1].as_primitive::<Int64Type>();
            for ((g, s), c) in groups.iter().zip(values.values()).zip(counts.values()) {
                self.sums[*g as usize] += s;
                self.counts[*g as usize] += c;
            }
        } else {
            for (i, (g, v)) in groups.iter().zip(values.values()).enumerate() {
                if values.is_valid(i) {
                    self.sums[*g as usize] += v;
                    self.counts[*g as usize] += 1;
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let sums = Float64Array::from(std::mem::take(&mut self.sums));
        let counts = Int64Array::from(std::mem::take(&mut self.counts));
        Ok(vec![Arc::new(sums), Arc::new(counts)])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let sums = std::mem::take(&mut self.sums);
        let counts = std::mem::take(&mut self.counts);
        let out: Float64Array = sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c == 0 { None } else { Some(s / *c as f64) })
            .collect();
        Ok(Arc::new(out))
    }

    fn size(&self) -> usize {
        self.sums.capacity() * 16
    }
}

struct MinMax<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    seen: Vec<bool>,
    is_min: bool,
    /// The output type (a DECIMAL's precision and scale).
    data_type: DataType,
}

impl<T: ArrowPrimitiveType> MinMax<T> {
    fn new(is_min: bool, data_type: &DataType) -> Self {
        MinMax {
            values: vec![],
            seen: vec![],
            is_min,
            data_type: data_type.clone(),
        }
    }
}

impl<T> Accumulator for MinMax<T>
where
    T: ArrowPrimitiveType,
    T::Native: PartialOrd + Copy,
{
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.values.resize(n_groups, T::Native::default());
        self.seen.resize(n_groups, false);
        let input = inputs[0].as_primitive::<T>();
        for (i, (g, v)) in groups.iter().zip(input.values()).enumerate() {
            if input.is_null(i) {
                continue;
            }
            let g = *g as usize;
            let better = if self.is_min {
                *v < self.values[g]
            } else {
                *v > self.values[g]
            };
            if !self.seen[g] || better {
                self.values[g] = *v;
                self.seen[g] = true;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let nulls = NullBuffer::from(std::mem::take(&mut self.seen));
        let values = std::mem::take(&mut self.values);
        Ok(Arc::new(
            PrimitiveArray::<T>::new(values.into(), Some(nulls))
                .with_data_type(self.data_type.clone()),
        ))
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

struct MinMaxString {
    values: Vec<Option<String>>,
    is_min: bool,
}

impl Accumulator for MinMaxString {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.values.resize(n_groups, None);
        let input = inputs[0].as_string::<i32>();
        for (g, v) in groups.iter().zip(input.iter()) {
            let Some(v) = v else { continue };
            let slot = &mut self.values[*g as usize];
            let better = match slot {
                None => true,
                Some(cur) => {
                    if self.is_min {
                        v < cur.as_str()
                    } else {
                        v > cur.as_str()
                    }
                }
            };
            if better {
                *slot = Some(v.to_string());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.finish()?])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let values = std::mem::take(&mut self.values);
        Ok(Arc::new(StringArray::from(values)))
    }

    fn size(&self) -> usize {
        self.values
            .iter()
            .map(|v| 24 + v.as_ref().map_or(0, |s| s.capacity()))
            .sum()
    }
}

/// count(DISTINCT x): a set of (group, encoded value) pairs.
///
/// Its state (used when a spilling aggregation dumps its table) is the set
/// itself: per group, a binary value of length-prefixed encoded values.
/// `sum(DISTINCT x)` and `avg(DISTINCT x)` over BIGINT or DOUBLE values:
/// each group's set of values (by bits; -0.0 counts as 0.0), summed as
/// values join it. Its state (when a spilling aggregation dumps its table)
/// is each group's set: a type tag byte, then the values' 8-byte bits.
struct SumDistinct {
    float: bool,
    avg: bool,
    merge: bool,
    seen: HashSet<(u32, u64)>,
    int_sums: Vec<i64>,
    float_sums: Vec<f64>,
    counts: Vec<i64>,
}

impl SumDistinct {
    fn insert(&mut self, g: u32, bits: u64) -> Result<()> {
        if !self.seen.insert((g, bits)) {
            return Ok(());
        }
        let g = g as usize;
        self.counts[g] += 1;
        if self.float {
            self.float_sums[g] += f64::from_bits(bits);
        } else {
            let sum = &mut self.int_sums[g];
            *sum = sum
                .checked_add(bits as i64)
                .ok_or_else(|| WorkerError::eval("sum(DISTINCT …) overflowed BIGINT"))?;
        }
        Ok(())
    }
}

impl Accumulator for SumDistinct {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.counts.resize(n_groups, 0);
        self.float_sums.resize(n_groups, 0.0);
        self.int_sums.resize(n_groups, 0);
        if self.merge {
            let sets = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                let set = sets.value(i);
                let Some((&tag, values)) = set.split_first() else {
                    continue;
                };
                self.float = tag == b'f';
                for v in values.chunks_exact(8) {
                    self.insert(*g, u64::from_le_bytes(v.try_into().expect("8 bytes")))?;
                }
            }
        } else if self.float {
            let values = inputs[0].as_primitive::<Float64Type>().clone();
            for (i, g) in groups.iter().enumerate() {
                if values.is_valid(i) {
                    self.insert(*g, (values.value(i) + 0.0).to_bits())?;
                }
            }
        } else {
            let values = inputs[0].as_primitive::<Int64Type>().clone();
            for (i, g) in groups.iter().enumerate() {
                if values.is_valid(i) {
                    self.insert(*g, values.value(i) as u64)?;
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let tag = if self.float { b'f' } else { b'i' };
        let mut sets: Vec<Vec<u8>> = vec![vec![]; self.counts.len()];
        for (g, bits) in self.seen.drain() {
            let set = &mut sets[g as usize];
            if set.is_empty() {
                set.push(tag);
            }
            set.extend_from_slice(&bits.to_le_bytes());
        }
        self.counts.clear();
        self.int_sums.clear();
        self.float_sums.clear();
        Ok(vec![Arc::new(BinaryArray::from_iter_values(sets))])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        self.seen.clear();
        let counts = std::mem::take(&mut self.counts);
        let present = |c: i64| c > 0;
        Ok(if self.avg || self.float {
            let sums: Vec<f64> = if self.float {
                std::mem::take(&mut self.float_sums)
            } else {
                std::mem::take(&mut self.int_sums)
                    .into_iter()
                    .map(|s| s as f64)
                    .collect()
            };
            Arc::new(Float64Array::from_iter(sums.into_iter().zip(&counts).map(
                |(s, &c)| match (present(c), self.avg) {
                    (false, _) => None,
                    (true, true) => Some(s / c as f64),
                    (true, false) => Some(s),
                },
            )))
        } else {
            Arc::new(Int64Array::from_iter(
                std::mem::take(&mut self.int_sums)
                    .into_iter()
                    .zip(&counts)
                    .map(|(s, &c)| present(c).then_some(s)),
            ))
        })
    }

    fn size(&self) -> usize {
        self.seen.capacity() * 16 + self.counts.capacity() * 16
    }
}

struct CountDistinct {
    converter: Option<RowConverter>,
    seen: HashSet<(u32, Box<[u8]>)>,
    counts: Vec<i64>,
    bytes: usize,
    merge: bool,
}

impl CountDistinct {
    fn new(input_type: &DataType, merge: bool) -> Result<Self> {
        let converter = if merge {
            None
        } else {
            Some(
                RowConverter::new(vec![SortField::new(input_type.clone())])
                    .context("count(DISTINCT)")?,
            )
        };
        Ok(CountDistinct {
            converter,
            seen: HashSet::new(),
            counts: vec![],
            bytes: 0,
            merge,
        })
    }

    fn insert(&mut self, g: u32, key: &[u8]) {
        if self.seen.insert((g, key.into())) {
            self.counts[g as usize] += 1;
            self.bytes += key.len() + 32;
        }
    }
}

impl Accumulator for CountDistinct {
    fn update(&mut self, groups: &[u32], n_groups: usize, inputs: &[ArrayRef]) -> Result<()> {
        self.counts.resize(n_groups, 0);
        if self.merge {
            let sets = inputs[0].as_binary::<i32>();
            for (i, g) in groups.iter().enumerate() {
                let mut set = sets.value(i);
                while set.len() >= 4 {
                    let len = u32::from_le_bytes(set[..4].try_into().expect("4 bytes")) as usize;
                    self.insert(*g, &set[4..4 + len]);
                    set = &set[4 + len..];
                }
            }
            return Ok(());
        }
        let rows = self
            .converter
            .as_ref()
            .expect("raw input has a converter")
            .convert_columns(&inputs[..1])
            .context("count(DISTINCT)")?;
        for (i, g) in groups.iter().enumerate() {
            if !inputs[0].is_null(i) {
                self.insert(*g, rows.row(i).data());
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ArrayRef>> {
        let mut sets: Vec<Vec<u8>> = vec![vec![]; self.counts.len()];
        for (g, key) in self.seen.drain() {
            let set = &mut sets[g as usize];
            set.extend_from_slice(&(key.len() as u32).to_le_bytes());
            set.extend_from_slice(&key);
        }
        self.counts.clear();
        self.bytes = 0;
        Ok(vec![Arc::new(BinaryArray::from_iter_values(sets))])
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        self.seen.clear();
        self.bytes = 0;
        Ok(Arc::new(Int64Array::from(std::mem::take(&mut self.counts))))
    }

    fn size(&self) -> usize {
        self.bytes + self.counts.capacity() * 8
    }
}
