//! File watching for everything Tandem reloads on edit: the agent's `agent.toml`,
//! the collector's `collector.toml`, its alert rule files and escalation policies.
//! One implementation for both binaries; a single watched file (a config) is
//! [`FileChanges`], which both binaries' `reload` modules drive.
//!
//! The directory, not the file, is watched: editors save by writing a temporary file
//! and renaming it over the old one, which replaces the watched inode; a directory
//! watch sees the rename. Callers get no event details: they re-read and check what
//! they watch after the edit settles, so a burst of events (write, chmod, rename)
//! costs one reload.
//!
//! Invariant: only events that can change what a file holds call back (create,
//! remove, rename, data or metadata modification). notify's inotify backend also
//! reports opens and closes (`Access` events); the reload's own read of the file
//! raises those, and reacting to them made every watcher reload in a loop about
//! three times a second with nothing edited (issue 16, item 6). [`Contents`] drops
//! the reloads whose bytes did not change, so a touch or chmod is not a reload and a
//! bad edit is reported once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Edits closer together than this are taken as one: wait this long after the last
/// event before reading the files.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Whether an event of this kind can change what a watched file holds. Opens and
/// reads (`Access`, except a close after writing) cannot, and are what a reload's
/// own read raises.
pub fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) => true,
        // `Any`/`Other`: the backend could not say; reloading once too often is safe.
        EventKind::Any | EventKind::Other => true,
    }
}

/// Watches `dir` (not recursively) and calls `on_change` for every event that may
/// change a path for which `wanted` is true ([`is_change`]). The watch ends when the
/// returned watcher is dropped. `on_change` runs on notify's thread: it must only
/// signal (e.g. a `try_send` on a bounded channel), never block.
pub fn watch_dir(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool + Send + 'static,
    on_change: impl Fn() + Send + 'static,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && is_change(&ev.kind)
            && ev.paths.iter().any(|p| wanted(p))
        {
            on_change();
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// What a watched file held when it was last reloaded: a reload whose bytes are the
/// same (a touch, a chmod, an editor that saved without changes) is skipped, so a
/// bad edit is reported once, not on every event.
#[derive(Debug, Default)]
pub struct Contents {
    /// `None` before the first read, or when the file could not be read.
    last: Option<Vec<u8>>,
}

impl Contents {
    /// Starts from what `path` holds now (the load the caller just did).
    pub fn of(path: &Path) -> Self {
        Self {
            last: std::fs::read(path).ok(),
        }
    }

    /// Reads `path` and says whether it differs from the last read. An unreadable
    /// file counts as changed (the load that follows reports why), once.
    pub fn changed(&mut self, path: &Path) -> bool {
        let now = std::fs::read(path).ok();
        let changed = now.is_none() || now != self.last;
        if now.is_none() && self.last.is_none() {
            // Still unreadable: already reported.
            return false;
        }
        self.last = now;
        changed
    }
}

/// The directory to watch for `path` (its parent, or `.` for a bare file name).
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The edits of one file, one wake-up per change of its bytes: a watch on its
/// directory ([`watch_dir`]), a settle of [`SETTLE`] after the last event, and a
/// [`Contents`] check, so a burst of events is one change and the reader's own
/// reads, a touch or a bad edit left in place are none.
pub struct FileChanges {
    path: PathBuf,
    /// Kept for the watch to last as long as this value.
    _watcher: RecommendedWatcher,
    /// Bounded to one: a burst of events only needs to wake the reader once.
    events: mpsc::Receiver<()>,
    /// What the file held at the last change returned (or at the start). An
    /// `Option` only so the check can run on a blocking thread; always `Some`
    /// between calls.
    contents: Option<Contents>,
}

impl FileChanges {
    /// Starts watching `path`, taking what it holds now as the baseline (the caller
    /// loaded it just now).
    pub fn watch(path: PathBuf) -> notify::Result<FileChanges> {
        let dir = dir_of(&path);
        let name = path.file_name().map(|n| n.to_owned());
        let (tx, events) = mpsc::channel::<()>(1);
        let watcher = watch_dir(
            &dir,
            move |p| p.file_name() == name.as_deref(),
            move || {
                let _ = tx.try_send(());
            },
        )?;
        let contents = Some(Contents::of(&path));
        Ok(FileChanges {
            path,
            _watcher: watcher,
            events,
            contents,
        })
    }

    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits until the file's bytes differ from the last time (or it became
    /// unreadable). `false` once `stop` is cancelled or the watch ended; the reads run
    /// on a blocking thread, never on the async runtime.
    pub async fn changed(&mut self, stop: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return false,
                ev = self.events.recv() => if ev.is_none() { return false },
            }
            // Let the edit settle (write + rename, or several writes).
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(SETTLE) => {}
            }
            while self.events.try_recv().is_ok() {}
            let Some(mut contents) = self.contents.take() else {
                return false;
            };
            let path = self.path.clone();
            let Ok((contents, changed)) = tokio::task::spawn_blocking(move || {
                let changed = contents.changed(&path);
                (contents, changed)
            })
            .await
            else {
                // The check panicked (it only reads a file): the watch is over.
                return false;
            };
            self.contents = Some(contents);
            if changed {
                return true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reads_are_not_changes_and_writes_renames_removals_are() {
        assert!(!is_change(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!is_change(&EventKind::Access(AccessKind::Read)));
        assert!(is_change(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Data(
            DataChange::Content
        ))));
        assert!(is_change(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
    }

    #[test]
    fn contents_report_a_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "a = 1").unwrap();
        let mut c = Contents::of(&p);
        assert!(!c.changed(&p), "nothing edited");
        std::fs::write(&p, "a = 2").unwrap();
        assert!(c.changed(&p));
        assert!(!c.changed(&p), "same bytes again");
        std::fs::remove_file(&p).unwrap();
        assert!(c.changed(&p), "removed");
        assert!(!c.changed(&p), "still removed: reported once");
        std::fs::write(&p, "a = 2").unwrap();
        assert!(c.changed(&p), "back");
    }

    /// Counts callbacks over a quiet interval while the file is read the way a
    /// reload reads it: reads must not call back.
    #[test]
    fn reading_a_watched_file_does_not_call_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.toml");
        std::fs::write(&p, "a = 1").unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(64);
        let _w = watch_dir(
            dir.path(),
            |p| p.extension().is_some_and(|x| x == "toml"),
            move || {
                let _ = tx.try_send(());
            },
        )
        .unwrap();
        for _ in 0..5 {
            let _ = std::fs::read_to_string(&p).unwrap();
        }
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "a read called back"
        );
        std::fs::write(&p, "a = 2").unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn an_edit_of_a_wanted_file_calls_back_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(16);
        let _w = watch_dir(
            dir.path(),
            |p| p.extension().is_some_and(|x| x == "toml"),
            move || {
                let _ = tx.try_send(());
            },
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "not a wanted file"
        );
        // Written elsewhere and renamed in, as editors save.
        let tmp = dir.path().join(".r.tmp");
        std::fs::write(&tmp, "a = 1").unwrap();
        std::fs::rename(&tmp, dir.path().join("r.toml")).unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    /// A rewrite with the same bytes is no change; new bytes are one; stop ends it.
    #[tokio::test]
    async fn file_changes_wake_once_per_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "a = 1").unwrap();
        let mut changes = FileChanges::watch(p.clone()).unwrap();
        let stop = CancellationToken::new();
        std::fs::write(&p, "a = 1").unwrap();
        let same = tokio::time::timeout(Duration::from_secs(2), changes.changed(&stop)).await;
        assert!(same.is_err(), "same bytes woke the reader");
        std::fs::write(&p, "a = 2").unwrap();
        let new = tokio::time::timeout(Duration::from_secs(10), changes.changed(&stop)).await;
        assert_eq!(new, Ok(true));
        stop.cancel();
        assert!(!changes.changed(&stop).await);
    }
}
