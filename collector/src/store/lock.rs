//! One collector per data dir: an exclusive OS file lock on `<data dir>/tandem.lock`,
//! taken before anything is migrated, recovered or started.
//!
//! The lock is `flock(2)` on Unix and `LockFileEx` on Windows (through
//! `std::fs::File::try_lock`), so the OS releases it when the process dies, however it
//! dies: a SIGKILLed collector never leaves a stale lock behind. The holder writes its
//! pid into the file so that a refused second start can name it; the pid is a hint
//! for the operator only, the lock itself is what is trusted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the data dir.
pub(crate) const LOCK_FILE: &str = "tandem.lock";

/// Why the data dir could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data dir {dir} is in use by another collector{}; only one collector may serve a data dir \
         (stop the other one, or give this one its own --data-dir)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held { dir: PathBuf, pid: Option<u32> },
    #[error("cannot lock data dir {dir} ({file}): {source}")]
    Io {
        dir: PathBuf,
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while the collector runs; dropping it (or the process dying) releases the lock.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _file: File,
}

/// Takes the data dir's lock at once, or says who holds it. Never waits.
pub(crate) fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        dir: dir.to_owned(),
        file: path.clone(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::Held {
                dir: dir.to_owned(),
                pid,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    // Ours now: record our pid for the next one who tries.
    (|| {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_data()
    })()
    .map_err(io)?;
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path()).unwrap();
        let err = acquire(dir.path()).unwrap_err();
        match &err {
            LockError::Held { dir: d, pid } => {
                assert_eq!(d, dir.path());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("unexpected {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        // Released on drop: the next one gets it.
        acquire(dir.path()).unwrap();
    }
}
