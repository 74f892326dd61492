//! Reading logs as operators keep them: plain or gzip-compressed (told by
//! the magic bytes, not the name: `envoy.log.2.gz`, or a `.1` that was
//! compressed in place), rotated into several files read in the order
//! given, or standard input; line by line, so memory stays flat whatever the
//! size of the log. On a terminal, a progress line on stderr.

use std::borrow::Cow;
use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read};
use std::rc::Rc;
use std::time::{Duration, Instant};

use flate2::bufread::MultiGzDecoder;

/// The two bytes every gzip member starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The longest line read. Envoy's lines, audit records included, are far
/// shorter (an audit record holds arguments only as a digest unless
/// `include_arguments`, and request bodies are bounded); a longer "line" is
/// an error rather than an unbounded allocation.
pub const MAX_LINE: usize = 256 << 20;

/// The read buffer (of the file, and of the decompressed stream).
const BUFFER: usize = 256 << 10;

/// Reads every line of `paths` in order (`-` or no path at all: stdin), and
/// calls `f(source, line_number, text)` for each, the line without its
/// ending (`\n` or `\r\n`; invalid UTF-8 replaced, as in a whole-text read).
/// An I/O error, a corrupt or truncated gzip stream, or a line longer than
/// [`MAX_LINE`] stops the reading with a message naming the file.
pub fn for_each_line(paths: &[String], mut f: impl FnMut(&str, usize, &str)) -> Result<(), String> {
    let stdin = ["-".to_owned()];
    let paths = if paths.is_empty() { &stdin[..] } else { paths };
    let progress = Progress::new(paths.len());
    let result = paths
        .iter()
        .enumerate()
        .try_for_each(|(index, path)| read_one(path, index, &progress, &mut f));
    progress.clear();
    result
}

/// True when the log is (or starts as) a gzip stream.
pub fn is_gzip(start: &[u8]) -> bool {
    start.starts_with(&GZIP_MAGIC)
}

fn read_one(
    path: &str,
    index: usize,
    progress: &Progress,
    f: &mut impl FnMut(&str, usize, &str),
) -> Result<(), String> {
    let read = Rc::new(Cell::new(0u64));
    let (raw, size): (Box<dyn Read>, Option<u64>) = if path == "-" {
        if io::stdin().is_terminal() {
            return Err(
                "no LOG given and standard input is a terminal: name the log files (oldest first), or pipe one in"
                    .to_owned(),
            );
        }
        (Box::new(io::stdin().lock()), None)
    } else {
        let file = File::open(path).map_err(|e| format!("reading {path}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("reading {path}: {e}"))?;
        if meta.is_dir() {
            return Err(format!("reading {path}: a directory, not a log file"));
        }
        (Box::new(file), meta.is_file().then_some(meta.len()))
    };
    let counted = Counted {
        inner: raw,
        read: Rc::clone(&read),
    };
    let mut input = BufReader::with_capacity(BUFFER, counted);
    let start = input
        .fill_buf()
        .map_err(|e| format!("reading {path}: {e}"))?;
    let gzip = is_gzip(start);
    let mut lines: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(input)))
    } else {
        Box::new(input)
    };
    let what = |e: io::Error| -> String {
        if gzip
            && matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::Other
            )
        {
            format!(
                "reading {path}: corrupt gzip stream after {} compressed bytes: {e}",
                read.get()
            )
        } else if gzip && e.kind() == io::ErrorKind::UnexpectedEof {
            format!(
                "reading {path}: truncated gzip stream (it ends after {} bytes, before the end of its data): was it copied while still being compressed?",
                read.get()
            )
        } else {
            format!("reading {path}: {e}")
        }
    };
    let mut buf = Vec::with_capacity(4096);
    let mut number = 0usize;
    while next_line(&mut *lines, &mut buf).map_err(&what)? {
        number += 1;
        if buf.len() > MAX_LINE {
            return Err(format!(
                "reading {path}: line {number} is longer than {} MiB: not a log line pqguard reads",
                MAX_LINE >> 20
            ));
        }
        let text: Cow<'_, str> = String::from_utf8_lossy(&buf);
        f(path, number, &text);
        if buf.capacity() > 1 << 20 {
            buf = Vec::with_capacity(4096);
        }
        progress.tick(path, index, read.get(), size);
    }
    Ok(())
}

/// The next line into `buf`, without its `\n` or `\r\n`; false at the end.
/// Reads at most [`MAX_LINE`] + 1 bytes of a line (more: `buf` is longer
/// than [`MAX_LINE`] and the caller stops).
fn next_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    let limit = MAX_LINE as u64 + 2;
    let n = input.take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(true)
}

/// A reader that counts the bytes it hands out (for the progress line and
/// for naming where a gzip stream broke).
struct Counted<R> {
    inner: R,
    read: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

/// `pqguard: envoy.log.2.gz (2 of 3): 1.2 GiB of 3.4 GiB read`, on stderr
/// about once a second once a run has lasted a second, when stderr is a
/// terminal; nothing otherwise.
struct Progress {
    enabled: bool,
    files: usize,
    started: Instant,
    last: Cell<Option<Instant>>,
    lines_checked: Cell<u32>,
}

impl Progress {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(files: usize) -> Self {
        Self {
            enabled: io::stderr().is_terminal(),
            files,
            started: Instant::now(),
            last: Cell::new(None),
            lines_checked: Cell::new(0),
        }
    }

    fn tick(&self, path: &str, index: usize, read: u64, size: Option<u64>) {
        if !self.enabled {
            return;
        }
        // Look at the clock every 4096 lines only.
        let n = self.lines_checked.get().wrapping_add(1);
        self.lines_checked.set(n);
        if !n.is_multiple_of(4096) {
            return;
        }
        let now = Instant::now();
        let since = self.last.get().unwrap_or(self.started);
        if now.duration_since(since) < Self::EVERY {
            return;
        }
        self.last.set(Some(now));
        let name = if path == "-" { "stdin" } else { path };
        let of = if self.files > 1 {
            format!(" ({} of {})", index + 1, self.files)
        } else {
            String::new()
        };
        let total = match size {
            Some(size) if size > 0 => format!(
                " of {} ({} %)",
                human(size),
                read.saturating_mul(100) / size
            ),
            _ => String::new(),
        };
        eprint!(
            "\r\x1b[2Kpqguard: {name}{of}: {}{total} read, {} s",
            human(read),
            now.duration_since(self.started).as_secs()
        );
    }

    fn clear(&self) {
        if self.enabled && self.last.get().is_some() {
            eprint!("\r\x1b[2K");
        }
    }
}

/// Bytes for a person: `512 B`, `3.4 MiB`, `1.2 GiB`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS.get(unit).copied().unwrap_or("TiB"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn lines_of(paths: &[String]) -> Result<Vec<(String, usize, String)>, String> {
        let mut out = Vec::new();
        for_each_line(paths, |s, n, t| out.push((s.to_owned(), n, t.to_owned())))?;
        Ok(out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn temp(name: &str, data: &[u8]) -> String {
        let dir = std::env::temp_dir().join(format!("pqguard-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn plain_and_gzip_give_the_same_lines_as_str_lines() {
        let text = "a\r\nb\n\nnot utf-8: \u{fffd}\nlast without newline";
        let raw = text.replace('\u{fffd}', "\u{0}").into_bytes();
        let raw: Vec<u8> = raw.iter().map(|&b| if b == 0 { 0xff } else { b }).collect();
        let plain = temp("plain.log", &raw);
        let gz = temp("rotated.1", &gzip(&raw));
        let expected: Vec<String> = text.lines().map(str::to_owned).collect();
        for path in [&plain, &gz] {
            let got = lines_of(std::slice::from_ref(path)).unwrap();
            assert_eq!(
                got.iter().map(|l| l.2.clone()).collect::<Vec<_>>(),
                expected
            );
            assert_eq!(got.last().map(|l| l.1), Some(5));
        }
        // Two files in order; numbering restarts in each, names kept.
        let both = lines_of(&[gz.clone(), plain.clone()]).unwrap();
        assert_eq!(both.len(), 10);
        assert_eq!((both[5].0.as_str(), both[5].1), (plain.as_str(), 1));
        // Concatenated gzip members are one stream (`cat a.gz b.gz`).
        let mut two = gzip(b"one\n");
        two.extend(gzip(b"two\n"));
        let multi = temp("multi.gz", &two);
        let got = lines_of(&[multi]).unwrap();
        assert_eq!(
            got.iter().map(|l| l.2.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
    }

    #[test]
    fn a_corrupt_or_truncated_gzip_is_an_error_naming_the_file() {
        let data: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let gz = gzip(&data);
        let mut corrupt = gz.clone();
        let middle = corrupt.len() / 2;
        for b in &mut corrupt[middle..middle + 16] {
            *b ^= 0x5a;
        }
        let path = temp("corrupt.gz", &corrupt);
        let e = lines_of(std::slice::from_ref(&path)).unwrap_err();
        assert!(
            e.starts_with(&format!("reading {path}: corrupt gzip stream")),
            "{e}"
        );
        let path = temp("cut.gz", &gz[..gz.len() / 2]);
        let e = lines_of(std::slice::from_ref(&path)).unwrap_err();
        assert!(
            e.starts_with(&format!("reading {path}: truncated gzip stream")),
            "{e}"
        );
        let e = lines_of(&["/nonexistent/envoy.log".to_owned()]).unwrap_err();
        assert!(e.starts_with("reading /nonexistent/envoy.log: "), "{e}");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
        assert_eq!(human(1_288_490_189), "1.2 GiB");
    }
}
