//! The daemon's upkeep of its history (`history`): content an unfinished apply kept ahead
//! and nothing refers to swept at start; once, keep the tree the history begins with (the
//! base, read from the data directory in slices so no apply waits long); every [`PACK_EVERY`]
//! deflate the content applies kept as it is; prune to the retention at start and every
//! [`PRUNE_EVERY`].

use crate::config::History;
use crate::context::Shared;
use crate::history::{self, Sha};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often the content applies kept as it is gets deflated (`pack`): off their path, soon
/// enough that the history's size on disk follows within a minute.
pub const PACK_EVERY: Duration = Duration::from_secs(30);
/// Contents deflated per transaction (under the state lock: ~15 µs each, so no apply waits
/// long).
const PACK_SLICE: usize = 500;
/// How often a bootstrapping node looks whether it is done, to begin its history.
const BOOTSTRAP_POLL: Duration = Duration::from_secs(1);
/// Files read and kept per transaction of the base (under the state lock).
const BASE_SLICE: usize = 500;
/// Groups pruned per transaction (under the state lock).
const PRUNE_SLICE: usize = 2000;

/// The retention `[history]` asks for, at `now_ms`.
pub fn retention(keep: &History, now_ms: u64) -> history::Retention {
    history::Retention {
        oldest_ms: now_ms.saturating_sub(keep.keep_days.saturating_mul(86_400_000)),
        max_bytes: keep.max_mb.saturating_mul(1024 * 1024),
        max_groups: keep.max_changes,
    }
}

/// With the history off, drop what an earlier run kept: recording stops now, and a history
/// with a stretch unrecorded would restore the wrong content at every point before it (a path
/// changed meanwhile would come back as it was after that change, not before).
pub async fn forget(sh: Arc<Shared>) {
    let dropped = tokio::task::spawn_blocking(move || {
        let mut state = sh.state.lock().unwrap();
        let kept = history::extent(state.database())
            .map_err(|e| std::io::Error::other(format!("state database: {e}")))?;
        if kept.groups == 0 && kept.oldest_ms == 0 {
            // Nothing was ever recorded: no transaction on every start of a node without one.
            return Ok((None, 0));
        }
        state
            .history_txn(history::drop_all)
            .map(|n| (n, kept.bytes))
    });
    match dropped.await {
        Ok(Ok((None, _))) => {}
        Ok(Ok((Some(n), bytes))) => log::warn!(
            "history: [history] enabled = false: dropped the history kept so far ({n} change \
             group(s), {:.1} MiB); it begins anew once turned on again",
            bytes as f64 / 1048576.0
        ),
        Ok(Err(e)) => log::error!("history: cannot drop the history kept so far: {e}"),
        Err(e) => log::error!("history: {e}"),
    }
}

pub async fn run(sh: Arc<Shared>, keep: History, mut shutdown: watch::Receiver<bool>) {
    let swept = tokio::task::spawn_blocking({
        let sh = sh.clone();
        move || (sh.state.lock().unwrap()).history_txn(history::sweep)
    });
    match swept.await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => {
            log::info!("history: dropped the content of {n} file(s) an unfinished apply kept ahead")
        }
        Ok(Err(e)) => log::error!("history: {e}"),
        Err(e) => log::error!("history: {e}"),
    }
    // A node that bootstraps records nothing of it (`State::records_applies`): its history
    // begins with the tree the bootstrap made.
    let mut said = false;
    while sh.applies && !sh.state.lock().unwrap().synced {
        if !said {
            log::info!("history: begins once the bootstrap is done");
            said = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(BOOTSTRAP_POLL) => {}
            _ = shutdown.changed() => return,
        }
    }
    let base = tokio::task::spawn_blocking({
        let sh = sh.clone();
        move || fill_base(&sh)
    });
    match base.await {
        Ok(Ok(None)) => {}
        Ok(Ok(Some(n))) => {
            log::info!("history: began with the {n} file(s) of the tree as they are")
        }
        Ok(Err(e)) => log::error!("history: cannot keep the tree it begins with: {e}"),
        Err(e) => log::error!("history: {e}"),
    }
    let mut next_prune = tokio::time::Instant::now();
    // Not at start: a node starts with a backlog to catch up more often than not, and packing
    // can wait for it.
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            let packing = sh.clone();
            match tokio::task::spawn_blocking(move || pack(&packing)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::error!("history: packing failed (retried later): {e}"),
                Err(e) => log::error!("history: {e}"),
            }
        }
        if tokio::time::Instant::now() >= next_prune {
            let sh = sh.clone();
            match tokio::task::spawn_blocking(move || prune(&sh, &keep)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => log::info!("history: pruned {n} group(s) past the retention"),
                Ok(Err(e)) => log::error!("history: pruning failed (retried later): {e}"),
                Err(e) => log::error!("history: {e}"),
            }
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        tokio::select! {
            _ = tokio::time::sleep(PACK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Deflate the content applies and publishes kept as it is, a slice at a time; returns how
/// many contents were looked at.
pub fn pack(sh: &Shared) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let n = (sh.state.lock().unwrap()).history_txn(|txn| history::pack(txn, PACK_SLICE))?;
        total += n;
        if n < PACK_SLICE || sh.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(total);
        }
    }
}

/// Keep every replicated file as it is now, unless done before (`None`); returns how many were
/// kept.
/// Each slice is read under the state lock, so a file is kept as the manifest has it (a file
/// that differs is left to its next change).
pub fn fill_base(sh: &Shared) -> std::io::Result<Option<usize>> {
    let db_err = |e: redb::Error| std::io::Error::other(format!("state database: {e}"));
    if !history::base_pending(sh.state.lock().unwrap().database()).map_err(db_err)? {
        return Ok(None);
    }
    let mut after: Option<String> = None;
    let mut kept = 0;
    loop {
        let mut state = sh.state.lock().unwrap();
        let slice: Vec<(String, Sha)> = (state.manifest.live_between(after.as_deref(), None))
            .take(BASE_SLICE)
            .map(|(p, e)| (p, e.sha256))
            .collect();
        let done = slice.len() < BASE_SLICE;
        after = slice.last().map(|(p, _)| p.clone()).or(after);
        let files: Vec<(String, Sha, Vec<u8>)> = (slice.into_iter())
            .filter_map(|(path, sha)| {
                let bytes = std::fs::read(sh.data_dir.join(&path)).ok()?;
                let now: Sha = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
                (now == sha).then_some((path, sha, bytes))
            })
            .collect();
        kept += files.len();
        state.history_txn(|txn| history::fill_base(txn, &files, done))?;
        state.base_done = done;
        if done || sh.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(Some(kept));
        }
    }
}

/// Prune to the retention, a slice at a time; returns how many groups went.
pub fn prune(sh: &Shared, keep: &History) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let retention = retention(keep, crate::clock::now_ms());
        let n = sh.state.lock().unwrap().history_txn(|txn| {
            let n = history::prune(txn, &retention, PRUNE_SLICE)?;
            if n > 0 {
                crate::crashpoint::hit("history-pruned");
            }
            Ok(n)
        })?;
        total += n;
        if n < PRUNE_SLICE || sh.stopping.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retention_counts_days_back_from_now_and_mebibytes() {
        let keep = History {
            keep_days: 30,
            max_mb: 512,
            max_changes: 7,
        };
        let now = 100 * 86_400_000;
        let r = retention(&keep, now);
        assert_eq!(r.oldest_ms, 70 * 86_400_000);
        assert_eq!(r.max_bytes, 512 * 1024 * 1024);
        assert_eq!(r.max_groups, 7);
        assert_eq!(retention(&keep, 1000).oldest_ms, 0, "not before the epoch");
    }
}
