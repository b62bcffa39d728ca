//! Fedora/RHEL (dnf, and yum, which prints the same): `dnf check-update` lists every
//! pending package (no current version, no classification); `dnf updateinfo list
//! --updates` lists the advisories behind them. [`merge`] joins the two: a package
//! named in a security advisory (`Important/Sec.`, `security`) is security and
//! carries the advisory id; a package with only non-security advisories is other;
//! one without an advisory stays unknown.

use std::collections::HashMap;

use super::{Class, Pending, ReadError};

const WHAT_CHECK: &str = "dnf check-update";
const WHAT_INFO: &str = "dnf updateinfo list";

/// Parses `dnf check-update` (exit code 100 when updates are pending, 0 when none).
/// Long names wrap: the name alone on a line, version and repository on the next.
/// The "Obsoleting Packages" block that may follow repeats packages and is skipped.
pub fn parse_check_update(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    let mut wrapped: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty()
            || l.starts_with("Last metadata expiration check")
            || l.starts_with("Security:")
        {
            continue;
        }
        if l.starts_with("Obsoleting Packages") {
            break;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let (pkg, version) = match (f.as_slice(), wrapped.take()) {
            ([pkg], None) => {
                wrapped = Some((*pkg).to_owned());
                continue;
            }
            ([version, _repo], Some(pkg)) => (pkg, *version),
            ([pkg, version, _repo], None) => ((*pkg).to_owned(), *version),
            _ => return Err(ReadError::parse(WHAT_CHECK, i + 1, line)),
        };
        let name = match pkg.rsplit_once('.') {
            Some((n, _arch)) if !n.is_empty() => n,
            _ => return Err(ReadError::parse(WHAT_CHECK, i + 1, line)),
        };
        out.push(Pending {
            name: name.to_owned(),
            current_version: String::new(),
            new_version: version.to_owned(),
            class: Class::Unknown,
            advisory_id: String::new(),
        });
    }
    if let Some(pkg) = wrapped {
        return Err(ReadError::Malformed {
            what: WHAT_CHECK,
            detail: format!("output ends inside the entry for {pkg:?}"),
        });
    }
    Ok(out)
}

/// One line of `dnf updateinfo list`: an advisory and one package it updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    pub(crate) id: String,
    pub(crate) security: bool,
    /// The package name (NEVRA with version, release and arch removed).
    pub(crate) package: String,
}

/// Parses dnf 4's `dnf updateinfo list --updates`:
/// `ADVISORY-ID  type-or-severity/Sec.  name-[epoch:]version-release.arch`.
pub fn parse_updateinfo(text: &str) -> Result<Vec<Advisory>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("Last metadata expiration check") {
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        let [id, kind, nevra] = f.as_slice() else {
            return Err(ReadError::parse(WHAT_INFO, i + 1, line));
        };
        // name-version-release.arch: the name is all but the last two '-' fields.
        let mut parts = nevra.rsplitn(3, '-');
        let (Some(_release), Some(_version), Some(name)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ReadError::parse(WHAT_INFO, i + 1, line));
        };
        out.push(Advisory {
            id: (*id).to_owned(),
            security: kind.ends_with("/Sec.") || kind.eq_ignore_ascii_case("security"),
            package: name.to_owned(),
        });
    }
    Ok(out)
}

/// Classifies `updates` with `advisories` (see the module doc).
pub fn merge(mut updates: Vec<Pending>, advisories: &[Advisory]) -> Vec<Pending> {
    let mut by_pkg: HashMap<&str, &Advisory> = HashMap::new();
    for a in advisories {
        by_pkg
            .entry(a.package.as_str())
            .and_modify(|cur| {
                if a.security && !cur.security {
                    *cur = a;
                }
            })
            .or_insert(a);
    }
    for u in &mut updates {
        if let Some(a) = by_pkg.get(u.name.as_str()) {
            u.class = if a.security {
                Class::Security
            } else {
                Class::Other
            };
            u.advisory_id = a.id.clone();
        }
    }
    updates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("patches", name)
    }

    #[test]
    fn check_update_with_wrapped_names_and_obsoletes() {
        let u = parse_check_update(&fixture("dnf-check-update.fedora39.txt")).unwrap();
        let names: Vec<_> = u.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "curl",
                "firefox",
                "kernel",
                "kernel-core",
                "libcurl",
                "openssl-libs",
                "python3-setuptools-wheel",
                "texlive-collection-latexrecommended"
            ]
        );
        assert_eq!(u[5].new_version, "1:3.1.1-4.fc39");
        assert_eq!(u[7].new_version, "11:svn65512-74.fc39");
        assert!(u.iter().all(|p| p.class == Class::Unknown));
    }

    #[test]
    fn updateinfo_classifies() {
        let a = parse_updateinfo(&fixture("dnf-updateinfo-list-updates.fedora39.txt")).unwrap();
        assert_eq!(a.len(), 7);
        assert_eq!(
            a[3],
            Advisory {
                id: "FEDORA-2024-c7b1e0a9f2".into(),
                security: true,
                package: "kernel".into()
            }
        );
        assert_eq!(a[5].package, "openssl-libs");
        assert!(!a[0].security);
        let u = merge(
            parse_check_update(&fixture("dnf-check-update.fedora39.txt")).unwrap(),
            &a,
        );
        let get = |n: &str| u.iter().find(|p| p.name == n).unwrap();
        assert_eq!(get("curl").class, Class::Security);
        assert_eq!(get("curl").advisory_id, "FEDORA-2024-8f1c2e7d40");
        assert_eq!(get("firefox").class, Class::Other);
        assert_eq!(
            get("texlive-collection-latexrecommended").class,
            Class::Unknown
        );
    }

    #[test]
    fn unexpected_output_is_an_error() {
        assert!(
            parse_check_update("Error: Failed to download metadata for repo 'updates'\n").is_err()
        );
        assert!(parse_check_update("lonely.x86_64\n").is_err());
        assert!(parse_updateinfo("FEDORA-1 bugfix\n").is_err());
        assert!(
            parse_check_update("\nLast metadata expiration check: 0:01:02 ago.\n")
                .unwrap()
                .is_empty()
        );
    }

    fn captured(name: &str) -> String {
        crate::platform::test_fixture("captured", name)
    }

    /// Real dnf 4.14 output (`tests/fixtures/capture.sh`): two updates, one with a
    /// security advisory, one with a bugfix advisory.
    #[test]
    fn real_capture() {
        let list = parse_check_update(&captured("dnf-check-update.txt")).unwrap();
        let adv = parse_updateinfo(&captured("dnf-updateinfo-list-updates.txt")).unwrap();
        let merged = merge(list, &adv);
        assert_eq!(merged.len(), 2);
        let lib = merged.iter().find(|u| u.name == "tandem-lib").unwrap();
        assert_eq!(lib.new_version, "2.0-2");
        assert_eq!(lib.class, Class::Security);
        assert_eq!(lib.advisory_id, "TANDEM-2026-0001");
        let demo = merged.iter().find(|u| u.name == "tandem-demo").unwrap();
        assert_eq!(demo.class, Class::Other);
        assert_eq!(demo.advisory_id, "TANDEM-2026-0002");
    }
}
