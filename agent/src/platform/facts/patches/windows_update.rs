//! Windows Update: the results of `IUpdateSearcher.Search("IsInstalled=0 and
//! IsHidden=0")`, serialized as a JSON array with one object per `IUpdate` and these
//! properties (the names of the COM interface):
//! `Title`, `KBArticleIDs` (strings), `SecurityBulletinIDs`, `MsrcSeverity` (string or
//! null), `Categories` (category names), `IsHidden`, `IsInstalled`.
//!
//! The agent itself reads these properties over COM (`platform/wua.rs`) into
//! [`Update`] values and calls [`classify`]; [`parse`] takes the same data as JSON
//! (what a PowerShell `ConvertTo-Json` of that projection prints), which is how the
//! fixtures feed it. The update history (`IUpdateSearcher.QueryHistory`) comes as
//! [`HistoryEntry`] values, and the pending-reboot registry keys as `reg query`
//! output; both are interpreted here too, so all the logic is tested on Linux.
//!
//! Security: a category named "Security Updates" or an MSRC severity. The advisory
//! id is `KB<first KBArticleID>` (else the first bulletin id).

use serde::Deserialize;

use super::{Class, Pending, ReadError};

/// The properties of one `IUpdate` that Tandem reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Update {
    pub(crate) title: String,
    #[serde(rename = "KBArticleIDs", default)]
    pub(crate) kb_article_ids: Vec<String>,
    #[serde(rename = "SecurityBulletinIDs", default)]
    pub(crate) security_bulletin_ids: Vec<String>,
    /// "Critical", "Important", ...; empty or None when Microsoft gives none.
    #[serde(default)]
    pub(crate) msrc_severity: Option<String>,
    /// Category names ("Security Updates", "Updates", "Drivers", a product name).
    #[serde(default)]
    pub(crate) categories: Vec<String>,
    #[serde(default)]
    pub(crate) is_hidden: bool,
    #[serde(default)]
    pub(crate) is_installed: bool,
}

/// One `IUpdateHistoryEntry`: its `Operation` (1 = installation, 2 =
/// uninstallation), `ResultCode` (2 = succeeded, 3 = succeeded with errors, 4 =
/// failed, 5 = aborted) and `Date` (an OLE automation date, UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryEntry {
    pub(crate) operation: i32,
    pub(crate) result_code: i32,
    pub(crate) date: f64,
}

/// An OLE automation date (days since 1899-12-30, fraction = time of day) as ms
/// since the Unix epoch; None for dates before 1970 or not finite.
pub fn ole_date_to_unix_ms(date: f64) -> Option<i64> {
    // 1970-01-01 is day 25569 of the OLE calendar.
    const UNIX_EPOCH_OLE_DAYS: f64 = 25_569.0;
    if !date.is_finite() || date < UNIX_EPOCH_OLE_DAYS {
        return None;
    }
    let ms = ((date - UNIX_EPOCH_OLE_DAYS) * 86_400_000.0).round();
    (ms < i64::MAX as f64).then_some(ms as i64)
}

/// The newest successful installation in the history, ms since the epoch; 0 when
/// there is none (a fresh machine, or a history that was cleared).
pub fn last_successful_install_ms(history: &[HistoryEntry]) -> i64 {
    history
        .iter()
        .filter(|e| e.operation == 1 && matches!(e.result_code, 2 | 3))
        .filter_map(|e| ole_date_to_unix_ms(e.date))
        .max()
        .unwrap_or(0)
}

/// Whether Windows waits for a reboot, from the three places that say so:
/// `...\WindowsUpdate\Auto Update\RebootRequired` exists (Windows Update installed
/// something), `...\Component Based Servicing\RebootPending` exists (servicing
/// stack), or `Session Manager\PendingFileRenameOperations` lists files to replace
/// at boot. `pending_renames` is the output of `reg query "HKLM\SYSTEM\
/// CurrentControlSet\Control\Session Manager" /v PendingFileRenameOperations`
/// (None when the value does not exist).
///
/// The registry does not say since when; the caller uses the last successful
/// installation as the best estimate.
pub fn reboot_required(
    wu_reboot_required: bool,
    cbs_reboot_pending: bool,
    pending_renames: Option<&str>,
) -> bool {
    let renames = pending_renames.is_some_and(|out| {
        crate::platform::facts::registry::parse_reg_query(out)
            .iter()
            .filter_map(|k| k.get("PendingFileRenameOperations"))
            .any(|d| !d.trim().is_empty())
    });
    wu_reboot_required || cbs_reboot_pending || renames
}

/// Turns search results into pending updates; hidden or installed entries are
/// skipped (the search criteria exclude them already; this keeps the parser honest
/// on any input).
pub fn classify(updates: Vec<Update>) -> Vec<Pending> {
    updates
        .into_iter()
        .filter(|u| !u.is_hidden && !u.is_installed)
        .map(|u| {
            let security = u.categories.iter().any(|c| c == "Security Updates")
                || u.msrc_severity
                    .as_deref()
                    .is_some_and(|s| !s.trim().is_empty());
            let advisory_id = u
                .kb_article_ids
                .first()
                .map(|kb| format!("KB{kb}"))
                .or_else(|| u.security_bulletin_ids.first().cloned())
                .unwrap_or_default();
            Pending {
                name: u.title,
                current_version: String::new(),
                new_version: String::new(),
                class: if security {
                    Class::Security
                } else {
                    Class::Other
                },
                advisory_id,
            }
        })
        .collect()
}

/// Parses the serialized search result; hidden or installed entries are skipped.
/// A single object (what `ConvertTo-Json` makes of a one-element array) is accepted.
pub fn parse(json: &str) -> Result<Vec<Pending>, ReadError> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Update>),
        One(Update),
    }
    let trimmed = json.trim();
    if trimmed.is_empty() {
        // ConvertTo-Json of an empty collection prints nothing.
        return Ok(Vec::new());
    }
    let updates = match serde_json::from_str::<OneOrMany>(trimmed) {
        Ok(OneOrMany::Many(v)) => v,
        Ok(OneOrMany::One(u)) => vec![u],
        Err(e) => {
            return Err(ReadError::Malformed {
                what: "windows update search",
                detail: e.to_string(),
            });
        }
    };
    Ok(classify(updates))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_results() {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/patches/windows-update-search.win11.json"),
        )
        .unwrap();
        let u = parse(&text).unwrap();
        assert_eq!(u.len(), 3, "the hidden driver is skipped");
        assert_eq!(u[0].advisory_id, "KB5035853");
        assert_eq!(u[0].class, Class::Security);
        assert_eq!(u[1].class, Class::Other);
        assert!(u[2].name.starts_with("Security Intelligence Update"));
    }

    #[test]
    fn one_object_empty_and_garbage() {
        let one = r#"{"Title":"T","KBArticleIDs":["1"],"Categories":["Updates"]}"#;
        assert_eq!(parse(one).unwrap().len(), 1);
        assert!(parse("").unwrap().is_empty());
        assert!(parse("Exception from HRESULT: 0x8024402C").is_err());
    }

    #[test]
    fn ole_dates_and_the_last_install() {
        // 2024-03-12 12:00:00 UTC is OLE day 45363.5.
        assert_eq!(ole_date_to_unix_ms(45_363.5), Some(1_710_244_800_000));
        assert_eq!(ole_date_to_unix_ms(25_569.0), Some(0));
        assert_eq!(ole_date_to_unix_ms(100.0), None);
        assert_eq!(ole_date_to_unix_ms(f64::NAN), None);
        let h = |operation, result_code, date| HistoryEntry {
            operation,
            result_code,
            date,
        };
        let history = [
            h(1, 2, 45_363.5),
            // Failed, uninstall, and succeeded-with-errors (counts).
            h(1, 4, 45_400.0),
            h(2, 2, 45_401.0),
            h(1, 3, 45_370.0),
        ];
        assert_eq!(
            last_successful_install_ms(&history),
            ole_date_to_unix_ms(45_370.0).unwrap()
        );
        assert_eq!(last_successful_install_ms(&[]), 0);
    }

    #[test]
    fn reboot_from_the_registry() {
        assert!(!reboot_required(false, false, None));
        assert!(reboot_required(true, false, None));
        assert!(reboot_required(false, true, None));
        let renames = "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\r\n    PendingFileRenameOperations    REG_MULTI_SZ    \\??\\C:\\Windows\\Temp\\x.tmp\\0\\0\r\n";
        assert!(reboot_required(false, false, Some(renames)));
        let empty = "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\r\n    PendingFileRenameOperations    REG_MULTI_SZ    \r\n";
        assert!(!reboot_required(false, false, Some(empty)));
    }

    #[test]
    fn classify_without_json() {
        let u = classify(vec![
            Update {
                title: "2024-03 Cumulative Update".into(),
                kb_article_ids: vec!["5035853".into()],
                msrc_severity: Some("Critical".into()),
                ..Default::default()
            },
            Update {
                title: "hidden".into(),
                is_hidden: true,
                ..Default::default()
            },
        ]);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].class, Class::Security);
        assert_eq!(u[0].advisory_id, "KB5035853");
    }
}
