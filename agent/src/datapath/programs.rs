//! A node's eBPF programs with the kernel's run statistics (what `bpftool prog show` prints
//! as `run_cnt` and `run_time_ns`): how often each hook ran and how much CPU it took. The
//! programs are found by the maps they use: every program that references one of the
//! node's pinned maps is that node's, so three agents on one kernel stay apart.
//!
//! The kernel only counts while someone holds run-time statistics on
//! ([`RunTimeStats::enable`]); `skiff-agent bpf programs --sample` and `cargo xtask bench
//! net` do so for as long as they measure.

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::Duration,
};

use aya::{
    maps::MapInfo,
    programs::loaded_programs,
    sys::{Stats, enable_stats},
};

use super::DatapathError;

/// One loaded program of the node and its counters so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// The kernel's program id.
    pub id: u32,
    /// The program's name (its function name in `ebpf/programs`, at most 15 bytes).
    pub name: String,
    /// Times it ran while statistics were on.
    pub runs: u64,
    /// CPU time it took while statistics were on.
    pub run_time: Duration,
}

/// Run-time statistics switched on in the kernel for as long as this lives (the kernel
/// counts while any holder keeps its descriptor open).
pub struct RunTimeStats {
    _descriptor: OwnedFd,
}

impl RunTimeStats {
    /// Ask the kernel to count runs and run time of every program (≥ 5.8).
    pub fn enable() -> Result<Self, DatapathError> {
        enable_stats(Stats::RunTime)
            .map(|descriptor| Self {
                _descriptor: descriptor,
            })
            .map_err(|e| DatapathError::Setting(format!("enabling eBPF run-time statistics: {e}")))
    }
}

/// The ids of the maps pinned in `dir`.
fn pinned_map_ids(dir: &Path) -> Result<BTreeSet<u32>, DatapathError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DatapathError::Io {
        what: "listing pinned maps in",
        path: dir.to_owned(),
        source,
    })?;
    let ids = entries
        .filter_map(Result::ok)
        .filter_map(|entry| MapInfo::from_pin(entry.path()).ok())
        .map(|info| info.id())
        .collect();
    Ok(ids)
}

/// Every loaded program that uses one of the maps pinned in `dir` (a node's datapath),
/// by id.
pub fn node_programs(dir: &Path) -> Result<Vec<ProgramStats>, DatapathError> {
    let maps = pinned_map_ids(dir)?;
    if maps.is_empty() {
        return Err(DatapathError::Io {
            what: "no pinned maps in",
            path: PathBuf::from(dir),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut programs = Vec::new();
    // A program unloaded while the kernel's list is walked cannot be opened: not ours to
    // count any more.
    for info in loaded_programs().filter_map(Result::ok) {
        let Ok(Some(used)) = info.map_ids() else {
            continue;
        };
        if !used.iter().any(|id| maps.contains(id)) {
            continue;
        }
        programs.push(ProgramStats {
            id: info.id(),
            name: info.name_as_str().unwrap_or("?").to_owned(),
            runs: info.run_count(),
            run_time: info.run_time(),
        });
    }
    programs.sort_by_key(|p| p.id);
    Ok(programs)
}

/// What each program of `after` ran since `before` (a program that was not there before
/// counts from zero: it was loaded in between).
pub fn difference(before: &[ProgramStats], after: &[ProgramStats]) -> Vec<ProgramStats> {
    let earlier: BTreeMap<u32, &ProgramStats> = before.iter().map(|p| (p.id, p)).collect();
    after
        .iter()
        .map(|program| match earlier.get(&program.id) {
            Some(old) => ProgramStats {
                runs: program.runs.saturating_sub(old.runs),
                run_time: program.run_time.saturating_sub(old.run_time),
                ..program.clone()
            },
            None => program.clone(),
        })
        .collect()
}

/// Runs and run time summed per program name (the copies several nodes load).
pub fn by_name(programs: &[ProgramStats]) -> BTreeMap<String, (u64, Duration)> {
    let mut totals: BTreeMap<String, (u64, Duration)> = BTreeMap::new();
    for program in programs {
        let entry = totals.entry(program.name.clone()).or_default();
        entry.0 += program.runs;
        entry.1 += program.run_time;
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(id: u32, name: &str, runs: u64, ns: u64) -> ProgramStats {
        ProgramStats {
            id,
            name: name.to_owned(),
            runs,
            run_time: Duration::from_nanos(ns),
        }
    }

    #[test]
    fn difference_sums_by_name_and_counts_new_programs_from_zero() {
        let before = [
            program(1, "connect4", 10, 1_000),
            program(2, "tc_pod", 5, 500),
        ];
        let after = [
            program(1, "connect4", 30, 3_000),
            program(2, "tc_pod", 5, 500),
            program(7, "connect4", 4, 400),
        ];
        let totals = by_name(&difference(&before, &after));
        assert_eq!(totals["connect4"], (24, Duration::from_nanos(2_400)));
        assert_eq!(totals["tc_pod"], (0, Duration::ZERO));
    }
}
