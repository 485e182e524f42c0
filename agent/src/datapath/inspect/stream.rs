//! `monitor` and `trace`: events read from the ring buffer while a deadline in the config
//! map keeps the programs producing them.

use std::time::{Duration, Instant};

use skiff_ebpf_common::{config::TraceFilter, events::Event};

use super::render::{Names, render_event};
use crate::datapath::{DatapathError, conntrack_gc::monotonic_ns, maps::Maps};

/// How far ahead the event deadline is pushed; a killed CLI stops events after this.
const DEADLINE_AHEAD: Duration = Duration::from_secs(3);

/// Read events until the duration or count is reached (monitor without a filter, trace
/// with one), keeping the kernel's deadline ahead of now.
pub(super) fn stream(
    maps: &mut Maps,
    filter: Option<TraceFilter>,
    duration: Option<Duration>,
    count: Option<usize>,
) -> Result<(), DatapathError> {
    let mut names = Names::read(&maps.lb);
    // Events a previous session left unread are not this session's.
    while maps.events.next().is_some() {}
    let started = Instant::now();
    let start_ns = monotonic_ns();
    let mut seen = 0usize;
    let mut last_push = None::<Instant>;
    let arm = |maps: &mut Maps, until: u64| {
        maps.config.update(|c| match filter {
            Some(f) => {
                c.trace = f;
                c.trace_until = until;
            }
            None => c.monitor_until = until,
        })
    };
    let result = loop {
        if duration.is_some_and(|d| started.elapsed() >= d) || count.is_some_and(|c| seen >= c) {
            break Ok(());
        }
        if last_push.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            let until = monotonic_ns() + DEADLINE_AHEAD.as_nanos() as u64;
            if let Err(e) = arm(maps, until) {
                break Err(e);
            }
            last_push = Some(Instant::now());
        }
        let mut any = false;
        while let Some(item) = maps.events.next() {
            any = true;
            if item.len() < std::mem::size_of::<Event>() {
                continue;
            }
            // SAFETY: the kernel wrote an `Event` (plain integers, any bit pattern valid)
            // of at least this size; read_unaligned copes with the ring's alignment.
            let event: Event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            drop(item);
            if event.timestamp < start_ns {
                continue;
            }
            if names.missing(&event) {
                // A Service or backend newer than the snapshot.
                names = Names::read(&maps.lb);
            }
            let line = render_event(&event, start_ns, &|id| names.backend(id), &|id| {
                names.frontend(id)
            });
            println!("{line}");
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                break;
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let _ = arm(maps, 0);
    result
}
