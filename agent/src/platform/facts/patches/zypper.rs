//! SUSE/openSUSE: `zypper --xmlout list-patches` (SUSE's advisories, each with a
//! category; `security` is security) and `zypper --xmlout list-updates` (packages,
//! unclassified: Tumbleweed has no patches at all). zypper's XML is machine-written
//! and flat, so finding the `<update …>` start tags and reading their attributes
//! suffices and the agent carries no XML parser.

use super::{Class, Pending, ReadError};

const WHAT: &str = "zypper --xmlout";

/// The value of attribute `name` in a start tag, entities decoded.
fn attr(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    let pat = format!(" {name}=");
    loop {
        let at = rest.find(&pat)?;
        rest = &rest[at + pat.len()..];
        let quote = rest.chars().next()?;
        if quote == '"' || quote == '\'' {
            let end = rest[1..].find(quote)?;
            return Some(unescape(&rest[1..1 + end]));
        }
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The `<update …>` start tags with their line numbers, checked for the document's
/// closing tag so a truncated or non-XML answer is an error rather than "0
/// pending". Tags are found anywhere, not only at the start of a line: zypper
/// 1.14 writes a whole `<update-list>` on one line (seen in the real capture
/// `tests/fixtures/captured/zypper-list-patches.xml`). A literal `<` cannot occur
/// in XML text, so every `<update ` is a start tag.
fn update_tags(text: &str) -> Result<Vec<(usize, &str)>, ReadError> {
    if !text.contains("</stream>") || !text.contains("<update-status") {
        return Err(ReadError::Malformed {
            what: WHAT,
            detail: "no <update-status> in a complete <stream> document".into(),
        });
    }
    let mut tags = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("<update ") {
        let start = from + at;
        let line = text[..start].matches('\n').count() + 1;
        let Some(len) = text[start..].find('>') else {
            return Err(ReadError::parse(WHAT, line, &text[start..]));
        };
        tags.push((line, &text[start..=start + len]));
        from = start + len + 1;
    }
    Ok(tags)
}

/// Parses `zypper --xmlout list-patches`: needed patches only; name and advisory id
/// are the patch id, `new_version` its edition.
pub fn parse_list_patches(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    for (line, tag) in update_tags(text)? {
        let get = |a| attr(tag, a).ok_or_else(|| ReadError::parse(WHAT, line, tag));
        if get("kind")? != "patch" {
            continue;
        }
        let status = attr(tag, "status").unwrap_or_default();
        if !(status.is_empty() || status == "needed") {
            continue;
        }
        let name = get("name")?;
        out.push(Pending {
            advisory_id: name.clone(),
            name,
            current_version: String::new(),
            new_version: get("edition")?,
            class: if get("category")? == "security" {
                Class::Security
            } else {
                Class::Other
            },
        });
    }
    Ok(out)
}

/// Parses `zypper --xmlout list-updates`: packages with `edition-old` → `edition`.
pub fn parse_list_updates(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    for (line, tag) in update_tags(text)? {
        let get = |a| attr(tag, a).ok_or_else(|| ReadError::parse(WHAT, line, tag));
        if get("kind")? != "package" {
            continue;
        }
        out.push(Pending {
            name: get("name")?,
            current_version: attr(tag, "edition-old").unwrap_or_default(),
            new_version: get("edition")?,
            class: Class::Unknown,
            advisory_id: String::new(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("patches", name)
    }

    #[test]
    fn patches() {
        let p = parse_list_patches(&fixture("zypper-list-patches.sles15.xml")).unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].name, "SUSE-SLE-Module-Basesystem-15-SP5-2024-812");
        assert_eq!(p[0].advisory_id, p[0].name);
        assert_eq!(p[0].class, Class::Security);
        assert_eq!(p[1].class, Class::Other);
        assert_eq!(p[2].new_version, "1");
    }

    #[test]
    fn updates() {
        let u = parse_list_updates(&fixture("zypper-list-updates.sles15.xml")).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "timezone");
        assert_eq!(u[1].current_version, "2023c-150000.75.23.1");
        assert_eq!(u[1].new_version, "2024a-150000.75.28.1");
    }

    #[test]
    fn locked_or_truncated_is_an_error() {
        let locked = "<?xml version='1.0'?>\n<stream>\n<message type=\"error\">System management is locked by the application with pid 4242 (zypper).</message>\n</stream>\n";
        assert!(parse_list_patches(locked).is_err());
        assert!(parse_list_updates("<?xml version='1.0'?>\n<stream>\n<update-status").is_err());
        assert_eq!(
            attr(r#"<update name="a&amp;b" kind='patch'>"#, "kind").as_deref(),
            Some("patch")
        );
        assert_eq!(
            attr(r#"<update name="a&amp;b">"#, "name").as_deref(),
            Some("a&b")
        );
    }

    fn captured(name: &str) -> String {
        crate::platform::test_fixture("captured", name)
    }

    /// Real zypper 1.14.42 output (`tests/fixtures/capture.sh`): the XML of a
    /// local repository with one security and one bugfix patch, each on one line.
    #[test]
    fn real_capture() {
        let p = parse_list_patches(&captured("zypper-list-patches.xml")).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "TANDEM-2026-0001");
        assert_eq!(p[0].class, Class::Security);
        assert_eq!(p[1].class, Class::Other);
        let u = parse_list_updates(&captured("zypper-list-updates.xml")).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[1].name, "tandem-lib");
        assert_eq!(u[1].current_version, "2.0-1");
        assert_eq!(u[1].new_version, "2.0-2");
    }
}
