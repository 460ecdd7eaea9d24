//! What a file must be after a crash: it opens (recovery), holds exactly the first `k` whole
//! batches for some `k` in the range the crash allows, verifies clean, and takes new work.

use super::workload::{Models, State, PROBE, PROGRESS};
use crate::common::{k, retry_locked};
use hashdir::{Options, StoreReader, StoreWriter};
use std::path::Path;

/// `StoreWriter::open` (a file, or a sharded store's directory) through `retry_locked`.
fn open_writer(path: &Path, opts: &Options) -> hashdir::Result<StoreWriter> {
    retry_locked(|| StoreWriter::open(path, opts))
}

/// Reads every key and set of a file (or of every shard of a sharded store).
pub fn scan(path: &Path) -> Result<State, String> {
    let r =
        StoreReader::open(path, &Options::default()).map_err(|e| format!("reader open: {e}"))?;
    let mut m = State::new();
    r.scan(|key, vs| {
        m.insert(*key, vs.iter().copied().collect());
        true
    })
    .map_err(|e| format!("reader scan: {e}"))?;
    Ok(m)
}

/// How `got` differs from `want`, in a line.
pub fn diff(got: &State, want: &State) -> String {
    let missing: Vec<_> = want.keys().filter(|key| !got.contains_key(*key)).collect();
    let extra: Vec<_> = got.keys().filter(|key| !want.contains_key(*key)).collect();
    let changed: Vec<_> = want
        .iter()
        .filter(|(key, set)| got.get(*key).is_some_and(|g| g != *set))
        .map(|(key, _)| key)
        .collect();
    let name = |key: &[u8; 16]| format!("k({})", u64::from_be_bytes(key[8..].try_into().unwrap()));
    let first = missing
        .first()
        .map(|key| format!("first missing {}", name(key)))
        .or_else(|| {
            extra
                .first()
                .map(|key| format!("first extra {}", name(key)))
        })
        .or_else(|| {
            changed.first().map(|key| {
                let (g, w) = (got[*key].len(), want[*key].len());
                format!("first changed {} ({g} values, want {w})", name(key))
            })
        })
        .unwrap_or_default();
    format!(
        "{} keys missing, {} extra, {} sets differ; {first}",
        missing.len(),
        extra.len(),
        changed.len()
    )
}

/// The batch count `PROGRESS` claims (None: the key holds something else).
fn progress(got: &State) -> Option<u64> {
    match got.get(&k(PROGRESS)) {
        None => Some(0),
        Some(set) if set.len() == 1 => {
            let v = set.iter().next().unwrap();
            Some(u64::from_be_bytes(v[8..].try_into().unwrap()) + 1)
        }
        Some(_) => None,
    }
}

/// Which whole-batch prefix `got` is, if any: tries what `PROGRESS` says, then every `k`.
pub fn prefix_of(got: &State, models: &Models) -> Result<u64, String> {
    let hint = progress(got);
    if let Some(h) = hint.filter(|h| *h <= models.batches()) {
        if models.after(h) == got {
            return Ok(h);
        }
    }
    if let Some(k) = (0..=models.batches()).find(|k| models.after(*k) == got) {
        return Ok(k);
    }
    let near = hint.unwrap_or(0).min(models.batches());
    Err(format!(
        "contents are no whole-batch prefix (PROGRESS says {hint:?} batches; against the model after {near}: {})",
        diff(got, models.after(near))
    ))
}

/// The whole check of a crashed file. `lo..=hi`: the batch counts it may hold (`lo`: those
/// durable before the crash; `hi`: those whose commit had started). `probe`: a number for the
/// batch this check commits. Returns the batch count it holds, or what was wrong.
pub fn check(
    path: &Path,
    opts: &Options,
    models: &Models,
    lo: u64,
    hi: u64,
    probe: u64,
) -> Result<u64, String> {
    // (a) It opens for writing: recovery works. (`open_writer` waits out the writer lock a
    // child forked by another test thread may hold for a moment; see tests/common.)
    let mut w = open_writer(path, opts).map_err(|e| format!("writer open (recovery): {e}"))?;
    // (b) A whole-batch prefix, (c) no shorter than what was durable.
    let got = scan(path)?;
    let n = prefix_of(&got, models)?;
    if n < lo {
        return Err(format!(
            "lost durable batches: holds {n} batches, but {lo} were acknowledged before the last completed sync"
        ));
    }
    if n > hi {
        return Err(format!(
            "holds {n} batches, but only {hi} had been committed by the crash point (harness error?)"
        ));
    }
    // (d) Verify is clean.
    let report = hashdir::verify_store(path).map_err(|e| format!("verify: {e}"))?;
    if !report.is_ok() {
        return Err(format!("verify: {:?}", report.problems));
    }
    // (e) It takes a new batch, checkpoints, closes, reopens with it.
    let (pk, pv) = (k(PROBE), k(probe));
    w.insert(&[pk], &[pv])
        .and_then(|()| w.commit())
        .and_then(|()| w.checkpoint())
        .and_then(|()| w.close())
        .map_err(|e| format!("after recovery, commit/checkpoint/close of a new batch: {e}"))?;
    let w = open_writer(path, opts).map_err(|e| format!("reopen after the new batch: {e}"))?;
    let mut want = models.after(n).clone();
    want.insert(pk, [pv].into());
    let again = scan(path)?;
    if again != want {
        return Err(format!(
            "after a new batch, checkpoint, close and reopen: {}",
            diff(&again, &want)
        ));
    }
    w.close().map_err(|e| format!("close after reopen: {e}"))?;
    let report =
        hashdir::verify_store(path).map_err(|e| format!("verify after the new batch: {e}"))?;
    if !report.is_ok() {
        return Err(format!("verify after the new batch: {:?}", report.problems));
    }
    Ok(n)
}
