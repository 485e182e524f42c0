//! Container logs in the CRI format kubelet uses
//! (`2026-11-22T05:00:00.123456789Z stdout F hello`), one file per container start under
//! `<state>/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`.
//!
//! Writing: containerd's runc shim starts `skiff-agent log-shim <file>` for every container
//! (a `binary://` stdio URI) with the container's stdout and stderr pipes as fds 3 and 4 and
//! a readiness pipe as fd 5. The shim process outlives agent restarts, so logs never stop.
//! Files are rotated by size (`<file>.1`).
//!
//! Reading: [`read`] renders a file the way `kubectl logs` shows it (tail, since, timestamps)
//! and [`follow`] keeps streaming as it grows.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    os::fd::FromRawFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// Rotate a log file when it grows past this size.
pub const MAX_LOG_BYTES: u64 = 10 << 20;

/// The directory of one pod's logs.
pub fn pod_dir(state_dir: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    state_dir
        .join("pods")
        .join(format!("{namespace}_{name}_{uid}"))
}

/// The log file of one container start.
pub fn container_file(pod_dir: &Path, container: &str, restart: i32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart}.log"))
}

/// The `binary://` URI that makes containerd's shim run the log shim into `file`.
pub fn shim_uri(agent_binary: &Path, file: &Path) -> String {
    format!(
        "binary://{}?log-shim={}",
        agent_binary.display(),
        percent_encode(&file.to_string_lossy())
    )
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Sink {
    file: File,
    path: PathBuf,
    written: u64,
}

impl Sink {
    fn write_line(&mut self, stream: &str, line: &[u8]) {
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%fZ");
        let mut record = format!("{now} {stream} F ").into_bytes();
        record.extend_from_slice(line);
        record.push(b'\n');
        if self.file.write_all(&record).is_ok() {
            self.written += record.len() as u64;
        }
        if self.written > MAX_LOG_BYTES {
            let rotated = self.path.with_extension("log.1");
            if std::fs::rename(&self.path, &rotated).is_ok()
                && let Ok(file) = File::options().create(true).append(true).open(&self.path)
            {
                self.file = file;
                self.written = 0;
            }
        }
    }
}

/// Entry point of `skiff-agent log-shim <file>`: copy fds 3 (stdout) and 4 (stderr) into
/// `file` line by line until both close. Signals readiness by closing fd 5.
pub fn run_shim(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = File::options().create(true).append(true).open(path)?;
    let written = file.metadata().map(|m| m.len()).unwrap_or(0);
    let sink = Arc::new(Mutex::new(Sink {
        file,
        path: path.to_path_buf(),
        written,
    }));
    // SAFETY: the shim passes these descriptors open to this process and nothing else in
    // it owns them; each is wrapped exactly once.
    let (stdout, stderr, ready) = unsafe {
        (
            File::from_raw_fd(3),
            File::from_raw_fd(4),
            File::from_raw_fd(5),
        )
    };
    drop(ready);
    let copy = |input: File, stream: &'static str, sink: Arc<Mutex<Sink>>| {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(input);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if let Ok(mut sink) = sink.lock() {
                            sink.write_line(stream, &line);
                        }
                    }
                }
            }
        })
    };
    let out = copy(stdout, "stdout", sink.clone());
    let err = copy(stderr, "stderr", sink);
    let _ = out.join();
    let _ = err.join();
    Ok(())
}

/// How to render logs (the `kubectl logs` options).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only lines newer than this (RFC 3339).
    pub since_time: Option<jiff::Timestamp>,
    /// Prefix each line with its timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// One parsed CRI log line.
fn parse(line: &str) -> Option<(&str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (_stream, rest) = rest.split_once(' ')?;
    let (_tag, message) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((time, message))
}

fn render_line(line: &str, options: &LogOptions, out: &mut Vec<u8>) {
    let Some((time, message)) = parse(line) else {
        return;
    };
    if let Some(since) = options.since_time
        && time.parse::<jiff::Timestamp>().is_ok_and(|t| t < since)
    {
        return;
    }
    if options.timestamps {
        out.extend_from_slice(time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(message.as_bytes());
    out.push(b'\n');
}

/// Render a whole log file (with its rotated predecessor) as `kubectl logs` prints it.
/// Returns the rendered bytes and the file offset reached (for following). Containers may
/// write any bytes: what is not UTF-8 is shown as U+FFFD rather than failing the read.
pub fn read(path: &Path, options: &LogOptions) -> std::io::Result<(Vec<u8>, u64)> {
    let mut raw = Vec::new();
    let rotated = path.with_extension("log.1");
    if let Ok(mut f) = File::open(&rotated) {
        let _ = f.read_to_end(&mut raw);
    }
    let mut file = File::open(path)?;
    file.read_to_end(&mut raw)?;
    let offset = file.stream_position()?;
    let text = String::from_utf8_lossy(&raw);
    let lines: Vec<&str> = text.lines().collect();
    let start = options
        .tail_lines
        .map_or(0, |n| lines.len().saturating_sub(n));
    let mut out = Vec::new();
    for line in &lines[start..] {
        render_line(line, options, &mut out);
    }
    if let Some(limit) = options.limit_bytes {
        out.truncate(limit);
    }
    Ok((out, offset))
}

/// Lines appended to `path` after `offset`; returns them rendered and the new offset.
pub fn read_from(
    path: &Path,
    offset: u64,
    options: &LogOptions,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // Rotated underneath us: start over at the new file's beginning.
    let offset = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    let mut raw = Vec::new();
    file.read_to_end(&mut raw)?;
    // Only complete lines; a partial one is read next time.
    let complete = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&raw[..complete]).lines() {
        render_line(line, options, &mut out);
    }
    let reached = offset.saturating_add(u64::try_from(complete).unwrap_or(u64::MAX));
    Ok((out, reached))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, lines: &[&str]) {
        std::fs::write(path, lines.join("\n") + "\n").expect("write");
    }

    #[test]
    fn renders_tail_timestamps_and_since() {
        let dir = std::env::temp_dir().join(format!("skiff-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("0.log");
        write(
            &file,
            &[
                "2026-11-22T05:00:00.000000001Z stdout F one",
                "2026-11-22T05:00:01.000000001Z stderr F two words",
                "2026-11-22T05:00:02.000000001Z stdout F three",
            ],
        );
        let (all, offset) = read(&file, &LogOptions::default()).expect("read");
        assert_eq!(String::from_utf8_lossy(&all), "one\ntwo words\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(1),
            timestamps: true,
            ..LogOptions::default()
        };
        let (last, _) = read(&file, &tail).expect("read");
        assert_eq!(
            String::from_utf8_lossy(&last),
            "2026-11-22T05:00:02.000000001Z three\n"
        );
        let since = LogOptions {
            since_time: Some("2026-11-22T05:00:01Z".parse().expect("time")),
            ..LogOptions::default()
        };
        let (recent, _) = read(&file, &since).expect("read");
        assert_eq!(String::from_utf8_lossy(&recent), "two words\nthree\n");
        let mut f = File::options().append(true).open(&file).expect("open");
        f.write_all(
            b"2026-11-22T05:00:03.000000001Z stdout F four\n2026-11-22T05:00:04Z stdout F fi",
        )
        .expect("append");
        let (more, next) = read_from(&file, offset, &LogOptions::default()).expect("follow");
        assert_eq!(String::from_utf8_lossy(&more), "four\n");
        assert!(next > offset);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn extreme_options_and_odd_bytes_read_without_failing() {
        let dir = std::env::temp_dir().join(format!("skiff-logs-odd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("0.log");
        std::fs::write(
            &file,
            b"2026-11-22T05:00:00Z stdout F bin\xff\xfeary\n2026-11-22T05:00:01Z stdout F two\n",
        )
        .expect("write");
        let all = LogOptions {
            tail_lines: Some(usize::MAX),
            limit_bytes: Some(usize::MAX),
            since_time: Some(jiff::Timestamp::MIN),
            timestamps: false,
        };
        let (out, offset) = read(&file, &all).expect("read");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "bin\u{fffd}\u{fffd}ary\ntwo\n"
        );
        let (more, next) = read_from(&file, offset, &all).expect("follow");
        assert!(more.is_empty());
        assert_eq!(next, offset);
        let none = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert!(read(&file, &none).expect("read").0.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn shim_uri_carries_one_query_pair() {
        let uri = shim_uri(Path::new("/usr/bin/skiff-agent"), Path::new("/a b/0.log"));
        assert_eq!(uri, "binary:///usr/bin/skiff-agent?log-shim=/a%20b/0.log");
    }
}
