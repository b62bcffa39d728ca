//! Arch: `checkupdates` (from pacman-contrib; syncs a private copy of the database,
//! so it sees new packages without touching the system's) and `pacman -Qu` (against
//! the last synced database). Both print `name old -> new`, `pacman -Qu` sometimes
//! with ` [ignored]`. Arch publishes no per-package security flag: all unknown.

use super::{Class, Pending, ReadError};

const WHAT: &str = "checkupdates/pacman -Qu";

/// Parses `name old-version -> new-version [ignored]` lines; ignored packages are
/// left out (the administrator pinned them on purpose).
pub fn parse(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [_, _, "->", _, "[ignored]"] => {}
            [name, old, "->", new] => out.push(Pending {
                name: (*name).to_owned(),
                current_version: (*old).to_owned(),
                new_version: (*new).to_owned(),
                class: Class::Unknown,
                advisory_id: String::new(),
            }),
            _ => return Err(ReadError::parse(WHAT, i + 1, line)),
        }
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
    fn checkupdates_and_pacman_qu() {
        let u = parse(&fixture("checkupdates.arch.txt")).unwrap();
        assert_eq!(u.len(), 5);
        assert_eq!(u[1].name, "linux");
        assert_eq!(u[1].current_version, "6.8.1.arch1-1");
        assert_eq!(u[1].new_version, "6.8.2.arch2-1");
        let q = parse(&fixture("pacman-Qu.arch.txt")).unwrap();
        assert_eq!(q.len(), 3);
        assert!(q.iter().all(|p| p.name != "nvidia"));
    }

    #[test]
    fn errors_are_errors() {
        assert!(parse("==> ERROR: Cannot fetch updates\n").is_err());
    }

    fn captured(name: &str) -> String {
        crate::platform::test_fixture("captured", name)
    }

    /// Real pacman 6.0.2 `-Qu` output (`tests/fixtures/capture.sh`).
    #[test]
    fn real_capture() {
        let u = parse(&captured("pacman-Qu.txt")).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].name, "tandem-demo");
        assert_eq!(u[0].current_version, "1.0-1");
        assert_eq!(u[0].new_version, "1.1-1");
    }
}
