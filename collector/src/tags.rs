//! The syntax of a device tag (`device tag`, rule and silence scopes): a leaf both
//! the store (which saves tags) and `alerts` (which matches them) use.

/// Why a device tag's text is refused; the message names the tag and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("tag {tag:?} must be 1 to 63 characters")]
    Length { tag: String },
    #[error("tag {tag:?} contains {found:?}{hint}; use lowercase letters, digits and - _ . : =", hint = case_hint(*.found))]
    BadChar { tag: String, found: char },
    #[error("tag {tag:?} must start with a letter or digit")]
    BadStart { tag: String },
}

/// Checks a device tag's text: 1-63 characters of lowercase ASCII letters, digits
/// and `- _ . : =`, starting with a letter or digit (e.g. `server`, `env:prod`).
/// The error says what is wrong with it.
pub(crate) fn check_tag(tag: &str) -> Result<(), TagError> {
    if tag.is_empty() || tag.len() > 63 {
        return Err(TagError::Length { tag: tag.into() });
    }
    if let Some(found) = tag.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | ':' | '='))
    }) {
        return Err(TagError::BadChar {
            tag: tag.into(),
            found,
        });
    }
    if !tag.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(TagError::BadStart { tag: tag.into() });
    }
    Ok(())
}

/// The hint `BadChar` adds when the refused character is an uppercase letter.
fn case_hint(c: char) -> &'static str {
    if c.is_ascii_uppercase() {
        " (tags are lowercase)"
    } else {
        ""
    }
}
