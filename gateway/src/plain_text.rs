//! Text a client names things with (titles, descriptions, file names) is shown to other people
//! and written to PostgreSQL, so it holds no control characters (PostgreSQL refuses NUL; a
//! terminal or a log obeys the others) and no bidirectional embeddings, overrides or isolates
//! (`U+202A`–`U+202E`, `U+2066`–`U+2069`), which make `exe.mp4` of `4pm.exe`.

/// Which line breaks a text may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lines {
    /// One line, no control character at all: titles and file names.
    Single,
    /// Lines and tabs (`\n`, `\r`, `\t`) and no other control character: descriptions.
    Multi,
}

/// The first character a text may not hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("must not contain {kind} (U+{:04X} at character {position})", u32::from(*character))]
pub struct ForbiddenCharacter {
    pub character: char,
    /// 1-based, in characters.
    pub position: usize,
    kind: &'static str,
}

/// Refuses the first control or bidirectional-formatting character `text` may not hold.
pub fn check_plain_text(text: &str, lines: Lines) -> Result<(), ForbiddenCharacter> {
    for (index, character) in text.chars().enumerate() {
        let kind = if is_bidi_control(character) {
            "a bidirectional formatting character"
        } else if character.is_control() && !allowed_control(character, lines) {
            "a control character"
        } else {
            continue;
        };
        return Err(ForbiddenCharacter {
            character,
            position: index + 1,
            kind,
        });
    }
    Ok(())
}

fn allowed_control(character: char, lines: Lines) -> bool {
    lines == Lines::Multi && matches!(character, '\n' | '\r' | '\t')
}

/// Embeddings and overrides (`U+202A`–`U+202E`) and isolates (`U+2066`–`U+2069`).
fn is_bidi_control(character: char) -> bool {
    matches!(character, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_in_any_script_is_accepted() {
        for text in [
            "Holiday 2024",
            "Ünïcode — ok",
            "שלום עולם",
            "日本語のタイトル",
            "",
        ] {
            assert_eq!(check_plain_text(text, Lines::Single), Ok(()), "{text}");
        }
    }

    #[test]
    fn control_characters_are_refused_with_their_position() {
        for (text, character, position) in [
            ("a\u{0}b", '\u{0}', 2),
            ("bell\u{7}", '\u{7}', 5),
            ("\u{1b}[31mred", '\u{1b}', 1),
            ("del\u{7f}", '\u{7f}', 4),
            ("c1\u{85}", '\u{85}', 3),
            ("two\nlines", '\n', 4),
            ("tab\there", '\t', 4),
        ] {
            let refused = check_plain_text(text, Lines::Single).expect_err(text);
            assert_eq!((refused.character, refused.position), (character, position));
            assert!(
                refused.to_string().contains("a control character"),
                "{refused}"
            );
        }
    }

    #[test]
    fn several_lines_may_hold_breaks_and_tabs_and_nothing_else() {
        assert_eq!(
            check_plain_text("one\r\n\ttwo\nthree", Lines::Multi),
            Ok(())
        );
        for text in ["a\u{0}b", "b\u{8}", "\u{1b}[2J"] {
            assert!(check_plain_text(text, Lines::Multi).is_err(), "{text:?}");
        }
    }

    #[test]
    fn bidirectional_overrides_and_isolates_are_refused() {
        for character in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            let text = format!("evil{character}4pm.exe");
            for lines in [Lines::Single, Lines::Multi] {
                let refused = check_plain_text(&text, lines).expect_err(&text);
                assert_eq!(refused.character, character);
                assert_eq!(
                    refused.to_string(),
                    format!(
                        "must not contain a bidirectional formatting character (U+{:04X} at character 5)",
                        u32::from(character)
                    )
                );
            }
        }
    }
}
