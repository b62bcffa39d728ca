//! The syntax of a device tag (`device tag`, rule and silence scopes): a leaf both
//! the store (which saves tags) and `alerts` (which matches them) use.

/// Checks a device tag's text: 1-63 characters of lowercase ASCII letters, digits
/// and `- _ . : =`, starting with a letter or digit (e.g. `server`, `env:prod`).
/// The error says what is wrong with it.
pub fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() || tag.len() > 63 {
        return Err(format!("tag {tag:?} must be 1 to 63 characters"));
    }
    if let Some(c) = tag.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':' | '='))
    }) {
        let hint = if c.is_ascii_uppercase() {
            " (tags are lowercase)"
        } else {
            ""
        };
        return Err(format!(
            "tag {tag:?} contains {c:?}{hint}; use lowercase letters, digits and - _ . : ="
        ));
    }
    if !tag.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("tag {tag:?} must start with a letter or digit"));
    }
    Ok(())
}
