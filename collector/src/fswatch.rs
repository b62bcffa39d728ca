//! File watching shared by everything the collector reloads on edit (`collector.toml`,
//! alert rule files): a `notify` watcher on a directory that calls back when an event
//! names a path the caller cares about.
//!
//! The directory, not the file, is watched: editors save by writing a temporary file
//! and renaming it over the old one, which replaces the watched inode; a directory
//! watch sees the rename. Callers get no event details: they re-read and check what
//! they watch after the edit settles, so a burst of events (write, chmod, rename)
//! costs one reload.

use std::path::Path;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

/// Edits closer together than this are taken as one: wait this long after the last
/// event before reading the files.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Watches `dir` (not recursively) and calls `on_change` for every event that names
/// a path for which `wanted` is true. The watch ends when the returned watcher is
/// dropped. `on_change` runs on notify's thread: it must only signal (e.g. a
/// `try_send` on a bounded channel), never block.
pub fn watch_dir(
    dir: &Path,
    wanted: impl Fn(&Path) -> bool + Send + 'static,
    on_change: impl Fn() + Send + 'static,
) -> notify::Result<RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && ev.paths.iter().any(|p| wanted(p))
        {
            on_change();
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
