//! A language as players want it: the BCP 47 tag of a container's language tag (Matroska and
//! MP4 carry ISO 639-2 codes such as `eng`, `fre` or `fra`) and a name to show.

/// ISO 639-2 (bibliographic and terminology codes) → ISO 639-1 and the English name, for the
/// languages that have a two-letter code and are common in video.
const LANGUAGES: [(&str, &str, &str, &str); 40] = [
    ("ara", "ara", "ar", "Arabic"),
    ("bul", "bul", "bg", "Bulgarian"),
    ("cat", "cat", "ca", "Catalan"),
    ("chi", "zho", "zh", "Chinese"),
    ("cze", "ces", "cs", "Czech"),
    ("dan", "dan", "da", "Danish"),
    ("dut", "nld", "nl", "Dutch"),
    ("eng", "eng", "en", "English"),
    ("est", "est", "et", "Estonian"),
    ("fin", "fin", "fi", "Finnish"),
    ("fre", "fra", "fr", "French"),
    ("ger", "deu", "de", "German"),
    ("gre", "ell", "el", "Greek"),
    ("heb", "heb", "he", "Hebrew"),
    ("hin", "hin", "hi", "Hindi"),
    ("hrv", "hrv", "hr", "Croatian"),
    ("hun", "hun", "hu", "Hungarian"),
    ("ind", "ind", "id", "Indonesian"),
    ("ita", "ita", "it", "Italian"),
    ("jpn", "jpn", "ja", "Japanese"),
    ("kor", "kor", "ko", "Korean"),
    ("lav", "lav", "lv", "Latvian"),
    ("lit", "lit", "lt", "Lithuanian"),
    ("may", "msa", "ms", "Malay"),
    ("nor", "nor", "no", "Norwegian"),
    ("per", "fas", "fa", "Persian"),
    ("pol", "pol", "pl", "Polish"),
    ("por", "por", "pt", "Portuguese"),
    ("rum", "ron", "ro", "Romanian"),
    ("rus", "rus", "ru", "Russian"),
    ("slo", "slk", "sk", "Slovak"),
    ("slv", "slv", "sl", "Slovenian"),
    ("spa", "spa", "es", "Spanish"),
    ("srp", "srp", "sr", "Serbian"),
    ("swe", "swe", "sv", "Swedish"),
    ("tha", "tha", "th", "Thai"),
    ("tur", "tur", "tr", "Turkish"),
    ("ukr", "ukr", "uk", "Ukrainian"),
    ("vie", "vie", "vi", "Vietnamese"),
    ("wel", "cym", "cy", "Welsh"),
];

/// The BCP 47 tag of a container's language tag: a two-letter code where ISO 639-1 has one, a
/// tag that already is BCP 47 (`en`, `pt-BR`) as it is, any other three-letter code as it is,
/// and `und` when there is none or it is not a language code.
pub fn bcp47(tag: Option<&str>) -> String {
    let Some(tag) = tag.map(str::trim).filter(|tag| !tag.is_empty()) else {
        return "und".to_owned();
    };
    let lower = tag.to_ascii_lowercase();
    if let Some((_, _, code, _)) = LANGUAGES
        .iter()
        .find(|(bibliographic, terminology, ..)| lower == *bibliographic || lower == *terminology)
    {
        return (*code).to_owned();
    }
    let well_formed = tag.split('-').enumerate().all(|(index, part)| {
        let length_ok = if index == 0 {
            (2..=3).contains(&part.len())
        } else {
            (2..=8).contains(&part.len())
        };
        length_ok && part.chars().all(|c| c.is_ascii_alphanumeric())
    }) && tag
        .chars()
        .take_while(|c| *c != '-')
        .all(|c| c.is_ascii_alphabetic());
    if well_formed {
        tag.to_owned()
    } else {
        "und".to_owned()
    }
}

/// The English name of a BCP 47 tag's language, when known.
pub fn name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next().unwrap_or(tag).to_ascii_lowercase();
    LANGUAGES
        .iter()
        .find(|(_, _, code, _)| primary == *code)
        .map(|(.., name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_codes_become_bcp47() {
        assert_eq!(bcp47(Some("eng")), "en");
        assert_eq!(bcp47(Some("fre")), "fr");
        assert_eq!(bcp47(Some("fra")), "fr");
        assert_eq!(bcp47(Some("GER")), "de");
        assert_eq!(bcp47(Some("pt-BR")), "pt-BR");
        assert_eq!(bcp47(Some("fil")), "fil");
        assert_eq!(bcp47(None), "und");
        assert_eq!(bcp47(Some("")), "und");
        assert_eq!(bcp47(Some("und")), "und");
        assert_eq!(bcp47(Some("not a \"language\"")), "und");
        assert_eq!(bcp47(Some("e1")), "und");
        assert_eq!(name("fr"), Some("French"));
        assert_eq!(name("pt-BR"), Some("Portuguese"));
        assert_eq!(name("und"), None);
    }
}
