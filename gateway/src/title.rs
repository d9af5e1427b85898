//! Video titles, wherever they come from: 1 to 200 characters once trimmed, as the schema allows,
//! on one line of plain text.

use crate::plain_text::{check_plain_text, ForbiddenCharacter, Lines};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
const DEFAULT_TITLE: &str = "Untitled";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error("title must not be empty")]
    Empty,
    #[error("title must be at most {MAX_TITLE_CHARS} characters")]
    TooLong,
    #[error("title {0}")]
    Forbidden(ForbiddenCharacter),
}

/// The title trimmed of surrounding blanks, if it is acceptable. Its length counts as sent,
/// blanks included, as the OpenAPI document's `maxLength` does.
pub fn normalize_title(title: &str) -> Result<String, TitleError> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(TitleError::TooLong);
    }
    let title = title.trim();
    if title.is_empty() {
        return Err(TitleError::Empty);
    }
    check_plain_text(title, Lines::Single).map_err(TitleError::Forbidden)?;
    Ok(title.to_owned())
}

/// The title of an upload that names none: its file name, cut to fit, else "Untitled".
pub fn default_title(filename: Option<&str>) -> String {
    match filename.map(str::trim) {
        Some(name) if !name.is_empty() => name.chars().take(MAX_TITLE_CHARS).collect(),
        _ => DEFAULT_TITLE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_bounded_in_characters() {
        assert_eq!(normalize_title("  Film  "), Ok("Film".to_owned()));
        assert_eq!(normalize_title(" \t "), Err(TitleError::Empty));
        assert!(normalize_title(&"é".repeat(200)).is_ok());
        assert_eq!(normalize_title(&"é".repeat(201)), Err(TitleError::TooLong));
        let padded = format!(" {} ", "é".repeat(199));
        assert_eq!(normalize_title(&padded), Err(TitleError::TooLong));
    }

    #[test]
    fn titles_are_one_line_of_plain_text() {
        assert_eq!(normalize_title(" Film \n"), Ok("Film".to_owned()));
        for bad in ["a\u{0}b", "two\nlines", "evil\u{202E}4pm.exe"] {
            let refused = normalize_title(bad).expect_err(bad);
            assert!(matches!(refused, TitleError::Forbidden(_)), "{bad:?}");
            assert!(
                refused.to_string().starts_with("title must not contain"),
                "{refused}"
            );
        }
    }

    #[test]
    fn default_title_falls_back_to_untitled() {
        assert_eq!(default_title(Some("a.mp4")), "a.mp4");
        assert_eq!(default_title(Some("  ")), "Untitled");
        assert_eq!(default_title(None), "Untitled");
        assert_eq!(default_title(Some(&"x".repeat(300))).len(), MAX_TITLE_CHARS);
    }
}
