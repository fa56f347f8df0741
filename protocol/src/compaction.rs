//! Key compaction of a run of batches (Kafka's log cleaner, applied to one run).
//!
//! The run is a partition's batches over contiguous offsets, with their real base offsets.
//! Of every key only the record with the largest offset in the run survives, at its
//! offset; records without a key are dropped (Kafka's cleaner drops them too). A tombstone
//! (null value) survives until its batch's delete horizon has passed: the first cleaning that
//! keeps a tombstone in a batch sets the batch's delete horizon to `now +
//! delete.retention.ms` (KIP-534: attribute bit 6, the horizon in the base timestamp), and
//! a later cleaning after the horizon drops it. The run's last record always survives, so a
//! run never becomes empty. Control batches are kept whole.
//!
//! Batches keep their header fields (codec, timestamp type, producer, max timestamp) and
//! their offsets: a batch left without records gives its offsets to the batch before it
//! (or, at the start of the run, to the one after it), so the written batches cover the
//! run's offsets exactly, without gaps, and a batch's offset deltas may skip.

use crate::records::{decode_batch, encode_batch, DecodedBatch, RecordError, DELETE_HORIZON_BIT};
use bytes::Bytes;
use std::collections::HashMap;

/// When the cleaning happens and how long tombstones live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOptions {
    /// Now, in milliseconds since the epoch.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// One batch the cleaning wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanedBatch {
    /// The whole batch.
    pub bytes: Bytes,
    /// First offset it covers.
    pub base_offset: i64,
    /// Last offset it covers.
    pub last_offset: i64,
    /// Its max timestamp.
    pub max_timestamp: i64,
}

/// The outcome of cleaning a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// The batches covering the run's offsets, in order.
    pub batches: Vec<CleanedBatch>,
    /// False when the cleaning removed nothing and set no horizon (nothing to write).
    pub changed: bool,
    /// Records in the run.
    pub records_in: u64,
    /// Records kept.
    pub records_out: u64,
    /// The earliest delete horizon of a batch that still holds tombstones: the time after
    /// which cleaning the run again would remove some.
    pub next_horizon: Option<i64>,
}

/// A batch as it will be written: where it starts and ends, and what it keeps.
struct Planned {
    batch: DecodedBatch,
    keep: Vec<usize>,
    start: i64,
    end: i64,
}

/// Cleans a run of batches (each the whole batch, with its real base offset).
pub fn compact(run: &[Bytes], opts: CompactOptions) -> Result<Cleaned, RecordError> {
    let batches = run
        .iter()
        .map(decode_batch)
        .collect::<Result<Vec<_>, _>>()?;
    if batches
        .windows(2)
        .any(|w| w[1].header.base_offset != w[0].last_offset() + 1)
    {
        return Err(RecordError::Malformed(
            "batches of the run are not contiguous",
        ));
    }
    let latest = latest_offsets(&batches);
    let last_record = batches
        .last()
        .and_then(|b| b.records.last())
        .map(|r| r.offset);
    let mut out = Cleaned::default();
    let mut plan: Vec<Planned> = Vec::new();
    let mut pending_start: Option<i64> = None;
    for mut batch in batches {
        out.records_in += batch.records.len() as u64;
        let keep = kept(&batch, &latest, last_record, opts.now_ms);
        if keep.len() != batch.records.len() {
            out.changed = true;
        }
        let end = batch.last_offset();
        if keep.is_empty() {
            match plan.last_mut() {
                Some(prev) => prev.end = end,
                None => {
                    pending_start.get_or_insert(batch.header.base_offset);
                }
            }
            continue;
        }
        let tombstones = keep.iter().any(|&i| batch.records[i].tombstone);
        if tombstones && batch.delete_horizon().is_none() {
            batch.header.attributes |= DELETE_HORIZON_BIT;
            batch.header.base_timestamp = opts.now_ms.saturating_add(opts.delete_retention_ms);
            out.changed = true;
        }
        if tombstones {
            let h = batch.header.base_timestamp;
            out.next_horizon = Some(out.next_horizon.map_or(h, |n| n.min(h)));
        }
        let start = pending_start.take().unwrap_or(batch.header.base_offset);
        plan.push(Planned {
            batch,
            keep,
            start,
            end,
        });
    }
    for p in plan {
        out.records_out += p.keep.len() as u64;
        out.batches.push(write(p)?);
    }
    Ok(out)
}

/// The offset of the latest record of every key in the run. Control batches and
/// transactional batches take no part: a record of a transaction that may have aborted
/// must not supersede a committed one, so transactional records neither supersede nor are
/// dropped (readers filter aborted ones through the aborted-transaction index).
fn latest_offsets(batches: &[DecodedBatch]) -> HashMap<Bytes, i64> {
    let mut latest = HashMap::new();
    for b in batches
        .iter()
        .filter(|b| !b.is_control() && !b.header.is_transactional())
    {
        for r in &b.records {
            if let Some(k) = &r.key {
                latest.insert(k.clone(), r.offset);
            }
        }
    }
    latest
}

/// Indexes of the records of `b` that survive.
fn kept(
    b: &DecodedBatch,
    latest: &HashMap<Bytes, i64>,
    last_record: Option<i64>,
    now_ms: i64,
) -> Vec<usize> {
    if b.is_control() || b.header.is_transactional() {
        return (0..b.records.len()).collect();
    }
    let horizon_passed = b.delete_horizon().is_some_and(|h| h <= now_ms);
    b.records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let newest = r
                .key
                .as_ref()
                .is_some_and(|k| latest.get(k) == Some(&r.offset));
            Some(r.offset) == last_record || (newest && !(r.tombstone && horizon_passed))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Encodes a planned batch over its offsets.
fn write(p: Planned) -> Result<CleanedBatch, RecordError> {
    let mut header = p.batch.header;
    let delta = i32::try_from(p.end - p.start)
        .map_err(|_| RecordError::Malformed("batch would cover too many offsets"))?;
    let shift = header.base_offset - p.start;
    header.base_offset = p.start;
    header.last_offset_delta = delta;
    if shift != 0 && header.base_sequence >= 0 {
        // Sequences follow offset deltas: keep the first kept record's sequence right.
        header.base_sequence = header.base_sequence.wrapping_sub(shift as i32).max(0);
    }
    let records: Vec<_> = p.keep.iter().map(|&i| p.batch.records[i].clone()).collect();
    let bytes = encode_batch(&header, &records)?;
    Ok(CleanedBatch {
        bytes,
        base_offset: p.start,
        last_offset: p.end,
        max_timestamp: header.max_timestamp,
    })
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod tests;
