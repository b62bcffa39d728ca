//! Files and directories only the collector's user may read: the data dir, the
//! database, keys, certificates and the CA-rotation marker.
//!
//! Invariants:
//! - directories made here are mode 0700 and files 0600 (unix) *from creation*: no
//!   window in which another user can open them, whatever the umask;
//! - [`write_atomic`] never leaves a half-written file under the final name: it
//!   writes a temporary file in the same directory, fsyncs it, renames it over the
//!   target and fsyncs the directory, so after a crash the path holds either the
//!   old contents or the new ones, and a rename that returned is on disk.
//!
//! The two `#[cfg(unix)]` helpers are the whole platform difference (on other
//! systems the modes are left to the OS's ACLs), so they stay here rather than in
//! a platform facade of their own.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Mode of every directory the collector creates (unix).
#[cfg(unix)]
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every private file the collector creates (unix): keys, database.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Mode of a file meant to be handed out (a CA or device certificate, a config).
pub(crate) const PUBLIC_FILE_MODE: u32 = 0o644;

/// A file-system operation that failed, and on which path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FsError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> FsError + '_ {
    move |source| FsError {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and its missing parents with mode 0700. An existing directory is
/// left as it is (see [`tighten`]).
pub(crate) fn create_dir(dir: &Path) -> Result<(), FsError> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    dir_mode(&mut b);
    b.create(dir).map_err(at(dir))
}

/// Makes an existing file or directory owner-only (0600 / 0700) if it is more open;
/// returns whether it changed anything, so the caller can say so.
pub(crate) fn tighten(path: &Path) -> Result<bool, FsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(at(path))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 == 0 {
            return Ok(false);
        }
        let want = if meta.is_dir() { DIR_MODE } else { FILE_MODE };
        fs::set_permissions(path, fs::Permissions::from_mode(want)).map_err(at(path))?;
        Ok(true)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Creates `path` empty with mode 0600 if it does not exist yet (so that SQLite,
/// which gives its `-wal` and `-shm` files the database's mode, opens a private
/// file); an existing file is left alone.
pub(crate) fn create_file_if_missing(path: &Path) -> Result<(), FsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    file_mode(&mut opts);
    match opts.open(path) {
        Ok(f) => f.sync_all().map_err(at(path)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(at(path)(e)),
    }
}

/// Replaces `path` with `contents` atomically and durably (temp file, fsync,
/// rename, directory fsync). A `private` file is 0600 from creation on, another
/// 0644; the parent directory is created 0700 if missing.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), FsError> {
    let dir = parent_of(path);
    create_dir(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // A temp file left by a crashed earlier run of this process id is stale.
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    file_mode_of(
        &mut opts,
        if private { FILE_MODE } else { PUBLIC_FILE_MODE },
    );
    let written = (|| {
        let mut f = opts.open(&tmp).map_err(at(&tmp))?;
        f.write_all(contents).map_err(at(&tmp))?;
        f.sync_all().map_err(at(&tmp))?;
        fs::rename(&tmp, path).map_err(at(path))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(&dir)
}

/// Makes renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), FsError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(at(dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn dir_mode(b: &mut fs::DirBuilder) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    #[cfg(not(unix))]
    let _ = b;
}

fn file_mode(o: &mut fs::OpenOptions) {
    file_mode_of(o, FILE_MODE);
}

fn file_mode_of(o: &mut fs::OpenOptions, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = (o, mode);
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_write_replaces_and_is_private_from_creation() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        let f = sub.join("x.key");
        write_atomic(&f, b"one", true).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"one");
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        // A world-readable file is replaced by a private one (a fresh inode).
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&f, b"two", true).unwrap();
        write_atomic(&sub.join("ca.pem"), b"cert", false).unwrap();
        assert_eq!(mode(&sub.join("ca.pem")), 0o644);
        fs::remove_file(sub.join("ca.pem")).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        assert_eq!(mode(&f), 0o600);
        let names: Vec<_> = fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left: {names:?}");
    }

    #[test]
    fn tighten_reports_what_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("db");
        create_file_if_missing(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert!(!tighten(&f).unwrap());
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(tighten(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(tighten(dir.path()).unwrap());
        assert_eq!(mode(dir.path()), 0o700);
    }
}
