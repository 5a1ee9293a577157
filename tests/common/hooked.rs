//! The real file system with hooks around what a test needs to fault or time: the
//! manifest's tables (creation, writes, syncs, removal, directory syncs) and any open.

/// Faults on the manifest's tables, put in the real file system by [`Hooked`].
pub trait Hooks: std::fmt::Debug + Send + Sync + std::panic::RefUnwindSafe + 'static {
    /// Called before a table is created (`O_EXCL`).
    fn before_create(&self, _path: &std::path::Path) -> std::io::Result<()> {
        Ok(())
    }
    /// Makes operation `op` on `path`: a table's creation, a write to one, its sync, a
    /// directory's sync, a removal.
    fn around<T>(&self, _path: &std::path::Path, op: impl FnOnce() -> T) -> T {
        op()
    }
    /// Called after any file is opened (or not found, `found` false), before the opener
    /// goes on.
    fn opened(&self, _path: &std::path::Path, _found: bool) {}
}

/// The real file system, its table operations passed through `H`.
#[derive(Debug)]
pub struct Hooked<H>(pub std::sync::Arc<H>);

/// A table file's handle, its writes and sync passed through `H`.
#[derive(Debug)]
struct HookedTable<H> {
    inner: std::sync::Arc<dyn steplog::io::FileHandle>,
    hooks: std::sync::Arc<H>,
    path: std::path::PathBuf,
}

impl<H: Hooks> steplog::io::FileHandle for HookedTable<H> {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.hooks
            .around(&self.path, || self.inner.write_all_at(buf, offset))
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> std::io::Result<()> {
        self.hooks.around(&self.path, || self.inner.sync())
    }
    fn map(&self) -> std::io::Result<bytes::Bytes> {
        self.inner.map()
    }
    fn identity(&self) -> std::io::Result<u64> {
        self.inner.identity()
    }
}

impl<H: Hooks> steplog::io::FileSystem for Hooked<H> {
    fn open(
        &self,
        path: &std::path::Path,
        mode: steplog::io::OpenMode,
    ) -> std::io::Result<std::sync::Arc<dyn steplog::io::FileHandle>> {
        let os = steplog::io::OsFs;
        if path.extension().is_none_or(|e| e != "tab") {
            let opened = os.open(path, mode);
            let missing = matches!(&opened, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
            self.0.opened(path, !missing);
            return opened;
        }
        let inner = if mode == steplog::io::OpenMode::CreateNew {
            self.0.before_create(path)?;
            self.0.around(path, || os.open(path, mode))?
        } else {
            os.open(path, mode)?
        };
        Ok(std::sync::Arc::new(HookedTable {
            inner,
            hooks: self.0.clone(),
            path: path.to_owned(),
        }))
    }
    fn create_dir_all(&self, path: &std::path::Path) -> std::io::Result<()> {
        steplog::io::OsFs.create_dir_all(path)
    }
    fn remove_file(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.0.around(path, || steplog::io::OsFs.remove_file(path))
    }
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        steplog::io::OsFs.rename(from, to)
    }
    fn sync_dir(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.0.around(path, || steplog::io::OsFs.sync_dir(path))
    }
    fn read_dir(&self, path: &std::path::Path) -> std::io::Result<Vec<String>> {
        steplog::io::OsFs.read_dir(path)
    }
    fn lock(
        &self,
        path: &std::path::Path,
        exclusive: bool,
        wait: bool,
    ) -> std::io::Result<Option<steplog::io::LockGuard>> {
        steplog::io::OsFs.lock(path, exclusive, wait)
    }
    fn lock_slot(
        &self,
        path: &std::path::Path,
        slot: u64,
    ) -> std::io::Result<Option<steplog::io::LockGuard>> {
        steplog::io::OsFs.lock_slot(path, slot)
    }
    fn locked_slots(
        &self,
        path: &std::path::Path,
        from: u64,
        to: u64,
    ) -> std::io::Result<Vec<u64>> {
        steplog::io::OsFs.locked_slots(path, from, to)
    }
    fn identify(&self, path: &std::path::Path) -> std::io::Result<(u64, u64)> {
        steplog::io::OsFs.identify(path)
    }
}
