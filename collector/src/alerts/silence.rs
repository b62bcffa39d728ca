//! Silences: an operator's "stop telling me about this until then", made with
//! `tandem-collector alerts silence` and stored in SQLite (`silences`), so they
//! outlive restarts and a running collector picks them up on its next tick.
//!
//! A silence is a time range (start inclusive, end exclusive, absolute instants) —
//! or, with an RRULE, occurrences of a fixed length within that range ("every
//! Saturday 01:00–03:00 Berlin until removed") — and matchers — tenant, site, tag, device, rule — each of which, when given, must
//! match. At least one matcher is required: a silence of everything is a mistake
//! far more often than an intent. Like a maintenance window, a silence only sets
//! the `suppressed` flag: evaluation goes on, notifications pause.
//!
//! Invariants: silences are never deleted; `unsilence` sets `removed_ms` and
//! `removed_by`, so who silenced what, and who lifted it, stays on record.

use jiff::tz::TimeZone;

use super::model::{Scope, Target};
use super::rrule::{self, Series};
use crate::store::StoreError;
use crate::store::api::{AlertStore, SilenceInsert, SilenceRefusal};
use crate::store::console_admin::ConsoleAdmin;
// The rows and their removal live in the store (issue 17); the console reads and
// lifts silences through `store::console_admin::ConsoleAdmin`.
pub(crate) use crate::store::api::{RemoveOutcome, SilenceRow};
use crate::tags::check_tag;

/// A silence as the engine uses it.
#[derive(Debug, Clone)]
pub(crate) struct Silence {
    /// Its row id: in Debug output (logs) and what the tests check; the engine
    /// itself matches by scope and time only.
    #[allow(dead_code)]
    pub(crate) id: i64,
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) scope: Scope,
    /// For a recurring silence: its occurrences (DTSTART = `starts_ms` in the zone).
    pub(crate) recurring: Option<(TimeZone, Series)>,
}

impl Silence {
    /// Whether the silence covers `target` at `now_ms`.
    pub(crate) fn covers(&self, target: &Target<'_>, now_ms: i64) -> bool {
        self.starts_ms <= now_ms
            && now_ms < self.ends_ms
            && self
                .recurring
                .as_ref()
                .is_none_or(|(tz, s)| s.covering(tz, now_ms).is_some())
            && self.scope.matches(target)
    }
}

/// What makes a silence recur.
#[derive(Debug, Clone)]
pub(crate) struct NewRecurrence {
    pub(crate) rrule: String,
    /// IANA zone name the RRULE's local times are in.
    pub(crate) tz: String,
    /// Length of each occurrence.
    pub(crate) duration_ms: i64,
}

/// Open-ended: a recurring silence without `--until` lasts until removed.
pub(crate) const FOREVER_MS: i64 = i64::MAX;

fn series_of(
    rule: &str,
    tz_name: &str,
    starts_ms: i64,
    duration_ms: i64,
) -> Result<(TimeZone, Series), SilenceError> {
    let tz = TimeZone::get(tz_name).map_err(|_| SilenceError::BadZone(tz_name.to_owned()))?;
    let r = rrule::parse(rule).map_err(|e| SilenceError::BadRrule {
        at: e.offset + 1,
        message: e.message,
    })?;
    if !(1..=rrule::MAX_DURATION_MS).contains(&duration_ms) {
        return Err(SilenceError::BadDuration);
    }
    let dtstart = jiff::Timestamp::from_millisecond(starts_ms)
        .map_err(|_| SilenceError::BadDuration)?
        .to_zoned_datetime(tz.clone())
        .datetime();
    let series = Series::new(r, dtstart, duration_ms, &tz);
    Ok((tz, series))
}

/// What `alerts silence` asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewSilence {
    pub(crate) starts_ms: i64,
    pub(crate) ends_ms: i64,
    pub(crate) tenant: Option<String>,
    pub(crate) site: Option<String>,
    pub(crate) tag: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) rule: Option<String>,
    pub(crate) comment: String,
    pub(crate) by: String,
    pub(crate) recurrence: Option<NewRecurrence>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SilenceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "a silence needs at least one of --tenant, --site, --tag, --device, --rule (silencing everything is refused)"
    )]
    NoMatcher,
    #[error("a silence needs a --comment saying why")]
    NoComment,
    #[error("the silence would end ({end}) before it starts ({start})")]
    EndsBeforeStart { start: String, end: String },
    #[error("the silence would end ({0}) in the past")]
    EndsInPast(String),
    #[error("no tenant {0:?} (see `tandem-collector tenant list`)")]
    NoTenant(String),
    #[error("no site {0:?}{1} (see `tandem-collector site list`)")]
    NoSite(String, String),
    #[error("no device {0:?} (see `tandem-collector device list`)")]
    NoDevice(String),
    #[error("device {device:?} belongs to tenant {actual:?}, not {wanted:?}")]
    WrongTenant {
        device: String,
        actual: String,
        wanted: String,
    },
    #[error(transparent)]
    BadTag(crate::tags::TagError),
    #[error("--rrule, at character {at}: {message}")]
    BadRrule { at: usize, message: String },
    #[error("--tz {0:?} is not an IANA time zone name such as Europe/Berlin")]
    BadZone(String),
    #[error("each occurrence of a recurring silence (--for) must last 1 s to 31 days")]
    BadDuration,
}

fn ts(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Checks and stores a silence; returns its id. Tenants, sites and devices named
/// must exist (a typo would otherwise silence nothing, quietly); rules are not
/// checked (they live in files the CLI may not see), tags only for their text.
pub(crate) fn create(
    store: &mut impl AlertStore,
    s: &NewSilence,
    now_ms: i64,
) -> Result<i64, SilenceError> {
    let row = check(s, now_ms)?;
    store.create_silence(&row, now_ms)?.map_err(refused)
}

/// [`create`] for the console: the silence (of tenant `tenant_id`, for the audit
/// log), its audit row and its read-back in one transaction of the store's
/// ([`ConsoleAdmin::create_silence_audited`]). Returns it as stored.
pub(crate) fn create_audited(
    store: &mut impl ConsoleAdmin,
    s: &NewSilence,
    tenant_id: Option<i64>,
    actor: &str,
    now_ms: i64,
) -> Result<SilenceRow, SilenceError> {
    let row = check(s, now_ms)?;
    store
        .create_silence_audited(&row, tenant_id, actor, now_ms)?
        .map_err(refused)
}

fn refused(r: SilenceRefusal) -> SilenceError {
    match r {
        SilenceRefusal::NoTenant(t) => SilenceError::NoTenant(t),
        SilenceRefusal::NoSite(s, t) => SilenceError::NoSite(s, t),
        SilenceRefusal::NoDevice(d) => SilenceError::NoDevice(d),
        SilenceRefusal::WrongTenant {
            device,
            actual,
            wanted,
        } => SilenceError::WrongTenant {
            device,
            actual,
            wanted,
        },
    }
}

/// What can be checked without the store: matchers, comment, times, tag text, the
/// RRULE and its zone. Returns the row to store.
fn check(s: &NewSilence, now_ms: i64) -> Result<SilenceInsert, SilenceError> {
    if s.tenant.is_none()
        && s.site.is_none()
        && s.tag.is_none()
        && s.device.is_none()
        && s.rule.is_none()
    {
        return Err(SilenceError::NoMatcher);
    }
    if s.comment.trim().is_empty() {
        return Err(SilenceError::NoComment);
    }
    if s.ends_ms <= s.starts_ms {
        return Err(SilenceError::EndsBeforeStart {
            start: ts(s.starts_ms),
            end: ts(s.ends_ms),
        });
    }
    if s.ends_ms <= now_ms {
        return Err(SilenceError::EndsInPast(ts(s.ends_ms)));
    }
    if let Some(tag) = &s.tag {
        check_tag(tag).map_err(SilenceError::BadTag)?;
    }
    if let Some(r) = &s.recurrence {
        series_of(&r.rrule, &r.tz, s.starts_ms, r.duration_ms)?;
    }
    Ok(SilenceInsert {
        starts_ms: s.starts_ms,
        ends_ms: s.ends_ms,
        tenant: s.tenant.clone(),
        site: s.site.clone(),
        tag: s.tag.clone(),
        device: s.device.clone(),
        rule: s.rule.clone(),
        comment: s.comment.trim().to_owned(),
        by: s.by.clone(),
        rrule: s.recurrence.as_ref().map(|r| r.rrule.clone()),
        tz: s.recurrence.as_ref().map(|r| r.tz.clone()),
        duration_ms: s.recurrence.as_ref().map(|r| r.duration_ms),
    })
}

// `SilenceRow` (a silence as listed by `alerts silences`) is the store's row.
impl SilenceRow {
    /// `active`, `upcoming`, `ended` or `removed` at `now_ms`.
    pub(crate) fn status(&self, now_ms: i64) -> &'static str {
        if self.removed_ms.is_some() {
            "removed"
        } else if now_ms < self.starts_ms {
            "upcoming"
        } else if now_ms < self.ends_ms && self.rrule.is_some() {
            "recurring"
        } else if now_ms < self.ends_ms {
            "active"
        } else {
            "ended"
        }
    }

    /// The matchers, as `tenant=acme device=d1`.
    pub(crate) fn matchers(&self) -> String {
        [
            ("tenant", &self.tenant),
            ("site", &self.site),
            ("tag", &self.tag),
            ("device", &self.device_id),
            ("rule", &self.rule),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    }

    fn scope(&self) -> Scope {
        let one = |v: &Option<String>| v.iter().cloned().collect::<Vec<_>>();
        Scope {
            tenants: one(&self.tenant),
            sites: one(&self.site),
            tags: one(&self.tag),
            os: Vec::new(),
            devices: one(&self.device_id),
            rules: one(&self.rule),
        }
    }
}

/// Silences not removed and not ended at `now_ms` (with `all`: every one ever made),
/// soonest end first.
pub(crate) fn list(
    store: &impl AlertStore,
    now_ms: i64,
    all: bool,
) -> Result<Vec<SilenceRow>, StoreError> {
    store.silences(now_ms, all)
}

/// The silences the engine must honour from `now_ms` on (active and upcoming). A
/// recurring one whose rule no longer reads (only possible by editing the database
/// by hand) is skipped with a warning.
pub(crate) fn load(store: &impl AlertStore, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
    let mut out = Vec::new();
    for r in list(store, now_ms, false)? {
        let recurring = match (&r.rrule, &r.tz, r.duration_ms) {
            (Some(rule), tz, Some(d)) => {
                match series_of(rule, tz.as_deref().unwrap_or("UTC"), r.starts_ms, d) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(silence = r.id, error = %e, "unreadable recurring silence skipped");
                        continue;
                    }
                }
            }
            _ => None,
        };
        out.push(Silence {
            id: r.id,
            starts_ms: r.starts_ms,
            ends_ms: r.ends_ms,
            scope: r.scope(),
            recurring,
        });
    }
    Ok(out)
}

/// Lifts a silence through the store (keeps the row, records who and when).
pub(crate) fn lift(
    store: &mut impl AlertStore,
    id: i64,
    by: &str,
    now_ms: i64,
) -> Result<RemoveOutcome, StoreError> {
    store.remove_silence(id, by, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, crate::store::Db) {
        // Tenants acme and globex, site hq in acme, device d1 in acme.
        crate::store::conformance::sqlite_fixture()
    }

    fn new(device: Option<&str>) -> NewSilence {
        NewSilence {
            starts_ms: 1000,
            ends_ms: 5000,
            device: device.map(Into::into),
            comment: "disk swap".into(),
            by: "alice".into(),
            ..NewSilence::default()
        }
    }

    #[test]
    fn a_silence_is_stored_listed_loaded_and_removed_with_a_record() {
        let (_d, mut conn) = db();
        let id = create(&mut conn, &new(Some("d1")), 500).unwrap();
        let later = create(
            &mut conn,
            &NewSilence {
                starts_ms: 4000,
                ends_ms: 9000,
                rule: Some("cpu-high".into()),
                ..new(None)
            },
            500,
        )
        .unwrap();
        let rows = list(&conn, 2000, false).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].status(2000), rows[1].status(2000)),
            ("active", "upcoming")
        );
        assert_eq!(rows[0].matchers(), "device=d1");
        let loaded = load(&conn, 2000).unwrap();
        let target = Target::device("acme", "d1", "linux", "cpu-high");
        assert!(loaded[0].covers(&target, 2000));
        assert!(!loaded[0].covers(&target, 5000), "end is exclusive");
        assert!(!loaded[1].covers(&target, 2000), "not started");
        assert!(!loaded[0].covers(&Target::device("acme", "d2", "linux", "x"), 2000));

        assert_eq!(
            lift(&mut conn, id, "bob", 2500).unwrap(),
            RemoveOutcome::Removed
        );
        assert_eq!(
            lift(&mut conn, id, "bob", 2600).unwrap(),
            RemoveOutcome::AlreadyRemoved
        );
        assert_eq!(
            lift(&mut conn, 99, "bob", 2600).unwrap(),
            RemoveOutcome::NoSuchSilence
        );
        assert_eq!(
            lift(&mut conn, later, "bob", 9000).unwrap(),
            RemoveOutcome::AlreadyEnded
        );
        let ids: Vec<i64> = load(&conn, 2600).unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![later]);
        let all = list(&conn, 2600, true).unwrap();
        let gone = all.iter().find(|r| r.id == id).unwrap();
        assert_eq!(
            (gone.removed_by.as_deref(), gone.status(2600)),
            (Some("bob"), "removed")
        );
    }

    #[test]
    fn a_recurring_silence_covers_its_occurrences_only() {
        let (_d, mut conn) = db();
        let ms = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        // Saturdays 01:00-03:00 Berlin from 2026-03-21, until removed.
        let id = create(
            &mut conn,
            &NewSilence {
                starts_ms: ms("2026-03-21T00:00:00Z"), // 01:00 CET
                ends_ms: FOREVER_MS,
                recurrence: Some(NewRecurrence {
                    rrule: "FREQ=WEEKLY;BYDAY=SA".into(),
                    tz: "Europe/Berlin".into(),
                    duration_ms: 2 * 3_600_000,
                }),
                ..new(Some("d1"))
            },
            ms("2026-03-20T00:00:00Z"),
        )
        .unwrap();
        let s = load(&conn, ms("2026-03-20T00:00:00Z")).unwrap();
        let t = Target::device("acme", "d1", "linux", "cpu");
        assert!(s[0].covers(&t, ms("2026-03-21T01:59:00Z")));
        assert!(!s[0].covers(&t, ms("2026-03-21T02:00:00Z")));
        assert!(!s[0].covers(&t, ms("2026-03-24T01:00:00Z")), "a Tuesday");
        // Two weeks later Berlin is on CEST: 01:00 local = 23:00Z the day before.
        assert!(s[0].covers(&t, ms("2026-04-03T23:00:00Z")));
        assert!(
            !s[0].covers(&t, ms("2026-04-04T01:00:00Z")),
            "03:00 CEST: over"
        );
        let rows = list(&conn, ms("2026-03-24T00:00:00Z"), false).unwrap();
        assert_eq!(
            (rows[0].id, rows[0].status(ms("2026-03-24T00:00:00Z"))),
            (id, "recurring")
        );
        let e = create(
            &mut conn,
            &NewSilence {
                recurrence: Some(NewRecurrence {
                    rrule: "FREQ=YEARLY".into(),
                    tz: "UTC".into(),
                    duration_ms: 1000,
                }),
                ..new(Some("d1"))
            },
            500,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--rrule, at character 6: FREQ=YEARLY is not supported (DAILY, WEEKLY, MONTHLY)"
        );
    }

    #[test]
    fn bad_silences_are_refused_with_the_reason() {
        let (_d, mut conn) = db();
        let mut err = |s: NewSilence| create(&mut conn, &s, 500).unwrap_err().to_string();
        assert!(err(new(None)).contains("at least one of"));
        assert!(
            err(NewSilence {
                comment: " ".into(),
                ..new(Some("d1"))
            })
            .contains("--comment")
        );
        assert!(err(new(Some("nope"))).contains("no device \"nope\""));
        assert!(
            err(NewSilence {
                tenant: Some("globex".into()),
                ..new(Some("d1"))
            })
            .contains("belongs to tenant \"acme\"")
        );
        assert!(
            err(NewSilence {
                site: Some("hq".into()),
                tenant: Some("globex".into()),
                ..new(None)
            })
            .contains("no site \"hq\" in tenant \"globex\"")
        );
        assert!(
            err(NewSilence {
                tag: Some("Prod".into()),
                ..new(None)
            })
            .contains("lowercase")
        );
        assert!(
            err(NewSilence {
                ends_ms: 400,
                starts_ms: 0,
                ..new(Some("d1"))
            })
            .contains("in the past")
        );
        assert!(
            err(NewSilence {
                ends_ms: 900,
                ..new(Some("d1"))
            })
            .contains("before it starts")
        );
        assert!(list(&conn, 0, true).unwrap().is_empty(), "nothing stored");
    }
}
