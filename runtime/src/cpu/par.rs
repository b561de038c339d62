//! Splitting kernel work over threads without allocating per call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a spinning thread looks for work in vain before it goes back to sleep: 1 ms, or
/// `EDGETPU_CPU_SPIN_US` microseconds (read once; 0 turns spinning off, for hosts where an idle
/// core should sleep at once).
fn spin_idle() -> Duration {
    static IDLE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *IDLE.get_or_init(|| {
        let us = std::env::var("EDGETPU_CPU_SPIN_US").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        Duration::from_micros(us)
    })
}

struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// A pool thread's loop while an invocation runs: take pending work, or spin, until `done` or
/// [`spin_idle`] without work.
fn spin(done: &AtomicBool, owner: Option<usize>) {
    // On the thread running the invocation (which may pick this job up while it waits inside a
    // split), spinning would never end: return at once.
    if rayon::current_thread_index() == owner {
        return;
    }
    let mut idle_since = Instant::now();
    let mut polls = 0u32;
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() == Some(rayon::Yield::Executed) {
            idle_since = Instant::now();
            continue;
        }
        // Give the core away now and then: when another process wants it, the kernel runs that
        // one instead of preempting this thread later, in the middle of a job.
        if polls.is_multiple_of(16) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(64) && idle_since.elapsed() > spin_idle() {
            return;
        }
    }
}

/// Runs `f` here with `n` spinner jobs offered to the pool's other threads (`rayon::join`, which
/// does not allocate), setting `done` when `f` returns or panics.
fn with_spinners<R: Send>(n: usize, done: &AtomicBool, owner: Option<usize>, f: impl FnOnce() -> R + Send) -> R {
    if n == 0 {
        let _done = SetOnDrop(done);
        return f();
    }
    rayon::join(|| with_spinners(n - 1, done, owner, f), || spin(done, owner)).0
}

/// The threads a kernel may use: none (the calling thread only) or a rayon pool.
pub(crate) struct Par {
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

impl Par {
    /// `threads` = 1 runs everything on the calling thread.
    pub fn new(threads: usize) -> crate::Result<Par> {
        let threads = threads.max(1);
        if threads == 1 {
            return Ok(Par { pool: None, threads });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("edgetpu-cpu-{i}"))
            .build()
            .map_err(|e| crate::Error::argument(format!("cannot start {threads} CPU threads: {e}")))?;
        Ok(Par { pool: Some(pool), threads })
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on a thread of the pool (or here, without one), so that the [`Par::rows`] calls
    /// inside it split work with `join` alone: entering the pool once per invocation instead of
    /// once per node keeps the pool's job injection (which allocates now and then) out of the
    /// kernels.
    ///
    /// While `f` runs, the pool's other threads do not sleep between the kernels' splits: each
    /// runs a job that keeps taking pending work (`rayon::yield_now`) and spins when there is
    /// none, until `f` returns or it has found nothing for [`spin_idle`] (an Edge TPU step
    /// waiting on its device, say), when it goes back to the pool's sleep. Waking a sleeping
    /// thread costs tens of microseconds, as much as a small node's whole run, so without this
    /// a second thread made many nodes slower.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let Some(pool) = &self.pool else { return f() };
        if spin_idle().is_zero() {
            return pool.install(f);
        }
        pool.install(|| {
            let done = AtomicBool::new(false);
            with_spinners(self.threads - 1, &done, rayon::current_thread_index(), f)
        })
    }

    /// Runs `f` over `out` cut into at most `threads` contiguous parts of whole `unit`-element
    /// rows. `f(first_row, rows, scratch)` gets the part's rows and its own slice of `scratch`
    /// (`scratch` is cut into `threads` equal parts). Parts smaller than `min_rows` are not split.
    pub fn rows<T: Send, F>(&self, out: &mut [T], unit: usize, min_rows: usize, scratch: &mut [u8], f: F)
    where
        F: Fn(usize, &mut [T], &mut [u8]) + Sync,
    {
        let unit = unit.max(1);
        let n_rows = out.len() / unit;
        let parts = match &self.pool {
            Some(_) => self.threads.min(n_rows / min_rows.max(1)).max(1),
            None => 1,
        };
        if parts == 1 {
            f(0, out, scratch);
            return;
        }
        let per_scratch = scratch.len() / self.threads;
        let pool = self.pool.as_ref().expect("parts > 1 only with a pool");
        if pool.current_thread_index().is_some() {
            split(out, unit, 0, n_rows, parts, scratch, per_scratch, &f);
        } else {
            pool.install(|| split(out, unit, 0, n_rows, parts, scratch, per_scratch, &f));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn split<T: Send, F>(
    out: &mut [T],
    unit: usize,
    first: usize,
    rows: usize,
    parts: usize,
    scratch: &mut [u8],
    per_scratch: usize,
    f: &F,
) where
    F: Fn(usize, &mut [T], &mut [u8]) + Sync,
{
    if parts <= 1 {
        let (s, _) = scratch.split_at_mut(per_scratch.min(scratch.len()));
        f(first, out, s);
        return;
    }
    let left_parts = parts / 2;
    let left_rows = rows * left_parts / parts;
    let (a, b) = out.split_at_mut(left_rows * unit);
    let (sa, sb) = scratch.split_at_mut((per_scratch * left_parts).min(scratch.len()));
    rayon::join(
        || split(a, unit, first, left_rows, left_parts, sa, per_scratch, f),
        || split(b, unit, first + left_rows, rows - left_rows, parts - left_parts, sb, per_scratch, f),
    );
}
