//! Files the CLI writes outside the store (exports, charts): never inside the store, and
//! never left half-written. Each is written to a temporary file beside its target and renamed
//! over it only once complete, so a failed export leaves an existing file as it was. The
//! path `-` is standard output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{CliError, CliResult};

/// Refuses `path` if it is one of the store's own files or directories (following
/// symlinks): an export aimed at `MANIFEST` or a segment would destroy the store.
pub fn refuse_inside_store(store: &Path, path: &Path) -> CliResult {
    if is_stdout(path) {
        return Ok(());
    }
    let Ok(store) = store.canonicalize() else {
        return Ok(());
    };
    let resolved = match path.canonicalize() {
        Ok(p) => p,
        Err(_) => {
            // Not there yet: its nearest existing ancestor decides.
            let mut tail = Vec::new();
            let mut cur = path.to_path_buf();
            loop {
                if let Ok(p) = cur.canonicalize() {
                    break tail.iter().rev().fold(p, |acc: PathBuf, c| acc.join(c));
                }
                match (cur.file_name().map(|n| n.to_owned()), cur.parent()) {
                    (Some(name), Some(parent)) => {
                        tail.push(name);
                        cur = if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        };
                    }
                    _ => return Ok(()),
                }
            }
        }
    };
    let Ok(inside) = resolved.strip_prefix(&store) else {
        return Ok(());
    };
    // The store's own files and directories (docs/FORMAT.md, "Store layout"); other files
    // beside them, such as the demo's export and chart, are fine.
    let first = inside.components().next().map(|c| c.as_os_str().to_owned());
    let own = match first.as_ref().and_then(|f| f.to_str()) {
        None => true,
        Some(f) => ["MANIFEST", "MANIFEST.tmp", "LOCK", "segments", "locks"].contains(&f),
    };
    if own {
        return Err(CliError::Usage(format!(
            "{} is a file of the store {}: writing there would destroy it; choose another path",
            path.display(),
            store.display()
        )));
    }
    Ok(())
}

/// Whether `path` names standard output (`-o -`).
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// What an export or chart is written through: a buffered file, or standard output.
pub enum Sink {
    File(BufWriter<File>),
    Stdout(BufWriter<io::Stdout>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(w) => w.write(buf),
            Sink::Stdout(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(w) => w.write_all(buf),
            Sink::Stdout(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Stdout(w) => w.flush(),
        }
    }
}

/// A file being written: a temporary beside `path`, renamed over `path` by [`finish`]; or
/// standard output, for the path `-`; or, for a path that is not a regular file (a FIFO, a
/// device such as `/dev/null`), that file itself, written in place as a shell redirection
/// would. A symbolic link is followed: the file it names is replaced, the link stays.
pub struct OutFile {
    target: Target,
    done: bool,
}

enum Target {
    Stdout,
    InPlace,
    /// The file, and the temporary renamed over it.
    Replace(PathBuf, PathBuf),
}

impl OutFile {
    /// Starts writing `path` (creating its directory if needed), or standard output for `-`.
    pub fn create(path: &Path) -> CliResult<(OutFile, Sink)> {
        let cannot =
            |p: &Path, e: io::Error| CliError::Usage(format!("cannot create {}: {e}", p.display()));
        if is_stdout(path) {
            let out = OutFile {
                target: Target::Stdout,
                done: false,
            };
            return Ok((out, Sink::Stdout(BufWriter::new(io::stdout()))));
        }
        // What the path names, links followed: a FIFO or a device (a pipe behind /dev/stdout)
        // is opened through the path given, and written in place.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| cannot(path, e))?;
            let out = OutFile {
                target: Target::InPlace,
                done: false,
            };
            return Ok((out, Sink::File(BufWriter::new(f))));
        }
        let path = &resolve_links(path)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| cannot(parent, e))?;
        }
        let name = path.file_name().map_or_else(
            || std::ffi::OsString::from("out"),
            std::ffi::OsStr::to_owned,
        );
        // ".NAME.steplog-PID.tmp", NAME cut so that the whole stays within 255 bytes.
        let suffix = format!(".steplog-{}.tmp", std::process::id());
        let name = name.to_string_lossy();
        let mut cut = name.len().min(255 - 1 - suffix.len());
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        let tmp_name = format!(".{}{suffix}", &name[..cut]);
        let tmp = path.with_file_name(tmp_name);
        let f = File::create(&tmp).map_err(|e| cannot(&tmp, e))?;
        let out = OutFile {
            target: Target::Replace(path.to_owned(), tmp),
            done: false,
        };
        Ok((out, Sink::File(BufWriter::new(f))))
    }

    /// Flushes what was written; a replaced file is synced and put in place.
    pub fn finish(mut self, sink: Sink) -> CliResult {
        let f = match sink {
            Sink::Stdout(mut w) => {
                w.flush()?;
                None
            }
            Sink::File(w) => Some(w.into_inner().map_err(|e| CliError::Io(e.into_error()))?),
        };
        if let (Target::Replace(path, tmp), Some(f)) = (&self.target, f) {
            f.sync_all()?;
            drop(f);
            std::fs::rename(tmp, path)?;
        }
        self.done = true;
        Ok(())
    }
}

/// `path` with symbolic links followed to the file they name (which may not exist yet); a
/// loop (or a chain of more than 40 links, as the kernel counts) is refused.
fn resolve_links(path: &Path) -> CliResult<PathBuf> {
    let mut cur = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&cur) {
            Ok(target) => {
                cur = match cur.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                }
            }
            Err(_) => return Ok(cur),
        }
    }
    Err(CliError::Usage(format!(
        "{}: a loop of symbolic links (or more than 40 of them)",
        path.display()
    )))
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if let (false, Target::Replace(_, tmp)) = (self.done, &self.target) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
