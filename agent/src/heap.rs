//! The agent's heap, kept small. glibc's malloc keeps memory freed in the middle of its
//! heap for reuse instead of returning it to the kernel: after start-up (the kernel's BTF
//! parsed to load the eBPF programs, the first lists of pods, Services and EndpointSlices)
//! and after a burst of pod starts, about 10 MiB of the agent's resident memory was free
//! heap nobody used. [`keep_trimmed`] hands such memory back every little while when there
//! is enough of it to matter; `/metrics` shows the heap in use and free
//! (`skiff_agent_heap_bytes`).

use std::{fmt::Write as _, time::Duration};

/// Free heap below this is left alone: not worth a walk over the heap.
const TRIM_ABOVE: u64 = 1 << 20;

/// The heap as glibc's allocator sees it, summed over its arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapUsage {
    /// Bytes handed out and not yet freed (including large blocks mapped on their own).
    pub in_use: u64,
    /// Bytes in the allocator's free chunks (resident until trimmed; a trimmed chunk still
    /// counts here, its pages no longer do).
    pub free: u64,
}

/// The heap now; `None` where the allocator is not glibc's.
pub fn usage() -> Option<HeapUsage> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(HeapUsage {
            in_use: (info.uordblks + info.hblkhd) as u64,
            free: info.fordblks as u64,
        })
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Return the heap's free pages to the kernel now.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory of glibc's heap that no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Every `period`, release the free heap if there is more than a megabyte of it. glibc
/// still counts chunks as free after their pages went back to the kernel, so once the heap
/// is fragmented this trims on every tick; a trim of an already trimmed heap only walks its
/// free chunks.
pub async fn keep_trimmed(period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if usage().is_some_and(|heap| heap.free > TRIM_ABOVE) {
            release_free();
        }
    }
}

/// Append `skiff_agent_heap_bytes{state="in_use"|"free"}` in the Prometheus text format.
pub fn render(out: &mut String) {
    let Some(heap) = usage() else { return };
    let name = "skiff_agent_heap_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} The agent's heap: bytes in use, and bytes freed but held by the allocator."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name}{{state=\"in_use\"}} {}", heap.in_use);
    let _ = writeln!(out, "{name}{{state=\"free\"}} {}", heap.free);
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn live_allocations_count_as_in_use() {
        // Small blocks: these come from this thread's arena, not from mappings of their own.
        // Whatever other tests free meanwhile, these 8 MiB are in use while held.
        let blocks: Vec<Box<[u8; 512]>> = (0..16_384).map(|_| Box::new([1u8; 512])).collect();
        let during = usage().expect("glibc").in_use;
        assert!(
            during >= 8 << 20,
            "8 MiB of blocks held, the heap says {during} bytes in use"
        );
        drop(blocks);
        release_free();
        assert!(usage().is_some());
    }

    #[test]
    fn renders_both_states() {
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE skiff_agent_heap_bytes gauge\n"));
        assert!(out.contains("skiff_agent_heap_bytes{state=\"in_use\"} "));
        assert!(out.contains("skiff_agent_heap_bytes{state=\"free\"} "));
    }
}
