//! Injected storage faults, for tests: every write, fsync and file creation
//! of the storage code asks [`Faults`] first, so a test can make the next
//! few fail (with an I/O error, or as a write cut short by a full disk)
//! without a broken disk. A real full disk is tested on a small tmpfs.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// Counters of operations to fail; all zero (no fault) by default.
#[derive(Debug, Default)]
pub struct Faults {
    writes: AtomicU32,
    short_writes: AtomicU32,
    syncs: AtomicU32,
    panics: AtomicU32,
}

/// What a write should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteFault {
    /// Write everything.
    None,
    /// Write nothing and fail with an I/O error.
    Fail,
    /// Write half, then fail as a full disk does.
    Short,
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// The next `n` writes fail with `EIO` and write nothing.
    pub fn fail_writes(&self, n: u32) {
        self.writes.store(n, Ordering::Release);
    }

    /// The next `n` writes write half their bytes, then fail with `ENOSPC`.
    pub fn short_writes(&self, n: u32) {
        self.short_writes.store(n, Ordering::Release);
    }

    /// The next `n` fsyncs fail with `EIO`.
    pub fn fail_syncs(&self, n: u32) {
        self.syncs.store(n, Ordering::Release);
    }

    /// The next journal write panics, as a bug in the writer would: the
    /// server must notice that its journal is gone.
    pub fn crash_writer(&self) {
        self.panics.store(1, Ordering::Release);
    }

    /// Whether any fault is still waiting to happen.
    pub fn pending(&self) -> bool {
        self.writes.load(Ordering::Acquire) > 0
            || self.short_writes.load(Ordering::Acquire) > 0
            || self.syncs.load(Ordering::Acquire) > 0
    }

    pub(crate) fn write(&self) -> WriteFault {
        if take(&self.panics) {
            panic!("injected fault: the journal writer crashes");
        }
        if take(&self.writes) {
            WriteFault::Fail
        } else if take(&self.short_writes) {
            WriteFault::Short
        } else {
            WriteFault::None
        }
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        if take(&self.syncs) {
            return Err(io::Error::from_raw_os_error(nix::libc::EIO));
        }
        Ok(())
    }
}

/// Writes all of `bytes` unless a fault says otherwise.
pub(crate) fn write_all(faults: &Faults, w: &mut impl io::Write, bytes: &[u8]) -> io::Result<()> {
    match faults.write() {
        WriteFault::None => w.write_all(bytes),
        WriteFault::Fail => Err(io::Error::from_raw_os_error(nix::libc::EIO)),
        WriteFault::Short => {
            w.write_all(&bytes[..bytes.len() / 2])?;
            Err(io::Error::from_raw_os_error(nix::libc::ENOSPC))
        }
    }
}

/// `fsync` (data only) unless a fault says otherwise.
pub(crate) fn sync_data(faults: &Faults, f: &std::fs::File) -> io::Result<()> {
    faults.sync()?;
    f.sync_data()
}

/// `fsync` (data and metadata) unless a fault says otherwise.
pub(crate) fn sync_all(faults: &Faults, f: &std::fs::File) -> io::Result<()> {
    faults.sync()?;
    f.sync_all()
}
