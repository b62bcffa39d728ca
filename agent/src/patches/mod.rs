//! Patch status: which updates are pending on this machine, since when, and whether a
//! reboot is waiting.
//!
//! The layers, each replaceable on its own:
//! - the parsers (`apt`, `dnf`, `zypper`, `pacman`, `softwareupdate`, `windows_update`,
//!   in `platform/facts/patches/`) are pure functions from what a tool printed to
//!   [`Pending`] entries, tested on fixtures under `agent/tests/fixtures/patches/`;
//! - `platform::tool` runs a tool with a timeout on the calling (blocking) thread, so a
//!   locked or hung package manager costs one patch check, never the metrics;
//! - the platform facade (`crate::platform::check_patches`) decides which tool answers
//!   on this OS and returns a [`Check`];
//! - [`FirstSeen`] keeps, in the state dir, when each update was first seen pending,
//!   so the age of a pending update survives restarts;
//! - [`report`] turns a check into the wire's `PatchReport`.
//!
//! Invariant: a source that cannot be read yields a report with `source` and `error`
//! set, never an empty list that would read as "0 pending" (issue 3, "Bad input").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tandem_proto::v1::{PatchReport, PendingUpdate, UpdateClassification};

/// Most updates one report may carry: the collector's limit
/// (`collector/src/grpc/validate.rs`, `MAX_UPDATES_PER_REPORT`).
pub(crate) const MAX_UPDATES_PER_REPORT: usize = 20_000;

pub(crate) use crate::platform::facts::patches::{Check, Class, Pending, Reboot};

/// The key an update's age is kept under: its source and name, not its version, so
/// that a newer version superseding a pending one does not reset the age (the
/// machine has been behind since the first one appeared).
fn age_key(source: &str, name: &str) -> String {
    format!("{source}\t{name}")
}

/// When each pending update was first seen, persisted as JSON in the state dir.
#[derive(Debug)]
pub struct FirstSeen {
    path: PathBuf,
    seen: BTreeMap<String, i64>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FirstSeenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FirstSeen {
    /// File name under the state dir.
    pub(crate) const FILE: &'static str = "patches_first_seen.json";

    /// Loads the record; a missing file is an empty record, and so is a damaged one
    /// (logged): losing ages is better than never reporting patches again.
    pub fn load(state_dir: &Path) -> Self {
        let path = state_dir.join(Self::FILE);
        let seen = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                tracing::warn!(path = %path.display(), error = %err, "first-seen record is damaged; update ages restart now");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        FirstSeen { path, seen }
    }

    /// Stamps `updates` with their first-seen time, starting at `now_ms` for new
    /// ones, and forgets updates no longer pending. Pure apart from the map.
    pub(crate) fn stamp(
        &mut self,
        source: &str,
        updates: &[Pending],
        now_ms: i64,
    ) -> Vec<(Pending, i64)> {
        let mut next = BTreeMap::new();
        // Other sources' entries stay (a machine may switch between them rarely;
        // keeping them costs nothing and loses no age).
        for (k, v) in &self.seen {
            if !k.starts_with(&format!("{source}\t")) {
                next.insert(k.clone(), *v);
            }
        }
        let out = updates
            .iter()
            .map(|u| {
                let key = age_key(source, &u.name);
                let first = *self.seen.get(&key).unwrap_or(&now_ms);
                let first = *next.get(&key).unwrap_or(&first);
                next.insert(key, first);
                (u.clone(), first)
            })
            .collect();
        self.seen = next;
        out
    }

    /// Writes the record atomically (temp file, then rename).
    pub(crate) fn save(&self) -> Result<(), FirstSeenError> {
        let io = |source| FirstSeenError::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec(&self.seen).map_err(|e| io(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

/// One check, stamped with ages, ready to print or send.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub(crate) time_unix_ms: i64,
    pub(crate) source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) updates: Vec<Aged>,
    pub(crate) reboot: Reboot,
    /// 0 when unknown.
    pub(crate) last_install_unix_ms: i64,
}

/// A pending update and when it was first seen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Aged {
    #[serde(flatten)]
    pub(crate) update: Pending,
    pub(crate) first_seen_unix_ms: i64,
}

impl Status {
    /// Builds the status of `check` at `now_ms`, updating `first_seen` only when the
    /// source answered (a failed check says nothing about what is still pending).
    pub fn from_check(check: Check, first_seen: &mut FirstSeen, now_ms: i64) -> Status {
        let (updates, error) = match check.updates {
            Ok(list) => (
                first_seen
                    .stamp(check.source, &list, now_ms)
                    .into_iter()
                    .map(|(update, first_seen_unix_ms)| Aged {
                        update,
                        first_seen_unix_ms,
                    })
                    .collect(),
                None,
            ),
            Err(err) => (Vec::new(), Some(err.to_string())),
        };
        Status {
            time_unix_ms: now_ms,
            source: check.source,
            error,
            updates,
            reboot: check.reboot,
            last_install_unix_ms: check.last_install_unix_ms,
        }
    }

    /// The status as the wire's report with sequence number `seq`. Past
    /// [`MAX_UPDATES_PER_REPORT`] updates, security updates are kept first and the
    /// rest is cut (the collector would refuse the whole report).
    pub(crate) fn to_report(&self, seq: u64) -> PatchReport {
        let mut updates: Vec<&Aged> = self.updates.iter().collect();
        if updates.len() > MAX_UPDATES_PER_REPORT {
            tracing::warn!(
                pending = updates.len(),
                sent = MAX_UPDATES_PER_REPORT,
                "too many pending updates for one report; security updates first, the rest left out"
            );
            updates.sort_by_key(|a| a.update.class != Class::Security);
            updates.truncate(MAX_UPDATES_PER_REPORT);
        }
        PatchReport {
            seq,
            time_unix_ms: self.time_unix_ms,
            source: self.source.to_owned(),
            error: self.error.as_deref().map(wire_text).unwrap_or_default(),
            updates: updates
                .into_iter()
                .map(|a| PendingUpdate {
                    name: wire_text(&a.update.name),
                    current_version: wire_text(&a.update.current_version),
                    new_version: wire_text(&a.update.new_version),
                    classification: match a.update.class {
                        Class::Security => UpdateClassification::Security,
                        Class::Other => UpdateClassification::Other,
                        Class::Unknown => UpdateClassification::Unspecified,
                    } as i32,
                    advisory_id: wire_text(&a.update.advisory_id),
                    first_seen_unix_ms: a.first_seen_unix_ms,
                })
                .collect(),
            reboot_required: self.reboot.required,
            reboot_required_since_unix_ms: self.reboot.since_unix_ms,
            // Only Windows Update's history is read; dpkg/dnf logs are not (0 = unknown).
            last_install_unix_ms: self.last_install_unix_ms,
        }
    }
}

/// Text the collector accepts (`collector/src/grpc/validate.rs`: no control
/// characters, at most 1024 bytes): tool output is not trusted to be either.
pub(crate) fn wire_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > 1000 {
        let mut cut = 1000;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::facts::patches::*;

    fn p(name: &str, v: &str) -> Pending {
        Pending {
            name: name.into(),
            current_version: "1".into(),
            new_version: v.into(),
            class: Class::Security,
            advisory_id: String::new(),
        }
    }

    #[test]
    fn ages_survive_a_restart_and_forget_what_was_installed() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = FirstSeen::load(dir.path());
        let a = fs.stamp("apt", &[p("curl", "2"), p("bash", "5")], 1_000);
        assert_eq!(a[0].1, 1_000);
        fs.save().unwrap();

        let mut fs = FirstSeen::load(dir.path());
        // curl superseded by a newer version: keeps its age; bash installed: gone;
        // openssl new.
        let a = fs.stamp("apt", &[p("curl", "3"), p("openssl", "3")], 9_000);
        assert_eq!(a[0].1, 1_000);
        assert_eq!(a[1].1, 9_000);
        fs.save().unwrap();
        let fs = FirstSeen::load(dir.path());
        assert_eq!(fs.seen.len(), 2);
        assert!(!fs.seen.contains_key("apt\tbash"));
    }

    #[test]
    fn a_failed_check_reports_its_error_and_keeps_ages() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = FirstSeen::load(dir.path());
        fs.stamp("apt", &[p("curl", "2")], 1_000);
        let s = Status::from_check(
            Check {
                source: "apt",
                updates: Err(ReadError::Tool(
                    crate::platform::tool::ToolError::TimedOut {
                        program: "apt".into(),
                        secs: 120,
                    },
                )),
                reboot: Reboot::default(),
                last_install_unix_ms: 0,
            },
            &mut fs,
            5_000,
        );
        let r = s.to_report(7);
        assert_eq!(r.seq, 7);
        assert_eq!(r.source, "apt");
        assert!(r.error.contains("did not finish"), "{}", r.error);
        assert!(r.updates.is_empty());
        assert_eq!(fs.seen.get("apt\tcurl"), Some(&1_000));
    }

    #[test]
    fn a_damaged_record_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FirstSeen::FILE), b"{not json").unwrap();
        let mut fs = FirstSeen::load(dir.path());
        assert_eq!(fs.stamp("apt", &[p("a", "1")], 3)[0].1, 3);
    }

    #[test]
    fn an_oversized_report_keeps_security_updates() {
        let mut updates: Vec<Pending> = (0..MAX_UPDATES_PER_REPORT + 5)
            .map(|i| Pending {
                class: Class::Other,
                ..p(&format!("p{i}"), "2")
            })
            .collect();
        updates.push(p("zz-security", "2"));
        let dir = tempfile::tempdir().unwrap();
        let s = Status::from_check(
            Check {
                source: "apt",
                updates: Ok(updates),
                reboot: Reboot::default(),
                last_install_unix_ms: 0,
            },
            &mut FirstSeen::load(dir.path()),
            1,
        );
        let r = s.to_report(1);
        assert_eq!(r.updates.len(), MAX_UPDATES_PER_REPORT);
        assert_eq!(r.updates[0].name, "zz-security");
    }

    #[test]
    fn wire_text_removes_control_characters_and_bounds_length() {
        assert_eq!(wire_text("a\tb\nc"), "a b c");
        assert_eq!(wire_text(&"é".repeat(800)).len(), 1000);
    }
}
