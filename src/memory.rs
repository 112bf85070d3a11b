//! Giving memory back to the system after bulk work.
//!
//! A node's steady state is small (the manifest and the catalog index), but its peaks are not:
//! a start-up scan, a bootstrap or a large burst allocates tens of megabytes for a few seconds.
//! glibc keeps freed memory in its arenas instead of returning it, so without help an idle
//! node stays at the size of its largest peak (measured on 10,000 layers: a master at 150 MB
//! of which 80 MB was free heap). [`run`] checks every few seconds how much of the heap is free
//! and, when a peak has passed, asks glibc to return it (`malloc_trim`). [`limit_arenas`] keeps
//! glibc from spreading the heap over one arena per thread, which multiplies that waste.
//!
//! Other C libraries (musl, for the static build) return memory by themselves: there both are
//! no-ops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// Bumped by the tasks that allocate in bulk (the receive worker, the detector): an idle node
/// never even looks at its heap, since that walk costs milliseconds on a large one.
static WORK: AtomicU64 = AtomicU64::new(0);

/// Note that this node did some work since the last check.
pub fn worked() {
    WORK.fetch_add(1, Ordering::Relaxed);
}

/// How often the heap is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// Free heap worth returning.
const WORTH_TRIMMING: usize = 4 * 1024 * 1024;

/// Use at most two malloc arenas (glibc's default is eight per core).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Heap bytes in use and free (glibc's view), or `None` where it cannot tell.
pub fn heap() -> Option<(usize, usize)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads the allocator's counters and returns them by value.
        let m = unsafe { libc::mallinfo2() };
        Some((m.uordblks + m.hblkhd, m.fordblks))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Return free heap to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether the heap changed enough since the last trim, and holds enough free memory, to trim.
/// `last` is (in use, free) right after the last trim. Trimming leaves freed chunks on the free
/// list (only their pages go back), so "free" alone would trim the same memory again and again.
fn should_trim(now: (usize, usize), last: Option<(usize, usize)>) -> bool {
    let (used, free) = now;
    if free < WORTH_TRIMMING {
        return false;
    }
    match last {
        None => true,
        Some((u, f)) => used.abs_diff(u) + free.abs_diff(f) >= WORTH_TRIMMING,
    }
}

/// Trim after peaks until shutdown.
pub async fn run(mut shutdown: watch::Receiver<bool>) {
    let mut last = None;
    let mut seen = WORK.load(Ordering::Relaxed);
    let mut checked = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        // Look once the work has stopped: not while it goes on, not again while idle.
        let work = WORK.load(Ordering::Relaxed);
        if work != seen {
            seen = work;
            continue;
        }
        if Some(work) == checked {
            continue;
        }
        checked = Some(work);
        let Some(now) = heap() else { return };
        if !should_trim(now, last) {
            continue;
        }
        let started = std::time::Instant::now();
        trim();
        last = heap();
        log::debug!(
            "returned free memory to the system: heap {} KiB in use, {} KiB free before ({:?})",
            now.0 / 1024,
            now.1 / 1024,
            started.elapsed()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn trims_a_passed_peak_once() {
        assert!(!should_trim((10 * MIB, MIB), None), "little free memory");
        assert!(should_trim((10 * MIB, 80 * MIB), None), "after a peak");
        let after = Some((10 * MIB, 80 * MIB));
        assert!(
            !should_trim((10 * MIB + 1000, 80 * MIB - 1000), after),
            "the same free memory again"
        );
        assert!(
            should_trim((30 * MIB, 60 * MIB), after),
            "a new peak came and went"
        );
    }

    #[test]
    fn heap_figures_are_available_on_glibc() {
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let (used, _) = heap().expect("mallinfo2");
            assert!(used > 0);
            trim();
        }
    }
}
