//! Debian/Ubuntu: `apt list --upgradable` and `apt-get -s upgrade` (a simulation: no
//! change to the system). An update is security when one of the suites it comes
//! from ends in `-security` (`bookworm-security`, `jammy-security`,
//! `Debian-Security:12/oldstable-security`).

use super::{Class, Pending, ReadError};

const WHAT_LIST: &str = "apt list --upgradable";
const WHAT_SIM: &str = "apt-get -s upgrade";

fn class(origins: &str) -> Class {
    if origins.contains("-security") {
        Class::Security
    } else {
        Class::Other
    }
}

/// Parses `apt list --upgradable`:
/// `name/suite[,suite…] new-version arch [upgradable from: old-version]`.
pub fn parse_list_upgradable(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("Listing") || l.starts_with("N:") || l.starts_with("W:") {
            continue;
        }
        let bad = || ReadError::parse(WHAT_LIST, i + 1, line);
        let mut f = l.split_whitespace();
        let (Some(pkg), Some(new), Some(_arch)) = (f.next(), f.next(), f.next()) else {
            return Err(bad());
        };
        let (name, suites) = pkg.split_once('/').ok_or_else(bad)?;
        let current = l
            .split_once("[upgradable from: ")
            .and_then(|(_, r)| r.strip_suffix(']'))
            .ok_or_else(bad)?;
        out.push(Pending {
            name: name.to_owned(),
            current_version: current.trim().to_owned(),
            new_version: new.to_owned(),
            class: class(suites),
            advisory_id: String::new(),
        });
    }
    Ok(out)
}

/// Parses the `Inst` lines of `apt-get -s upgrade`:
/// `Inst name [old] (new Origin:version/suite[, …] [arch])`. Other lines (the
/// summary, `Conf`, `Remv`) are skipped.
pub fn parse_simulated_upgrade(text: &str) -> Result<Vec<Pending>, ReadError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("Inst ") else {
            continue;
        };
        let bad = || ReadError::parse(WHAT_SIM, i + 1, line);
        let (name, rest) = rest.split_once(' ').ok_or_else(bad)?;
        let rest = rest.trim_start();
        let (current, rest) = match rest.strip_prefix('[') {
            Some(r) => {
                let (old, r) = r.split_once(']').ok_or_else(bad)?;
                (old, r.trim_start())
            }
            None => ("", rest),
        };
        let inner = rest.strip_prefix('(').ok_or_else(bad)?;
        let (inner, _) = inner.rsplit_once(')').ok_or_else(bad)?;
        let (new, origins) = inner.split_once(' ').ok_or_else(bad)?;
        out.push(Pending {
            name: name.to_owned(),
            current_version: current.to_owned(),
            new_version: new.to_owned(),
            class: class(origins),
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
    fn list_upgradable_captured_on_debian_12() {
        let u = parse_list_upgradable(&fixture("apt-list-upgradable.debian12.txt")).unwrap();
        assert_eq!(u.len(), 132);
        let apt = u.iter().find(|p| p.name == "apt").unwrap();
        assert_eq!(
            (
                apt.current_version.as_str(),
                apt.new_version.as_str(),
                apt.class
            ),
            ("2.6.1", "2.6.2", Class::Security)
        );
        let bf = u.iter().find(|p| p.name == "base-files").unwrap();
        assert_eq!(bf.class, Class::Other);
        assert_eq!(bf.current_version, "12.4+deb12u11");
        assert!(u.iter().filter(|p| p.class == Class::Security).count() > 10);
    }

    #[test]
    fn simulated_upgrade_captured_on_debian_12() {
        let u = parse_simulated_upgrade(&fixture("apt-get-s-upgrade.debian12.txt")).unwrap();
        assert_eq!(u.len(), 132);
        let g = u.iter().find(|p| p.name == "libgcrypt20").unwrap();
        assert_eq!(g.current_version, "1.10.1-3");
        assert_eq!(g.new_version, "1.10.1-3+deb12u1");
        assert_eq!(g.class, Class::Security);
        let b = u.iter().find(|p| p.name == "bash").unwrap();
        assert_eq!(b.class, Class::Other);
        // Both commands agree on what is pending and what is security.
        let l = parse_list_upgradable(&fixture("apt-list-upgradable.debian12.txt")).unwrap();
        let key = |v: &[Pending]| {
            let mut k: Vec<_> = v
                .iter()
                .map(|p| (p.name.clone(), p.new_version.clone(), p.class))
                .collect();
            k.sort_by(|a, b| a.0.cmp(&b.0));
            k
        };
        assert_eq!(key(&u), key(&l));
    }

    #[test]
    fn garbage_is_an_error_not_zero_pending() {
        let e = parse_list_upgradable("Listing...\nE: Could not get lock /var/lib/dpkg/lock\n")
            .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_simulated_upgrade("Inst broken\n").unwrap_err();
        assert!(e.to_string().contains("apt-get -s upgrade"), "{e}");
        assert!(
            parse_list_upgradable("Listing... Done\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn new_packages_have_no_current_version() {
        let u = parse_simulated_upgrade(
            "Inst linux-image-6.1.0-32-amd64 (6.1.129-1 Debian-Security:12/stable-security [amd64])\n",
        )
        .unwrap();
        assert_eq!(u[0].current_version, "");
        assert_eq!(u[0].class, Class::Security);
    }
}
