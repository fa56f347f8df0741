//! `inkless storage check`: compares the metadata store with the object store.
//!
//! It reports (a) batches whose object is missing or too short for their byte range, (b)
//! objects in the object store that the metadata store has no row for (orphans), and (c)
//! objects whose recorded live bytes differ from the sum of their batches' sizes. With
//! `--repair` it deletes orphans older than a minimum age (behind the store's
//! `retire_orphans` fence, so a commit still on its way is refused rather than hurt) and
//! recounts wrong live bytes; with `--drop-missing` also it raises the log start of a
//! partition past missing batches at its start. Missing batches elsewhere are holes that
//! need an operator.
//!
//! The order of reads makes it safe against a running cluster: the object store is listed
//! first, then the metadata read, so an object committed before the listing has a row; every
//! suspect batch is read again and its object asked for (HEAD) before it is reported, and
//! live bytes are recounted in one transaction per call.

use anyhow::Context;
use futures::StreamExt;
use inkless_storage::blob::BlobStore;
use inkless_storage::metadata::{PartitionKey, SharedMetadataStore, StoredBatch, StoredObject};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Rows read from the metadata store per call.
const PAGE: usize = 10_000;
/// Keys per fence call and bulk delete (S3 deletes up to 1,000 keys a request).
const KEYS_PER_CALL: usize = 1_000;

/// What the command was asked to do.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Fix what can be fixed safely.
    pub repair: bool,
    /// With `repair`: raise log starts past missing batches at a partition's start.
    pub drop_missing: bool,
    /// Unreferenced objects younger than this are neither reported nor deleted.
    pub min_orphan_age_ms: i64,
}

/// A batch whose bytes cannot be read.
#[derive(Debug, Clone, Serialize)]
pub struct BadBatch {
    /// Topic id.
    pub topic_id: Uuid,
    /// Topic name, if the topic still exists.
    pub topic: Option<String>,
    /// Partition.
    pub partition: i32,
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
    /// Object key.
    pub object_key: String,
    /// Byte range start.
    pub byte_offset: u64,
    /// Byte range length.
    pub byte_len: u32,
    /// The object's size, `None` when it is missing.
    pub object_size: Option<u64>,
}

/// An object nothing in the metadata store names.
#[derive(Debug, Clone, Serialize)]
pub struct Orphan {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Time since it was last modified.
    pub age_ms: i64,
}

/// An object whose live bytes are wrong.
#[derive(Debug, Clone, Serialize)]
pub struct WrongLiveBytes {
    /// Object key.
    pub key: String,
    /// Recorded live bytes (`None`: batches name an object that has no row).
    pub stored: Option<i64>,
    /// Sum of its batches' sizes.
    pub batches: i64,
}

/// A partition whose missing batches are not at its start.
#[derive(Debug, Clone, Serialize)]
pub struct Hole {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// First offset of the first missing batch after the start.
    pub from_offset: i64,
}

/// What `--repair` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Repairs {
    /// Orphans deleted from the object store.
    pub orphans_deleted: Vec<String>,
    /// Objects whose live bytes were recounted.
    pub live_bytes_fixed: Vec<String>,
    /// Partitions whose log start was raised past missing batches: (topic id, partition,
    /// new log start).
    pub log_starts_raised: Vec<(Uuid, i32, i64)>,
    /// Repairs that failed.
    pub errors: Vec<String>,
}

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Objects in the object store.
    pub objects_listed: u64,
    /// Object rows in the metadata store.
    pub object_rows: u64,
    /// Batch rows in the metadata store.
    pub batches: u64,
    /// (a) Batches whose object is missing or shorter than their byte range.
    pub bad_batches: Vec<BadBatch>,
    /// (b) Unreferenced objects at least the minimum age old.
    pub orphans: Vec<Orphan>,
    /// Unreferenced objects younger than the minimum age (their commit may be running).
    pub young_unreferenced: u64,
    /// Objects marked deleted in the store and still in the object store (the collector's
    /// pending work; not a problem).
    pub awaiting_deletion: u64,
    /// (c) Objects whose live bytes differ from their batches.
    pub wrong_live_bytes: Vec<WrongLiveBytes>,
    /// Partitions with missing batches after their start.
    pub holes: Vec<Hole>,
    /// What `--repair` did.
    pub repairs: Option<Repairs>,
    /// Problems left after any repair.
    pub problems_left: u64,
}

/// The first batches of a partition, in offset order, while all of them are suspect.
#[derive(Debug, Default)]
struct PartitionScan {
    /// Still only suspect batches seen since the partition's first.
    prefix_open: bool,
    /// Indexes into the suspects of the suspect batches at the partition's start.
    prefix: Vec<usize>,
}

/// What one pass over the metadata gathered.
#[derive(Debug, Default)]
struct Scan {
    listed: HashMap<String, (u64, i64)>,
    rows: HashMap<String, StoredObject>,
    batch_bytes: HashMap<String, i64>,
    suspects: Vec<StoredBatch>,
    partitions: BTreeMap<PartitionKey, PartitionScan>,
    batches: u64,
}

/// Runs the check (and repairs) and returns its report.
pub async fn run(
    store: SharedMetadataStore,
    blob: BlobStore,
    opts: &CheckOptions,
) -> anyhow::Result<Report> {
    let mut scan = Scan {
        listed: list(&blob).await?,
        ..Scan::default()
    };
    read_objects(&store, &mut scan).await?;
    read_batches(&store, &mut scan).await?;
    let names: HashMap<Uuid, String> = store
        .list_topics()
        .await?
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    let mut report = Report {
        objects_listed: scan.listed.len() as u64,
        object_rows: scan.rows.len() as u64,
        batches: scan.batches,
        ..Report::default()
    };
    let confirmed = confirm_bad_batches(&store, &blob, &scan).await?;
    report.bad_batches = confirmed
        .iter()
        .map(|(i, size)| bad_batch(&scan.suspects[*i], *size, &names))
        .collect();
    find_orphans(&scan, opts, &mut report);
    let candidates = live_bytes_candidates(&scan);
    let mut repairs = opts.repair.then(Repairs::default);
    report.wrong_live_bytes = recount(&store, candidates, repairs.as_mut()).await?;
    let bad: Vec<usize> = confirmed.iter().map(|(i, _)| *i).collect();
    let raise = plan_truncations(&scan, &bad, &mut report.holes);
    if let Some(r) = repairs.as_mut() {
        delete_orphans(&store, &blob, &report.orphans, r).await;
        if opts.drop_missing {
            raise_log_starts(&store, &raise, r).await;
        }
    }
    report.repairs = repairs;
    report.problems_left = problems_left(&report);
    Ok(report)
}

/// Every object of the object store: key → (size, last modified).
async fn list(blob: &BlobStore) -> anyhow::Result<HashMap<String, (u64, i64)>> {
    let mut listing = blob.list_objects();
    let mut out = HashMap::new();
    while let Some(item) = listing.next().await {
        let o = item.context("listing the object store")?;
        out.insert(o.key, (o.size, o.modified_ms));
    }
    Ok(out)
}

async fn read_objects(store: &SharedMetadataStore, scan: &mut Scan) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let page = store.objects_page(after.take(), PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|o| o.key.clone());
        scan.rows
            .extend(page.into_iter().map(|o| (o.key.clone(), o)));
        if !full {
            return Ok(());
        }
    }
}

async fn read_batches(store: &SharedMetadataStore, scan: &mut Scan) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let page = store.batches_page(after, PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(StoredBatch::cursor);
        for b in page {
            scan_batch(scan, b);
        }
        if !full {
            return Ok(());
        }
    }
}

/// Counts a batch's bytes for its object and keeps it if its bytes look unreadable.
fn scan_batch(scan: &mut Scan, b: StoredBatch) {
    scan.batches += 1;
    *scan.batch_bytes.entry(b.object_key.clone()).or_default() += i64::from(b.byte_len);
    let readable = scan
        .listed
        .get(&b.object_key)
        .is_some_and(|(size, _)| b.byte_offset + u64::from(b.byte_len) <= *size);
    let part = scan.partitions.entry(b.partition).or_insert(PartitionScan {
        prefix_open: true,
        prefix: Vec::new(),
    });
    if readable {
        part.prefix_open = false;
        return;
    }
    if part.prefix_open {
        part.prefix.push(scan.suspects.len());
    }
    scan.suspects.push(b);
}

/// The suspects that are still stored and whose object is still missing or short (it may
/// have been committed after the listing): their indexes and the objects' sizes.
async fn confirm_bad_batches(
    store: &SharedMetadataStore,
    blob: &BlobStore,
    scan: &Scan,
) -> anyhow::Result<Vec<(usize, Option<u64>)>> {
    let mut out = Vec::new();
    for (i, b) in scan.suspects.iter().enumerate() {
        let (topic, partition) = b.partition;
        let still = store
            .read_batches(topic, partition, b.base_offset, 1)
            .await?
            .first()
            .is_some_and(|c| c.base_offset == b.base_offset && c.object_key == b.object_key);
        if !still {
            continue;
        }
        let size = blob
            .size_of(&b.object_key)
            .await
            .with_context(|| format!("asking the object store for {}", b.object_key))?;
        if size.is_none_or(|s| b.byte_offset + u64::from(b.byte_len) > s) {
            out.push((i, size));
        }
    }
    Ok(out)
}

fn bad_batch(b: &StoredBatch, size: Option<u64>, names: &HashMap<Uuid, String>) -> BadBatch {
    BadBatch {
        topic_id: b.partition.0,
        topic: names.get(&b.partition.0).cloned(),
        partition: b.partition.1,
        base_offset: b.base_offset,
        last_offset: b.last_offset,
        object_key: b.object_key.clone(),
        byte_offset: b.byte_offset,
        byte_len: b.byte_len,
        object_size: size,
    }
}

/// Listed objects without a row: orphans if old enough. Rows marked deleted whose object is
/// still there are counted as the collector's pending work.
fn find_orphans(scan: &Scan, opts: &CheckOptions, report: &mut Report) {
    let now = inkless_storage::now_ms();
    for (key, (size, modified)) in &scan.listed {
        match scan.rows.get(key) {
            Some(row) if row.deleted_ms.is_some() => report.awaiting_deletion += 1,
            Some(_) => {}
            None if now - modified >= opts.min_orphan_age_ms => report.orphans.push(Orphan {
                key: key.clone(),
                size: *size,
                age_ms: now - modified,
            }),
            None => report.young_unreferenced += 1,
        }
    }
    report.orphans.sort_by(|a, b| a.key.cmp(&b.key));
}

/// Objects whose row and batches disagree in this (not transactional) read.
fn live_bytes_candidates(scan: &Scan) -> Vec<String> {
    let mut keys: Vec<String> = scan
        .rows
        .values()
        .filter(|o| scan.batch_bytes.get(&o.key).copied().unwrap_or(0) != o.live_bytes)
        .map(|o| o.key.clone())
        .chain(
            scan.batch_bytes
                .keys()
                .filter(|k| !scan.rows.contains_key(*k))
                .cloned(),
        )
        .collect();
    keys.sort_unstable();
    keys
}

/// Recounts the candidates in the store's transactions (fixing them when repairing) and
/// returns those that really differ.
async fn recount(
    store: &SharedMetadataStore,
    candidates: Vec<String>,
    mut repairs: Option<&mut Repairs>,
) -> anyhow::Result<Vec<WrongLiveBytes>> {
    let mut out = Vec::new();
    for chunk in candidates.chunks(KEYS_PER_CALL) {
        let fix = repairs.is_some();
        for m in store.recount_live_bytes(chunk.to_vec(), fix).await? {
            if let (Some(r), Some(_)) = (repairs.as_deref_mut(), m.stored) {
                r.live_bytes_fixed.push(m.key.clone());
            }
            out.push(WrongLiveBytes {
                key: m.key,
                stored: m.stored,
                batches: m.batches,
            });
        }
    }
    Ok(out)
}

/// For each partition whose first batches are bad: the offset its log start may be raised
/// to (past the bad batches at its start). Bad batches after a good one are holes.
fn plan_truncations(scan: &Scan, bad: &[usize], holes: &mut Vec<Hole>) -> Vec<(PartitionKey, i64)> {
    let bad: std::collections::HashSet<usize> = bad.iter().copied().collect();
    let mut raise = Vec::new();
    let mut in_prefix = std::collections::HashSet::new();
    for (key, part) in &scan.partitions {
        let run: Vec<usize> = part
            .prefix
            .iter()
            .copied()
            .take_while(|i| bad.contains(i))
            .collect();
        if let Some(last) = run.last() {
            raise.push((*key, scan.suspects[*last].last_offset + 1));
        }
        in_prefix.extend(run);
    }
    let mut seen = std::collections::HashSet::new();
    for i in bad.iter().copied().filter(|i| !in_prefix.contains(i)) {
        let b = &scan.suspects[i];
        if seen.insert(b.partition) {
            holes.push(Hole {
                topic_id: b.partition.0,
                partition: b.partition.1,
                from_offset: b.base_offset,
            });
        }
    }
    holes.sort_by_key(|h| (h.topic_id, h.partition));
    raise
}

/// Marks the orphans deleted in the store (refused for any key a commit stored meanwhile),
/// then deletes the ones marked.
async fn delete_orphans(
    store: &SharedMetadataStore,
    blob: &BlobStore,
    orphans: &[Orphan],
    r: &mut Repairs,
) {
    let keys: Vec<String> = orphans.iter().map(|o| o.key.clone()).collect();
    for chunk in keys.chunks(KEYS_PER_CALL) {
        let fenced = match store.retire_orphans(chunk.to_vec()).await {
            Ok(k) => k,
            Err(e) => {
                r.errors.push(format!("marking orphans: {e}"));
                continue;
            }
        };
        let n = fenced.len() as u64;
        let (deleted, error) = blob.delete_many(fenced).await;
        if let Err(e) = store.confirm_deleted(deleted.clone()).await {
            r.errors.push(format!("confirming deletions: {e}"));
        }
        if let Some(e) = error {
            r.errors.push(format!(
                "deleting orphans: {e} ({} of {n} deleted; the collector retries the rest)",
                deleted.len()
            ));
        }
        r.orphans_deleted.extend(deleted);
    }
}

/// Raises each partition's log start past its bad first batches, under its current owner
/// epoch (a running owner learns the new log start at its next retention pass or restart).
async fn raise_log_starts(
    store: &SharedMetadataStore,
    raise: &[(PartitionKey, i64)],
    r: &mut Repairs,
) {
    if raise.is_empty() {
        return;
    }
    let epochs: HashMap<PartitionKey, i64> = match store.partition_epochs(i64::MIN).await {
        Ok(e) => e.epochs.into_iter().collect(),
        Err(e) => {
            r.errors.push(format!("reading owner epochs: {e}"));
            return;
        }
    };
    for ((topic, partition), offset) in raise {
        let Some(epoch) = epochs.get(&(*topic, *partition)) else {
            continue;
        };
        match store
            .delete_records(*topic, *partition, *epoch, *offset)
            .await
        {
            Ok(start) => r.log_starts_raised.push((*topic, *partition, start)),
            Err(e) => r.errors.push(format!(
                "raising the log start of partition {partition} of {topic}: {e}"
            )),
        }
    }
}

/// Problems found that no repair took care of (a failed repair counts as one).
fn problems_left(report: &Report) -> u64 {
    let found = report.bad_batches.len() + report.orphans.len() + report.wrong_live_bytes.len();
    let Some(r) = &report.repairs else {
        return found as u64;
    };
    let truncated = report
        .bad_batches
        .iter()
        .filter(|b| {
            r.log_starts_raised.iter().any(|(t, p, start)| {
                (*t, *p) == (b.topic_id, b.partition) && *start > b.last_offset
            })
        })
        .count();
    let repaired = truncated + r.orphans_deleted.len() + r.live_bytes_fixed.len();
    (found.saturating_sub(repaired) + r.errors.len()) as u64
}

/// The report for people.
pub fn human(report: &Report, opts: &CheckOptions) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "storage check: {} objects listed, {} object rows, {} batches",
        report.objects_listed, report.object_rows, report.batches
    );
    let _ = writeln!(
        s,
        "batches whose bytes are missing: {}",
        report.bad_batches.len()
    );
    for b in &report.bad_batches {
        let what = match b.object_size {
            None => "object missing".to_string(),
            Some(size) => format!("range ends past the object's {size} bytes"),
        };
        let _ = writeln!(
            s,
            "  {} [{}] offsets {}-{}: {} bytes at {} of {}: {what}",
            b.topic.as_deref().unwrap_or("(deleted topic)"),
            b.partition,
            b.base_offset,
            b.last_offset,
            b.byte_len,
            b.byte_offset,
            b.object_key
        );
    }
    for h in &report.holes {
        let _ = writeln!(
            s,
            "  partition {} of topic {} has a hole from offset {}: an operator must decide (e.g. kafka-delete-records past it)",
            h.partition, h.topic_id, h.from_offset
        );
    }
    let min_age_s = opts.min_orphan_age_ms / 1000;
    let _ = writeln!(
        s,
        "unreferenced objects older than {min_age_s} s: {}",
        report.orphans.len()
    );
    for o in &report.orphans {
        let _ = writeln!(
            s,
            "  {} ({} bytes, {} s old)",
            o.key,
            o.size,
            o.age_ms / 1000
        );
    }
    let _ = writeln!(
        s,
        "unreferenced objects younger than {min_age_s} s (not counted): {}",
        report.young_unreferenced
    );
    let _ = writeln!(
        s,
        "objects awaiting deletion by the collector: {}",
        report.awaiting_deletion
    );
    let _ = writeln!(
        s,
        "objects with wrong live bytes: {}",
        report.wrong_live_bytes.len()
    );
    for w in &report.wrong_live_bytes {
        let stored = w.stored.map_or("no row".to_string(), |n| n.to_string());
        let _ = writeln!(s, "  {}: recorded {stored}, batches {}", w.key, w.batches);
    }
    if let Some(r) = &report.repairs {
        let _ = writeln!(
            s,
            "repaired: {} orphans deleted, {} live-byte counts fixed, {} log starts raised",
            r.orphans_deleted.len(),
            r.live_bytes_fixed.len(),
            r.log_starts_raised.len()
        );
        for e in &r.errors {
            let _ = writeln!(s, "  repair failed: {e}");
        }
    }
    let _ = writeln!(s, "problems left: {}", report.problems_left);
    s
}
