//! The PKI directory's crash safety: a change that spans several files is staged as
//! `<name>.new`, committed by writing the list of renames to `pki/commit`, and
//! [`recover`] finishes a committed change or discards an uncommitted one.

use std::fs;
use std::path::{Path, PathBuf};

use super::{PkiError, PkiPaths, io_err, write_file};

/// The file in the pki directory whose presence commits a staged change.
pub(super) const COMMIT_FILE: &str = "commit";

/// One step of a change that spans several PKI files.
pub(super) enum Step {
    /// Replace (or create) the file with these contents; private or not.
    Put(PathBuf, String, bool),
    /// Remove the file.
    Remove(PathBuf),
}

pub(super) fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Stages every file as `<name>.new`, then commits the change by writing the list
/// of steps to `pki/commit` (the commit point).
pub(super) fn stage_and_commit(dir: &Path, steps: &[Step]) -> Result<(), PkiError> {
    recover_dir(dir)?;
    let mut list = String::new();
    for step in steps {
        match step {
            Step::Put(path, contents, private) => {
                write_file(&staged(path), contents, *private)?;
                list.push_str(&format!("put {}\n", file_name(path)));
            }
            Step::Remove(path) => list.push_str(&format!("remove {}\n", file_name(path))),
        }
    }
    write_file(&dir.join(COMMIT_FILE), &list, true)
}

/// Applies a committed change: renames staged files over their targets, removes
/// what is to be removed, then the commit file. Idempotent, so a crash during it is
/// finished by the next [`recover`].
fn apply_commit(dir: &Path) -> Result<(), PkiError> {
    let commit = dir.join(COMMIT_FILE);
    let list = fs::read_to_string(&commit).map_err(io_err(&commit))?;
    for (i, line) in list.lines().enumerate() {
        let bad = || PkiError::BadCommit {
            path: commit.clone(),
            line: i + 1,
            text: line.to_owned(),
        };
        let (op, name) = line.split_once(' ').ok_or_else(bad)?;
        if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(bad());
        }
        let target = dir.join(name);
        match op {
            "put" => {
                let from = staged(&target);
                if from.exists() {
                    fs::rename(&from, &target).map_err(io_err(&target))?;
                }
            }
            "remove" => match fs::remove_file(&target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&target)(e)),
            },
            _ => return Err(bad()),
        }
    }
    crate::private_fs::sync_dir(dir)?;
    fs::remove_file(&commit).map_err(io_err(&commit))?;
    crate::private_fs::sync_dir(dir)?;
    Ok(())
}

/// Stages, commits and applies a change of several PKI files.
pub(super) fn commit_files(dir: &Path, steps: &[Step]) -> Result<(), PkiError> {
    stage_and_commit(dir, steps)?;
    apply_commit(dir)
}

/// Finishes a PKI change that a crash interrupted after its commit point, or
/// discards the staged files of one interrupted before it. Run before the PKI files
/// are read.
pub(crate) fn recover(data_dir: &Path) -> Result<(), PkiError> {
    recover_dir(&PkiPaths::new(data_dir).dir)
}

pub(super) fn recover_dir(dir: &Path) -> Result<(), PkiError> {
    if dir.join(COMMIT_FILE).exists() {
        tracing::warn!(dir = %dir.display(), "finishing a PKI change interrupted by a crash");
        return apply_commit(dir);
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_name().to_string_lossy().ends_with(".new") {
            let p = entry.path();
            tracing::warn!(file = %p.display(), "discarding a PKI file staged by a change that never committed");
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}
