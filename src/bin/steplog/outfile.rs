//! Files the CLI writes outside the store (exports, charts): never inside the store, and
//! never left half-written. Each is written to a temporary file beside its target and renamed
//! over it only once complete, so a failed export leaves an existing file as it was.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::commands::{CliError, CliResult};

/// Refuses `path` if it is one of the store's own files or directories (following
/// symlinks): an export aimed at `MANIFEST` or a segment would destroy the store.
pub fn refuse_inside_store(store: &Path, path: &Path) -> CliResult {
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

/// A file being written: a temporary beside `path`, renamed over `path` by [`finish`].
pub struct OutFile {
    path: PathBuf,
    tmp: PathBuf,
    done: bool,
}

impl OutFile {
    /// Starts writing `path` (creating its directory if needed).
    pub fn create(path: &Path) -> CliResult<(OutFile, BufWriter<File>)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", parent.display())))?;
        }
        let name = path.file_name().map_or_else(
            || std::ffi::OsString::from("out"),
            std::ffi::OsStr::to_owned,
        );
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(&name);
        tmp_name.push(format!(".steplog-{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let f = File::create(&tmp)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", tmp.display())))?;
        let out = OutFile {
            path: path.to_owned(),
            tmp,
            done: false,
        };
        Ok((out, BufWriter::new(f)))
    }

    /// Flushes and syncs the written file, and puts it in place.
    pub fn finish(mut self, w: BufWriter<File>) -> CliResult {
        let f = w.into_inner().map_err(|e| CliError::Io(e.into_error()))?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }

    /// Puts a file written by someone else (a writer that owns and closes it) in place.
    pub fn finish_closed(mut self) -> CliResult {
        File::open(&self.tmp)?.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
