//! How one forward pass shares rayon's worker threads.
//!
//! A pass is some 70 layers, many of them 0.05–0.2 ms long, each split between the threads.
//! Two costs dominate on two cores if nothing is done: a call from outside the pool hands every
//! layer over to a worker and waits for it, and a worker that found nothing to do for a few tens
//! of microseconds goes to sleep, so the next layer's second half waits for a wake-up (or is done
//! by the first thread alone). So the whole pass runs on one worker, and the other workers poll
//! for its tasks until it ends: the same trade ONNX Runtime makes by spinning its pool.

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `work` on a rayon worker with the pool's other workers (if any) polling for its tasks,
/// where the caller is outside the pool; else right here (on wasm, or inside the pool, whose
/// other workers have work of their own). On one thread this still moves the pass to the
/// worker: measured 8.3 against 8.8 ms per 224-px pass on the calling thread (medians of five
/// paired runs; glibc's trim and mmap thresholds made no difference, the cause is not known).
pub fn in_worker<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    #[cfg(not(target_arch = "wasm32"))]
    if rayon::current_thread_index().is_none() {
        let done = AtomicBool::new(false);
        return rayon::scope(|scope| with_polling_workers(scope, &done, work));
    }
    work()
}

/// Runs `work` on this worker of `scope`'s pool while up to `current_num_threads() − 1` others
/// run rayon's pending tasks until it returns.
///
/// A poller never waits on anything but `done`, which `work` sets on return, and `work` never
/// waits for a poller: a poller that is picked up by the thread running `work` (it was not
/// stolen in time) returns at once, so the pass cannot end up waiting on itself.
pub fn with_polling_workers<'scope, T>(scope: &rayon::Scope<'scope>, done: &'scope AtomicBool, work: impl FnOnce() -> T) -> T {
    let owner = rayon::current_thread_index();
    for _ in 1..rayon::current_num_threads() {
        scope.spawn(move |_| poll_until(done, owner));
    }
    let out = work();
    done.store(true, Ordering::Release);
    out
}

fn poll_until(done: &AtomicBool, owner: Option<usize>) {
    if rayon::current_thread_index() == owner {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::time::{Duration, Instant};

    /// Concurrent passes from outside the pool and passes from inside it, with nested parallel
    /// loops as the layers have: every one returns its own answer, and none hangs (a hang
    /// aborts the test process after a minute rather than stalling CI).
    #[test]
    fn passes_from_inside_and_outside_the_pool_all_finish() {
        let finished = std::sync::Arc::new(AtomicBool::new(false));
        let watchdog = {
            let finished = finished.clone();
            std::thread::spawn(move || {
                let start = Instant::now();
                while !finished.load(Ordering::Acquire) {
                    if start.elapsed() > Duration::from_secs(60) {
                        eprintln!("in_worker: passes still running after 60 s (deadlock)");
                        std::process::abort();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let pass = |seed: u64| -> u64 {
            (0..40u64).map(|layer| (0..2_000u64).into_par_iter().map(|i| (i * layer) ^ seed).sum::<u64>()).sum()
        };
        let expected: Vec<u64> = (0..6).map(pass).collect();
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let outside: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..6u64)
                    .map(|seed| {
                        let pool = &pool;
                        s.spawn(move || {
                            let done = AtomicBool::new(false);
                            pool.scope(|scope| with_polling_workers(scope, &done, || pass(seed)))
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(outside, expected, "{threads} threads, from outside the pool");
            let inside: Vec<u64> = pool.install(|| (0..6u64).into_par_iter().map(|seed| in_worker(|| pass(seed))).collect());
            assert_eq!(inside, expected, "{threads} threads, from inside the pool");
        }
        finished.store(true, Ordering::Release);
        watchdog.join().unwrap();
    }
}
