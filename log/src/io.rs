//! The seam under file I/O.
//!
//! Every write, fsync, truncate, rename and removal of log data, index files, the recovery
//! checkpoint and the offsets store goes through [`Io`], so tests can inject short writes,
//! `ENOSPC`, failed truncations and fsync failures with [`FaultIo`]. Listing directories and
//! reading file metadata use `std::fs` directly. Memory-mapped files (indexes, offset commits)
//! are opened through [`Io`] and mapped through [`FileHandle::std_file`], so their fsyncs and
//! resizes go through the seam too; only the stores into the mapping bypass it.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open file. Positional I/O only, so readers and the writer never share a cursor.
pub trait FileHandle: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `pos`; returns how many were read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `pos`; returns how many were written.
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// `fdatasync(2)`.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// The underlying file, for memory-mapping. An [`Io`] without real files returns `None`,
    /// and the log then cannot open memory-mapped index or commit files through it.
    fn std_file(&self) -> Option<&File> {
        None
    }
}

/// File-system operations the log performs.
pub trait Io: Send + Sync + Debug {
    /// Opens a file for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// fsyncs a directory so that creations, renames and removals in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// Writes all of `buf` at `pos`, looping over short writes.
pub(crate) fn write_all_at(f: &dyn FileHandle, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, pos) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
            Ok(n) => {
                buf = &buf[n..];
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fills `buf` from `pos`; returns how many bytes were read before end of file.
pub(crate) fn read_full_at(f: &dyn FileHandle, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes a whole file atomically: temporary file, fsync, rename, directory fsync.
pub(crate) fn write_file_atomic(io: &dyn Io, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = io.open(&tmp, true)?;
    f.set_len(0)?;
    write_all_at(&*f, bytes, 0)?;
    f.sync_data()?;
    drop(f);
    io.rename(&tmp, path)?;
    match path.parent() {
        Some(dir) => io.sync_dir(dir),
        None => Ok(()),
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

#[derive(Debug)]
struct RealFile(File);

impl FileHandle for RealFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn std_file(&self) -> Option<&File> {
        Some(&self.0)
    }
}

impl Io for RealIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// Switches shared by a [`FaultIo`] and every file it opened. Tests flip them at any time.
#[derive(Debug, Default)]
pub struct Faults {
    /// Number of upcoming `sync_data`/`sync_dir` calls that fail with `EIO`.
    pub fail_syncs: AtomicU64,
    /// Bytes that may still be written before writes fail with `ENOSPC` (`u64::MAX` = no limit).
    /// A write crossing the limit is cut short at it, then the next write fails.
    pub space_left: AtomicU64,
    /// When set, every write writes at most half of its buffer (at least one byte).
    pub short_writes: AtomicBool,
    /// Number of upcoming `set_len` calls (truncations and extensions) that fail with `EIO`.
    pub fail_set_lens: AtomicU64,
    /// Every directory `sync_dir` was called on, successful or not, in call order.
    pub synced_dirs: Mutex<Vec<PathBuf>>,
}

/// An [`Io`] over the real file system that injects faults on demand.
#[derive(Debug, Clone)]
pub struct FaultIo {
    faults: Arc<Faults>,
}

impl Default for FaultIo {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultIo {
    /// A fault injector with every fault off.
    pub fn new() -> Self {
        let faults = Faults {
            space_left: AtomicU64::new(u64::MAX),
            ..Faults::default()
        };
        FaultIo {
            faults: Arc::new(faults),
        }
    }
    /// The switches, to change while the log runs.
    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }
    /// Makes the next `n` syncs fail.
    pub fn fail_next_syncs(&self, n: u64) {
        self.faults.fail_syncs.store(n, Ordering::SeqCst);
    }
    /// Lets `bytes` more bytes be written, then fails writes with `ENOSPC`.
    pub fn set_space_left(&self, bytes: u64) {
        self.faults.space_left.store(bytes, Ordering::SeqCst);
    }
    /// Turns short writes on or off.
    pub fn set_short_writes(&self, on: bool) {
        self.faults.short_writes.store(on, Ordering::SeqCst);
    }
    /// Makes the next `n` `set_len` calls fail.
    pub fn fail_next_set_lens(&self, n: u64) {
        self.faults.fail_set_lens.store(n, Ordering::SeqCst);
    }
    /// The directories synced so far, in order.
    pub fn synced_dirs(&self) -> Vec<PathBuf> {
        self.faults
            .synced_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Consumes one pending fault from `counter`, if any.
fn take_fault(counter: &AtomicU64, what: &str) -> io::Result<()> {
    let failed = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    if failed.is_ok() {
        Err(io::Error::other(format!("injected {what} failure")))
    } else {
        Ok(())
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn FileHandle>,
    faults: Arc<Faults>,
}

impl FileHandle for FaultFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let mut len = buf.len();
        if self.faults.short_writes.load(Ordering::SeqCst) && len > 1 {
            len /= 2;
        }
        let left = self.faults.space_left.load(Ordering::SeqCst);
        if left != u64::MAX {
            if left == 0 {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            len = len.min(usize::try_from(left).unwrap_or(usize::MAX));
            self.faults
                .space_left
                .fetch_sub(len as u64, Ordering::SeqCst);
        }
        self.inner.write_at(&buf[..len], pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        take_fault(&self.faults.fail_syncs, "fsync")?;
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        take_fault(&self.faults.fail_set_lens, "set_len")?;
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn std_file(&self) -> Option<&File> {
        self.inner.std_file()
    }
}

impl Io for FaultIo {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        let inner = RealIo.open(path, create)?;
        Ok(Arc::new(FaultFile {
            inner,
            faults: self.faults.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        RealIo.create_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealIo.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealIo.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        RealIo.remove_dir_all(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults
            .synced_dirs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(path.to_path_buf());
        take_fault(&self.faults.fail_syncs, "fsync")?;
        RealIo.sync_dir(path)
    }
}
