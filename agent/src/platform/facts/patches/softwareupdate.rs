//! macOS: `softwareupdate --list`. Each update is a `* Label: …` line followed by a
//! tab-indented `Title: …, Version: …, Size: …, Recommended: …, Action: …,` line.
//! Apple does not classify updates in this output; titles naming security
//! ("Background Security Improvement", "Security Update 2024-001") are security, the
//! rest unknown (OS and Safari updates usually carry security fixes too, but the tool
//! does not say so).

use super::{Class, Pending, ReadError};

const WHAT: &str = "softwareupdate --list";

/// Parses `softwareupdate --list` (both stdout and stderr may be passed joined: the
/// "No new software available." line goes to stderr).
pub fn parse(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out: Vec<Pending> = Vec::new();
    let mut saw_header = false;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with("Finding available software") || l.starts_with("Software Update Tool") {
            saw_header = true;
        } else if let Some(label) = l.strip_prefix("* Label: ") {
            out.push(Pending {
                name: label.to_owned(),
                current_version: String::new(),
                new_version: String::new(),
                class: Class::Unknown,
                advisory_id: String::new(),
            });
        } else if l.starts_with("Title: ") {
            let Some(last) = out.last_mut() else {
                return Err(ReadError::parse(WHAT, i + 1, line));
            };
            for field in l.split(", ") {
                if let Some(v) = field.strip_prefix("Version: ") {
                    last.new_version = v.trim_end_matches(',').to_owned();
                } else if let Some(t) = field.strip_prefix("Title: ")
                    && t.contains("Security")
                {
                    last.class = Class::Security;
                }
            }
        }
    }
    if !saw_header {
        return Err(ReadError::Malformed {
            what: WHAT,
            detail: "no \"Finding available software\" line".into(),
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
    fn lists_updates() {
        let u = parse(&fixture("softwareupdate-list.macos13.txt")).unwrap();
        assert_eq!(u.len(), 4);
        assert_eq!(u[0].name, "macOS Ventura 13.6.6-22G630");
        assert_eq!(u[0].new_version, "13.6.6");
        assert_eq!(u[0].class, Class::Unknown);
        assert_eq!(u[2].class, Class::Security);
        assert_eq!(u[2].new_version, "13.6.5 (a)");
    }

    #[test]
    fn none_and_garbage() {
        assert!(
            parse(&fixture("softwareupdate-list-none.macos13.txt"))
                .unwrap()
                .is_empty()
        );
        assert!(parse("softwareupdate: unrecognized option\n").is_err());
    }
}
