//! OpenSSH server settings: may root log in, are passwords accepted. Shared by
//! Linux, macOS and Windows (OpenSSH for Windows reads `%ProgramData%\ssh\sshd_config`).
//!
//! The best source is `sshd -T` (the effective settings, as sshd itself computes
//! them; needs root and host keys); the fallback is the config file read with
//! sshd's rules: keywords are case-insensitive, the first value given wins,
//! `Include` pulls other files in at its place, and the global part ends at the first
//! `Match` block (what a `Match` changes applies to some connections only and is
//! not judged here). Settings never given take OpenSSH's defaults
//! (`PermitRootLogin prohibit-password` since 7.0, `PasswordAuthentication yes`).

use std::path::Path;

use super::{Check, SSH_PASSWORD_AUTH, SSH_ROOT_LOGIN};

/// The two settings, as sshd would use them globally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub(crate) permit_root_login: Option<String>,
    pub(crate) password_authentication: Option<String>,
}

/// Most files an `Include` chain may pull in (a loop guard).
const MAX_FILES: usize = 64;

/// Reads config text with sshd's precedence. `read_include(pattern)` returns the
/// texts of the files an `Include` pattern names, in order (sshd sorts glob
/// matches); it is how tests supply files.
pub fn parse_config(
    text: &str,
    read_include: &mut dyn FnMut(&str) -> Vec<(String, String)>,
) -> Settings {
    let mut s = Settings {
        permit_root_login: None,
        password_authentication: None,
    };
    let mut files = 0usize;
    walk(text, read_include, &mut s, &mut files);
    s
}

/// Returns false once a `Match` was met (the global part is over).
fn walk(
    text: &str,
    read_include: &mut dyn FnMut(&str) -> Vec<(String, String)>,
    s: &mut Settings,
    files: &mut usize,
) -> bool {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
            Some((k, v)) => (k, v.trim().trim_start_matches('=').trim()),
            None => (line, ""),
        };
        let value = value.trim_matches('"');
        match key.to_ascii_lowercase().as_str() {
            "match" => return false,
            "include" => {
                for pattern in value.split_whitespace() {
                    for (_name, body) in read_include(pattern) {
                        *files += 1;
                        if *files > MAX_FILES || !walk(&body, read_include, s, files) {
                            return false;
                        }
                    }
                }
            }
            "permitrootlogin" if s.permit_root_login.is_none() => {
                s.permit_root_login = Some(value.to_ascii_lowercase());
            }
            "passwordauthentication" if s.password_authentication.is_none() => {
                s.password_authentication = Some(value.to_ascii_lowercase());
            }
            _ => {}
        }
    }
    true
}

/// `sshd -T` output: `keyword value` lines, keywords in lower case, every setting
/// present.
pub fn parse_sshd_t(text: &str) -> Settings {
    parse_config(text, &mut |_| Vec::new())
}

/// The two checks from settings read from `source` (a file path or "sshd -T").
///
/// Root login passes for `no` and for the key-only modes (`prohibit-password`, its
/// old name `without-password`, `forced-commands-only`): no password can open a root
/// shell then. Password authentication passes for `no` only.
pub fn checks(s: &Settings, source: &str) -> Vec<Check> {
    let root = s.permit_root_login.as_deref();
    let root_value = root.unwrap_or("prohibit-password");
    let root_said = if root.is_some() {
        format!("{source}: PermitRootLogin {root_value}")
    } else {
        format!("{source}: PermitRootLogin not set (OpenSSH default prohibit-password)")
    };
    let root_check = match root_value {
        "no" | "prohibit-password" | "without-password" | "forced-commands-only" => {
            Check::pass(SSH_ROOT_LOGIN, root_said)
        }
        "yes" => Check::fail(SSH_ROOT_LOGIN, root_said),
        other => Check::unknown(
            SSH_ROOT_LOGIN,
            format!("{source}: PermitRootLogin {other:?} is not a value sshd documents"),
        ),
    };
    let pw = s.password_authentication.as_deref();
    let pw_value = pw.unwrap_or("yes");
    let pw_said = if pw.is_some() {
        format!("{source}: PasswordAuthentication {pw_value}")
    } else {
        format!("{source}: PasswordAuthentication not set (OpenSSH default yes)")
    };
    let pw_check = match pw_value {
        "no" => Check::pass(SSH_PASSWORD_AUTH, pw_said),
        "yes" => Check::fail(SSH_PASSWORD_AUTH, pw_said),
        other => Check::unknown(
            SSH_PASSWORD_AUTH,
            format!("{source}: PasswordAuthentication {other:?} is not a value sshd documents"),
        ),
    };
    vec![root_check, pw_check]
}

/// Both checks when no SSH server is installed: nobody can log in over SSH, which
/// is read from the system (the server binary is absent), not guessed.
pub fn not_installed(evidence: &str) -> Vec<Check> {
    vec![
        Check::pass(SSH_ROOT_LOGIN, evidence),
        Check::pass(SSH_PASSWORD_AUTH, evidence),
    ]
}

/// (The one function here that reads files: the platform modules' helper.) The files an sshd `Include` pattern names (relative to `base`; `*` in the last
/// component only, as every shipped config uses it), sorted, with their text.
pub fn read_glob(base: &Path, pattern: &str) -> Vec<(String, String)> {
    let full = base.join(pattern);
    let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let (prefix, suffix) = name.split_once('*').unwrap_or((name, ""));
    let exact = !name.contains('*');
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| {
                if exact {
                    n == name
                } else {
                    n.starts_with(prefix)
                        && n.ends_with(suffix)
                        && n.len() >= prefix.len() + suffix.len()
                }
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
        .into_iter()
        .filter_map(|n| {
            let p = dir.join(&n);
            std::fs::read_to_string(&p)
                .ok()
                .map(|t| (p.display().to_string(), t))
        })
        .collect()
}

/// Both checks unknown for `reason`.
pub fn unreadable(reason: &str) -> Vec<Check> {
    vec![
        Check::unknown(SSH_ROOT_LOGIN, reason),
        Check::unknown(SSH_PASSWORD_AUTH, reason),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::State;
    use super::*;

    fn fixture(name: &str) -> String {
        crate::platform::test_fixture("posture", name)
    }

    #[test]
    fn debian_default_config_real_capture() {
        let main = fixture("sshd_config.debian12.txt");
        let mut asked = Vec::new();
        let s = parse_config(&main, &mut |p| {
            asked.push(p.to_owned());
            Vec::new()
        });
        assert_eq!(asked, ["/etc/ssh/sshd_config.d/*.conf"]);
        assert_eq!(s.permit_root_login, None);
        let c = checks(&s, "/etc/ssh/sshd_config");
        assert_eq!(c[0].state, State::Pass, "{c:?}");
        assert!(c[0].evidence.contains("default prohibit-password"));
        assert_eq!(c[1].state, State::Fail, "passwords are on by default");
    }

    #[test]
    fn sshd_t_real_capture() {
        let s = parse_sshd_t(&fixture("sshd-T.debian12.txt"));
        assert_eq!(s.permit_root_login.as_deref(), Some("without-password"));
        assert_eq!(s.password_authentication.as_deref(), Some("yes"));
        let c = checks(&s, "sshd -T");
        assert_eq!(c[0].state, State::Pass);
        assert_eq!(c[1].state, State::Fail);
    }

    #[test]
    fn first_value_wins_includes_first_and_match_ends_the_global_part() {
        let main = "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n\
                    Match User backup\n  PasswordAuthentication no\n";
        let s = parse_config(main, &mut |_| {
            vec![(
                "50-cloud.conf".into(),
                "permitrootlogin=no\npasswordauthentication \"yes\"\n".into(),
            )]
        });
        assert_eq!(s.permit_root_login.as_deref(), Some("no"));
        assert_eq!(s.password_authentication.as_deref(), Some("yes"));
        let c = checks(&s, "f");
        assert_eq!((c[0].state, c[1].state), (State::Pass, State::Fail));
        // A value sshd does not know is unknown, never a pass.
        let c = checks(
            &Settings {
                permit_root_login: Some("maybe".into()),
                password_authentication: Some("no".into()),
            },
            "f",
        );
        assert_eq!((c[0].state, c[1].state), (State::Unknown, State::Pass));
        // A self-including file stops at the guard instead of looping.
        let s = parse_config("Include x\n", &mut |_| {
            vec![("x".into(), "Include x\n".into())]
        });
        assert_eq!(s.permit_root_login, None);
    }
}
