//! Windows Update: the results of `IUpdateSearcher.Search("IsInstalled=0 and
//! IsHidden=0")`, serialized as a JSON array with one object per `IUpdate` and these
//! properties (the names of the COM interface):
//! `Title`, `KBArticleIDs` (strings), `SecurityBulletinIDs`, `MsrcSeverity` (string or
//! null), `Categories` (category names), `IsHidden`, `IsInstalled`.
//!
//! The search itself is not implemented yet: `platform/windows.rs` returns a
//! "not implemented" error. This parser fixes the shape it will fill, and is what a
//! PowerShell helper (`ConvertTo-Json` of that projection) would feed.
//!
//! Security: a category named "Security Updates" or an MSRC severity. The advisory
//! id is `KB<first KBArticleID>` (else the first bulletin id).

use serde::Deserialize;

use super::{Class, PatchError, Pending};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Update {
    title: String,
    #[serde(rename = "KBArticleIDs", default)]
    kb_article_ids: Vec<String>,
    #[serde(rename = "SecurityBulletinIDs", default)]
    security_bulletin_ids: Vec<String>,
    #[serde(default)]
    msrc_severity: Option<String>,
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    is_hidden: bool,
    #[serde(default)]
    is_installed: bool,
}

/// Parses the serialized search result; hidden or installed entries are skipped.
/// A single object (what `ConvertTo-Json` makes of a one-element array) is accepted.
pub fn parse(json: &str) -> Result<Vec<Pending>, PatchError> {
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
            return Err(PatchError::Malformed {
                what: "windows update search",
                detail: e.to_string(),
            });
        }
    };
    Ok(updates
        .into_iter()
        .filter(|u| !u.is_hidden && !u.is_installed)
        .map(|u| {
            let security = u.categories.iter().any(|c| c == "Security Updates")
                || u.msrc_severity.as_deref().is_some_and(|s| !s.is_empty());
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
        .collect())
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
}
