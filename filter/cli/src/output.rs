//! Writing files, the one way every command does it: never over an existing
//! file unless asked (`--force`), never over an audit log even then, and
//! atomically (a temporary file in the same directory, renamed into place,
//! so that an interrupted run leaves the old file whole or no file at all).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use pqguard_core::audit::LINE_PREFIX;

/// The exit code of a refusal to overwrite a file.
pub const REFUSED: u8 = 3;

/// Why a file was not written.
#[derive(Debug)]
pub enum WriteError {
    /// Writing would have replaced a file it must not (exit [`REFUSED`]).
    Refused(String),
    /// An I/O error (exit 2).
    Io(String),
}

impl WriteError {
    /// Prints the message and gives the exit code, for a command that
    /// stops here.
    pub fn report(self) -> Result<ExitCode, String> {
        match self {
            Self::Refused(message) => {
                eprintln!("pqguard: {message}");
                Ok(ExitCode::from(REFUSED))
            }
            Self::Io(message) => Err(message),
        }
    }
}

/// Whether `path` may be written: nothing there, or (with `force`) a file
/// that is neither one of `inputs` nor holds an audit record (any
/// `pqguard.audit ` line, plain or gzip-compressed). Checked before a long
/// run, so that a mistaken path is refused at once; [`write_atomic`]
/// checks again when it writes.
pub fn check_destination(path: &str, force: bool, inputs: &[String]) -> Result<(), WriteError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(WriteError::Io(format!("writing {path}: {e}"))),
    };
    if meta.is_dir() {
        return Err(WriteError::Io(format!(
            "writing {path}: a directory; give a file name"
        )));
    }
    if !force {
        return Err(WriteError::Refused(format!(
            "{path} exists: not overwritten (--force replaces it, unless it holds audit records)"
        )));
    }
    if let Some(input) = inputs.iter().find(|i| same_file(i, path)) {
        return Err(WriteError::Refused(format!(
            "{path} is the log {input} being read: not overwritten, even with --force"
        )));
    }
    match holds_audit_records(path) {
        Ok(false) => Ok(()),
        Ok(true) => Err(WriteError::Refused(format!(
            "{path} holds pqguard.audit records: an audit log is never overwritten, even with --force; write the page elsewhere"
        ))),
        Err(e) => Err(WriteError::Refused(format!(
            "{path}: cannot tell whether it holds audit records ({e}): not overwritten, even with --force"
        ))),
    }
}

/// Writes `contents` to `path` through a temporary file in the same
/// directory, synced, then renamed into place. Without `force` an existing
/// `path` is never replaced (the file appears only if nothing was there,
/// however close a race); with `force` it is, after the checks of
/// [`check_destination`].
pub fn write_atomic(
    path: &str,
    contents: &[u8],
    force: bool,
    inputs: &[String],
) -> Result<(), WriteError> {
    check_destination(path, force, inputs)?;
    let io = |e: io::Error| WriteError::Io(format!("writing {path}: {e}"));
    let target = Path::new(path);
    let (tmp, mut file) = temporary(target).map_err(io)?;
    let result = (|| {
        file.write_all(contents).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        if force {
            fs::rename(&tmp, target).map_err(io)
        } else {
            place_new(&tmp, target, path)
        }
    })();
    // After a rename the temporary name is gone; after a link it is a
    // second name; after a failure it is the only one: remove it.
    let _ = fs::remove_file(&tmp);
    result?;
    sync_directory(target);
    Ok(())
}

/// Moves `tmp` to `target` only if `target` does not exist: a hard link
/// fails on an existing name, atomically. Where links are not supported,
/// check then rename.
fn place_new(tmp: &Path, target: &Path, path: &str) -> Result<(), WriteError> {
    let refused = || {
        WriteError::Refused(format!(
            "{path} exists: not overwritten (--force replaces it, unless it holds audit records)"
        ))
    };
    match fs::hard_link(tmp, target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(refused()),
        Err(_) => {
            if fs::symlink_metadata(target).is_ok() {
                return Err(refused());
            }
            fs::rename(tmp, target).map_err(|e| WriteError::Io(format!("writing {path}: {e}")))
        }
    }
}

/// A new file next to `target`: `.NAME.pqguard-PID-N.tmp`.
fn temporary(target: &Path) -> io::Result<(PathBuf, File)> {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    let mut last = None;
    for n in 0..100u32 {
        let tmp = dir.join(format!(".{name}.pqguard-{}-{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary file name free")))
}

/// Makes the rename durable (the directory entry); best effort.
fn sync_directory(target: &Path) {
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Whether two paths name the same file (same device and inode on unix).
fn same_file(a: &str, b: &str) -> bool {
    if a == "-" {
        return false;
    }
    match (fs::metadata(a), fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt as _;
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        },
        _ => false,
    }
}

/// Whether the file has a `pqguard.audit ` line (read as a log: gzip
/// decompressed).
fn holds_audit_records(path: &str) -> Result<bool, String> {
    let mut found = false;
    crate::logs::for_each_line(&[path.to_owned()], |_, _, line| {
        found |= line.contains(LINE_PREFIX);
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pqguard-output-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_written_and_an_existing_one_kept() {
        let d = dir("new");
        let path = d.join("page.html").to_string_lossy().into_owned();
        write_atomic(&path, b"one", false, &[]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        let e = write_atomic(&path, b"two", false, &[]).unwrap_err();
        assert!(
            matches!(e, WriteError::Refused(ref m) if m.contains("exists")),
            "{e:?}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two", true, &[]).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(entries(&d), ["page.html"], "no temporary file left");
    }

    #[test]
    fn an_audit_log_or_an_input_is_never_replaced() {
        let d = dir("audit");
        let log = d.join("envoy.log").to_string_lossy().into_owned();
        let text = "[info] x\n[info][wasm] pqguard: pqguard.audit {\"v\":1}\n";
        fs::write(&log, text).unwrap();
        for force in [false, true] {
            let e = write_atomic(&log, b"<html>", force, &[]).unwrap_err();
            assert!(matches!(e, WriteError::Refused(_)), "{e:?}");
        }
        assert_eq!(fs::read_to_string(&log).unwrap(), text);
        let plain = d.join("other.log").to_string_lossy().into_owned();
        fs::write(&plain, "no records\n").unwrap();
        let e = write_atomic(&plain, b"<html>", true, std::slice::from_ref(&plain)).unwrap_err();
        assert!(
            matches!(e, WriteError::Refused(ref m) if m.contains("being read")),
            "{e:?}"
        );
        assert_eq!(entries(&d), ["envoy.log", "other.log"]);
        let e = write_atomic(&d.to_string_lossy(), b"x", true, &[]).unwrap_err();
        assert!(matches!(e, WriteError::Io(_)), "{e:?}");
    }
}
