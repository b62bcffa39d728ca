//! Windows registry text: the pure parser of `reg query KEY [/s]` output, shared by
//! the inventory (installed programs, the Windows version), Windows Update's pending
//! reboot keys and the Windows posture checks.

/// One key of `reg query` output and its values: (name, type, data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegKey {
    pub(crate) path: String,
    pub(crate) values: Vec<(String, String, String)>,
}

impl RegKey {
    /// The data of value `name` (case-insensitive, as the registry is).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, _, d)| d.as_str())
    }

    /// A REG_DWORD value ("0x1") as a number.
    pub(crate) fn dword(&self, name: &str) -> Option<u64> {
        let d = self.get(name)?;
        u64::from_str_radix(d.trim().trim_start_matches("0x"), 16).ok()
    }
}

/// The output of `reg query KEY [/s]`: a key line (starting with `HKEY_`), then
/// its values, each indented by four spaces as `NAME    TYPE    DATA` (the
/// default value's name is `(Default)`).
pub(crate) fn parse_reg_query(text: &str) -> Vec<RegKey> {
    let mut keys: Vec<RegKey> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HKEY_") {
            keys.push(RegKey {
                path: line.trim().to_owned(),
                values: Vec::new(),
            });
            continue;
        }
        let Some(rest) = line.strip_prefix("    ") else {
            continue;
        };
        let Some(key) = keys.last_mut() else { continue };
        // Fields are separated by four spaces; a value's name may itself contain
        // single spaces, and its data anything.
        let mut parts = rest.splitn(3, "    ");
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !kind.starts_with("REG_") {
            continue;
        }
        key.values.push((
            name.to_owned(),
            kind.to_owned(),
            parts.next().unwrap_or("").to_owned(),
        ));
    }
    keys
}
