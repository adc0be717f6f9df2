//! The few file operations the storage code is built from, each durable
//! before it returns: a file is written to a temporary name, fsynced,
//! renamed into place and the directory fsynced, so a crash leaves the old
//! file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::faults::{self, Faults};
use super::format;
use super::{LOG, LOG_TMP, RESERVE_LOG, RESERVE_SNAP, SNAP, SNAP_TMP, World};

/// Writes a snapshot of `state` atomically; returns its size in bytes.
/// With `reserve`, the space held back for emergencies is written over
/// when there is enough of it, so no new space is needed on a full disk.
pub(crate) fn write_snapshot(
    dir: &Path,
    state: &World,
    faults: &Faults,
    reserve: bool,
) -> anyhow::Result<u64> {
    let bytes = format::encode_snapshot(state);
    if !(reserve && from_reserve(dir, RESERVE_SNAP, SNAP, &bytes, faults)?) {
        replace(dir, SNAP_TMP, SNAP, &bytes, faults)?;
    }
    Ok(bytes.len() as u64)
}

/// Starts `name` as an empty journal after `state`, atomically, and opens
/// it for appending. With `reserve`, see [`write_snapshot`].
pub(crate) fn new_log(
    dir: &Path,
    name: &str,
    state: &World,
    faults: &Faults,
    reserve: bool,
) -> anyhow::Result<File> {
    let c = &state.canvas;
    let header = format::log_header(c.id(), c.seq(), state.chat_seq, (c.width(), c.height()));
    if !(reserve && from_reserve(dir, RESERVE_LOG, name, &header, faults)?) {
        let tmp = if name == LOG {
            LOG_TMP.to_string()
        } else {
            format!("{name}.tmp")
        };
        replace(dir, &tmp, name, &header, faults)?;
    }
    open_append(&dir.join(name))
}

/// Writes `bytes` over the start of the reserve file `reserve`, cuts it to
/// their length, fsyncs it and renames it to `name`: a file written
/// without allocating anything. False (nothing done) if that reserve is
/// missing or too small.
fn from_reserve(
    dir: &Path,
    reserve: &str,
    name: &str,
    bytes: &[u8],
    faults: &Faults,
) -> anyhow::Result<bool> {
    let path = dir.join(reserve);
    if fs::metadata(&path).map_or(true, |m| m.len() < bytes.len() as u64) {
        return Ok(false);
    }
    let res = (|| {
        let mut f = OpenOptions::new().write(true).open(&path)?;
        faults::write_all(faults, &mut f, bytes)?;
        f.set_len(bytes.len() as u64)?;
        faults::sync_all(faults, &f)
    })();
    if let Err(e) = res {
        // What is left of it is no longer a whole reserve.
        let _ = fs::remove_file(&path);
        return Err(e).with_context(|| format!("write {} into {reserve}", name));
    }
    fs::rename(&path, dir.join(name)).with_context(|| format!("rename {reserve} to {name}"))?;
    sync_dir(dir, faults)?;
    Ok(true)
}

/// Opens a journal for appending. Append mode matters: after a failed
/// write the file position must not leave a hole before the next record.
pub(crate) fn open_append(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// Writes `bytes` to `dir/tmp`, fsyncs it, renames it to `dir/name` and
/// fsyncs the directory.
pub(crate) fn replace(
    dir: &Path,
    tmp: &str,
    name: &str,
    bytes: &[u8],
    faults: &Faults,
) -> anyhow::Result<()> {
    let tmp_path = dir.join(tmp);
    let res = (|| {
        let mut f = File::create(&tmp_path)?;
        faults::write_all(faults, &mut f, bytes)?;
        faults::sync_all(faults, &f)
    })();
    if let Err(e) = res {
        // A half-written temporary file is worth nothing: give its space back.
        let _ = fs::remove_file(&tmp_path);
        return Err(e).with_context(|| format!("write {}", tmp_path.display()));
    }
    fs::rename(&tmp_path, dir.join(name))
        .with_context(|| format!("rename {} to {name}", tmp_path.display()))?;
    sync_dir(dir, faults)
}

/// fsyncs a directory, so renames and new files in it are durable.
pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| faults::sync_all(faults, &d))
        .with_context(|| format!("fsync the directory {}", dir.display()))
}

/// A name beside `name` for bytes set aside: `<name>.<what>-<unix-ms>`,
/// made unique if that exists already.
pub(crate) fn aside_path(dir: &Path, name: &str, what: &str) -> PathBuf {
    let stamp = crate::server::unix_ms();
    let mut path = dir.join(format!("{name}.{what}-{stamp}"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{name}.{what}-{stamp}.{n}"));
        n += 1;
    }
    path
}

/// Writes `bytes` that are being cut from a file to a new file beside it
/// (durably) and returns its path.
pub(crate) fn keep_aside(
    dir: &Path,
    name: &str,
    what: &str,
    bytes: &[u8],
) -> anyhow::Result<PathBuf> {
    let path = aside_path(dir, name, what);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    io::Write::write_all(&mut f, bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("write {}", path.display()))?;
    sync_dir(dir, &Faults::none())?;
    Ok(path)
}

/// Moves `name` aside to `<name>.<what>-<unix-ms>` and returns the new path.
pub(crate) fn move_aside(dir: &Path, name: &str, what: &str) -> anyhow::Result<PathBuf> {
    let to = aside_path(dir, name, what);
    fs::rename(dir.join(name), &to).with_context(|| format!("move {name} aside"))?;
    sync_dir(dir, &Faults::none())?;
    Ok(to)
}

/// Space a rebuilt journal starts in: its header, and the records of a
/// while after it, need no new space on a full disk.
const RESERVE_LOG_LEN: u64 = 64 * 1024;

/// Makes sure the reserve files hold real disk space (not sparse files):
/// `len` bytes for a snapshot and some for a journal, so a rebuild after a
/// write error can write both without allocating anything.
pub(crate) fn ensure_reserve(dir: &Path, len: u64, faults: &Faults) -> io::Result<()> {
    ensure_file(dir, RESERVE_SNAP, len, faults)?;
    ensure_file(dir, RESERVE_LOG, RESERVE_LOG_LEN, faults)
}

/// Whether both reserve files are in place.
pub(crate) fn has_reserve(dir: &Path, len: u64) -> bool {
    fs::metadata(dir.join(RESERVE_SNAP)).is_ok_and(|m| m.len() >= len)
        && fs::metadata(dir.join(RESERVE_LOG)).is_ok_and(|m| m.len() >= RESERVE_LOG_LEN)
}

fn ensure_file(dir: &Path, name: &str, len: u64, faults: &Faults) -> io::Result<()> {
    let path = dir.join(name);
    if fs::metadata(&path).is_ok_and(|m| m.len() >= len) {
        return Ok(());
    }
    let res = (|| {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        faults.sync()?;
        allocate(&f, len)?;
        f.sync_all()?;
        sync_dir(dir, faults).map_err(io::Error::other)
    })();
    if res.is_err() {
        // Half a reserve only takes space: whoever needs it can have it.
        let _ = fs::remove_file(&path);
    }
    res
}

fn allocate(f: &File, len: u64) -> io::Result<()> {
    use nix::fcntl::{FallocateFlags, fallocate};
    match fallocate(f, FallocateFlags::empty(), 0, len as i64) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EOPNOTSUPP) => {
            // Not every filesystem allocates on request: write zeros.
            let zeros = vec![0u8; 64 * 1024];
            let mut left = len;
            let mut w = f;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                io::Write::write_all(&mut w, &zeros[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        Err(e) => Err(io::Error::from(e)),
    }
}
