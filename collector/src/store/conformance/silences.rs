//! Conformance of [`AlertStore`]'s silences and maintenance windows: listed until
//! they end or are lifted; a silence of an unknown name refused.

use crate::store::api::{AlertStore, RemoveOutcome, SilenceInsert, SilenceRefusal};

fn silence(device: Option<&str>) -> SilenceInsert {
    SilenceInsert {
        starts_ms: 1000,
        ends_ms: 5000,
        device: device.map(Into::into),
        comment: "disk swap".into(),
        by: "alice".into(),
        ..SilenceInsert::default()
    }
}

/// A silence is listed while it has not ended, then not; lifting keeps the row.
pub(crate) fn a_silence_is_listed_until_it_ends_or_is_lifted<S: AlertStore>(mut s: S) {
    let id = s
        .create_silence(&silence(Some("d1")), 500)
        .unwrap()
        .unwrap();
    let later = SilenceInsert {
        starts_ms: 4000,
        ends_ms: 9000,
        rule: Some("cpu".into()),
        device: None,
        rrule: Some("FREQ=DAILY".into()),
        tz: Some("Europe/Berlin".into()),
        duration_ms: Some(60_000),
        ..silence(None)
    };
    let later = s.create_silence(&later, 500).unwrap().unwrap();
    let ids = |s: &S, now, all| {
        s.silences(now, all)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&s, 2000, false), vec![id, later], "soonest end first");
    let r = &s.silences(2000, false).unwrap()[1];
    assert_eq!(
        (
            r.rrule.as_deref(),
            r.tz.as_deref(),
            r.duration_ms,
            r.created_by.as_str()
        ),
        (
            Some("FREQ=DAILY"),
            Some("Europe/Berlin"),
            Some(60_000),
            "alice"
        )
    );
    assert_eq!(ids(&s, 6000, false), vec![later], "the first one ended");
    assert_eq!(
        s.remove_silence(later, "bob", 6000).unwrap(),
        RemoveOutcome::Removed
    );
    assert_eq!(
        s.remove_silence(later, "bob", 6001).unwrap(),
        RemoveOutcome::AlreadyRemoved
    );
    assert_eq!(
        s.remove_silence(id, "bob", 6001).unwrap(),
        RemoveOutcome::AlreadyEnded
    );
    assert_eq!(
        s.remove_silence(99, "bob", 6001).unwrap(),
        RemoveOutcome::NoSuchSilence
    );
    assert!(ids(&s, 6000, false).is_empty());
    let all = s.silences(6000, true).unwrap();
    assert_eq!(all.len(), 2, "lifted and ended silences stay on record");
    let lifted = all.iter().find(|r| r.id == later).unwrap();
    assert_eq!(
        (lifted.removed_ms, lifted.removed_by.as_deref()),
        (Some(6000), Some("bob"))
    );
}

/// A silence naming what does not exist is refused with the reason; nothing is
/// stored.
pub(crate) fn a_silence_of_unknown_names_is_refused<S: AlertStore>(mut s: S) {
    let refused = |s: &mut S, x: SilenceInsert| s.create_silence(&x, 500).unwrap().unwrap_err();
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("nope".into()),
                ..silence(None)
            }
        ),
        SilenceRefusal::NoTenant("nope".into())
    );
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("globex".into()),
                site: Some("hq".into()),
                ..silence(None)
            }
        ),
        SilenceRefusal::NoSite("hq".into(), " in tenant \"globex\"".into())
    );
    assert_eq!(
        refused(&mut s, silence(Some("d9"))),
        SilenceRefusal::NoDevice("d9".into())
    );
    assert_eq!(
        refused(
            &mut s,
            SilenceInsert {
                tenant: Some("globex".into()),
                ..silence(Some("d1"))
            }
        ),
        SilenceRefusal::WrongTenant {
            device: "d1".into(),
            actual: "acme".into(),
            wanted: "globex".into()
        }
    );
    assert!(s.silences(0, true).unwrap().is_empty(), "nothing stored");
    // Known names are accepted.
    let ok = SilenceInsert {
        tenant: Some("acme".into()),
        site: Some("hq".into()),
        ..silence(Some("d1"))
    };
    assert!(s.create_silence(&ok, 500).unwrap().is_ok());
}

/// No maintenance window made at run time in the fixture: none loads.
pub(crate) fn no_maintenance_windows_in_the_fixture<S: AlertStore>(s: S) {
    assert!(s.maintenance_windows(0).unwrap().is_empty());
}
