//! Independent work spread over a few threads, results in input order.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Memory the kernel could give new work without swapping
/// (`MemAvailable`), in bytes; `None` where /proc/meminfo does not say.
pub fn memory_available() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// `f` applied to each item on up to `threads` threads, which take the next
/// item as they finish one; the results come back in the items' order.
pub fn map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break done };
                        done.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_input_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..20).collect();
        // Early items sleep longest, so they finish last.
        let out = map(&items, 4, |&i| {
            std::thread::sleep(std::time::Duration::from_millis(20 - i));
            (i * 2, std::thread::current().id())
        });
        assert_eq!(
            out.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            (0..20).map(|i| i * 2).collect::<Vec<_>>()
        );
        let threads: std::collections::HashSet<_> = out.iter().map(|(_, t)| *t).collect();
        assert!(threads.len() > 1 && threads.len() <= 4, "{} threads", threads.len());
    }

    #[test]
    fn available_memory_is_read_from_the_kernel() {
        let bytes = memory_available().expect("Linux has MemAvailable");
        assert!(bytes > 1 << 20, "{bytes}");
    }

    #[test]
    fn one_thread_or_one_item_runs_inline() {
        let here = std::thread::current().id();
        assert_eq!(
            map(&[1, 2, 3], 1, |&i| (i, std::thread::current().id())),
            [(1, here), (2, here), (3, here)]
        );
        assert!(map(&[] as &[u8], 4, |&i| i).is_empty());
    }
}
