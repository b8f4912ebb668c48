//! The languages the pages speak: which one a visitor gets (`?lang=` first, then
//! `Accept-Language`, then English), and numbers and waits written the way that language writes
//! them. The waiting page's script writes the same with the browser's `Intl` and the sentences
//! the page hands it (see [`text::ScriptText`]).

mod check;
mod text;

use std::sync::OnceLock;

use fluent_langneg::{negotiate_languages, LanguageIdentifier, NegotiationStrategy};

pub use check::CheckText;
pub use text::{ScriptText, Text};

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    #[default]
    En,
    Ko,
    Ja,
    ZhHans,
    ZhHant,
    Es,
    Fr,
    De,
    PtBr,
}

/// The sentences of each language, in the order of [`Lang`]'s variants.
const TEXTS: [&Text; 9] = [
    &text::EN,
    &text::KO,
    &text::JA,
    &text::ZH_HANS,
    &text::ZH_HANT,
    &text::ES,
    &text::FR,
    &text::DE,
    &text::PT_BR,
];
const CHECK_TEXTS: [&CheckText; 9] = [
    &check::EN,
    &check::KO,
    &check::JA,
    &check::ZH_HANS,
    &check::ZH_HANT,
    &check::ES,
    &check::FR,
    &check::DE,
    &check::PT_BR,
];

/// How much of an `Accept-Language` header is read: a browser sends a few dozen bytes; a
/// stranger's megabyte-long list costs no more than this.
const MAX_ACCEPT_LANGUAGE: usize = 512;
/// How many of its languages are weighed.
const MAX_REQUESTED: usize = 16;

impl Lang {
    pub const ALL: [Lang; 9] = [
        Lang::En,
        Lang::Ko,
        Lang::Ja,
        Lang::ZhHans,
        Lang::ZhHant,
        Lang::Es,
        Lang::Fr,
        Lang::De,
        Lang::PtBr,
    ];

    /// The BCP 47 tag: the page's `lang`, `Content-Language` and the value `?lang=` takes.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
            Lang::Ja => "ja",
            Lang::ZhHans => "zh-Hans",
            Lang::ZhHant => "zh-Hant",
            Lang::Es => "es",
            Lang::Fr => "fr",
            Lang::De => "de",
            Lang::PtBr => "pt-BR",
        }
    }

    /// The language's own name, for the page's language links.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ko => "한국어",
            Lang::Ja => "日本語",
            Lang::ZhHans => "简体中文",
            Lang::ZhHant => "繁體中文",
            Lang::Es => "Español",
            Lang::Fr => "Français",
            Lang::De => "Deutsch",
            Lang::PtBr => "Português (Brasil)",
        }
    }

    /// The writing direction (`dir`): every language here is written left to right; the page
    /// takes it from here so that a right-to-left one needs no change to the pages.
    pub fn dir(self) -> &'static str {
        "ltr"
    }

    /// What the pages say in this language.
    pub fn text(self) -> &'static Text {
        TEXTS[self as usize]
    }

    /// What the check pages (proof of work, siteverify widget) say in this language.
    pub fn check_text(self) -> &'static CheckText {
        CHECK_TEXTS[self as usize]
    }

    /// [`Text::script`] as JSON, for the waiting page's script: serialized once per language,
    /// not on every page a visitor loads.
    pub fn script_json(self) -> &'static str {
        static JSON: OnceLock<Vec<String>> = OnceLock::new();
        &JSON.get_or_init(|| Lang::ALL.map(|l| to_json(&l.text().script)).to_vec())[self as usize]
    }

    /// [`Lang::check_text`] as JSON, for the check pages' scripts, serialized once per language.
    pub fn check_json(self) -> &'static str {
        static JSON: OnceLock<Vec<String>> = OnceLock::new();
        &JSON.get_or_init(|| Lang::ALL.map(|l| to_json(l.check_text())).to_vec())[self as usize]
    }

    /// The language for a request: the one `?lang=` names if the pages speak it (or a close one:
    /// `pt` is `pt-BR`, `zh-TW` is `zh-Hant`), else the first of `Accept-Language` by weight
    /// that they speak, else English.
    pub fn negotiate(query_lang: Option<&str>, accept_language: Option<&str>) -> Lang {
        query_lang
            .and_then(|tag| best(&[tag.parse().ok()?]))
            .or_else(|| best(&accepted(accept_language?)))
            .unwrap_or_default()
    }

    /// `n` with the language's digit grouping (`12,345`, `12.345`, `12 345`), as the browser's
    /// `Intl.NumberFormat` writes it, so that the page reads the same before and after its
    /// script updates it.
    pub fn format_number(self, n: u64) -> String {
        let (separator, min_digits) = match self {
            Lang::En | Lang::Ko | Lang::Ja | Lang::ZhHans | Lang::ZhHant => (",", 4),
            Lang::De | Lang::PtBr => (".", 4),
            // Spanish leaves four digits ungrouped (CLDR's minimumGroupingDigits 2).
            Lang::Es => (".", 5),
            Lang::Fr => ("\u{202f}", 4),
        };
        let digits = n.to_string();
        if digits.len() < min_digits {
            return digits;
        }
        let mut out = String::with_capacity(digits.len() + digits.len() / 3 * 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push_str(separator);
            }
            out.push(c);
        }
        out
    }

    /// A wait in words, as the page's script writes it.
    pub fn format_wait(self, eta_seconds: Option<u64>) -> String {
        let t = &self.text().script;
        match eta_seconds {
            None => t.wait_unknown.to_owned(),
            Some(s) if s < 60 => t.wait_under_minute.to_owned(),
            Some(s) => {
                let minutes = (s + 30) / 60;
                match minutes {
                    1 => t.wait_one_minute.to_owned(),
                    2..=59 => t.wait_minutes.replace("{n}", &minutes.to_string()),
                    _ => t
                        .wait_hours
                        .replace("{h}", &self.format_number(minutes / 60))
                        .replace("{m}", &(minutes % 60).to_string()),
                }
            }
        }
    }
}

/// Sentences as JSON (a struct of strings always serializes).
fn to_json(sentences: &impl serde::Serialize) -> String {
    serde_json::to_string(sentences).unwrap_or_else(|_| "{}".into())
}

/// The languages an `Accept-Language` header asks for, heaviest first (ties in the header's
/// order), without those it refuses (`q=0`).
fn accepted(header: &str) -> Vec<LanguageIdentifier> {
    let header = match header.char_indices().nth(MAX_ACCEPT_LANGUAGE) {
        Some((cut, _)) => &header[..cut],
        None => header,
    };
    let mut weighed: Vec<(u16, LanguageIdentifier)> = header
        .split(',')
        .take(MAX_REQUESTED)
        .filter_map(|item| {
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1000), quality)?;
            if q == 0 || tag == "*" {
                return None;
            }
            Some((q, tag.parse().ok()?))
        })
        .collect();
    weighed.sort_by_key(|(q, _)| std::cmp::Reverse(*q));
    weighed.into_iter().map(|(_, tag)| tag).collect()
}

/// A `q` value in thousandths; `None` for one that is not a number from 0 to 1.
fn quality(q: &str) -> Option<u16> {
    let q: f32 = q.trim().parse().ok()?;
    (0.0..=1.0)
        .contains(&q)
        .then(|| (q * 1000.0).round() as u16)
}

/// The first of `requested` the pages speak, or a close match of it.
fn best(requested: &[LanguageIdentifier]) -> Option<Lang> {
    static AVAILABLE: OnceLock<Vec<LanguageIdentifier>> = OnceLock::new();
    let available = AVAILABLE.get_or_init(|| {
        Lang::ALL
            .iter()
            .map(|lang| lang.tag().parse().expect("a valid tag"))
            .collect()
    });
    // One requested language at a time: the heaviest the pages can speak wins, not the
    // first of the pages' languages that any requested one matches.
    requested.iter().find_map(|wanted| {
        let found = negotiate_languages(
            std::slice::from_ref(wanted),
            available,
            None,
            NegotiationStrategy::Lookup,
        );
        let found = found.first()?;
        let i = available.iter().position(|a| a == *found)?;
        Some(Lang::ALL[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heaviest_language_the_pages_speak_wins() {
        let pick = |header| Lang::negotiate(None, Some(header));
        assert_eq!(pick("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7"), Lang::Ko);
        assert_eq!(pick("fr;q=0.5, de;q=0.9"), Lang::De);
        assert_eq!(pick("nl, sv;q=0.9, ja;q=0.3"), Lang::Ja);
        assert_eq!(pick("es-MX"), Lang::Es);
        assert_eq!(pick("de-AT"), Lang::De);
        assert_eq!(pick("pt"), Lang::PtBr);
        assert_eq!(pick("pt-PT"), Lang::PtBr);
        assert_eq!(pick("zh-CN"), Lang::ZhHans);
        assert_eq!(pick("zh"), Lang::ZhHans);
        assert_eq!(pick("zh-TW"), Lang::ZhHant);
        assert_eq!(pick("zh-HK"), Lang::ZhHant);
        assert_eq!(pick("zh-Hant"), Lang::ZhHant);
        assert_eq!(pick("ko;q=0, fr"), Lang::Fr);
    }

    #[test]
    fn anything_else_is_english() {
        let pick = |header| Lang::negotiate(None, Some(header));
        for header in [
            "", "*", "nl-NL", "xx-!!", ";;;,,,", "ko;q=2", "ko;q=abc", "fr;q=0",
        ] {
            assert_eq!(pick(header), Lang::En, "{header:?}");
        }
        assert_eq!(Lang::negotiate(None, None), Lang::En);
        // A language past the bound is not read.
        let long = format!("{}ko", "nl,".repeat(200));
        assert_eq!(pick(&long), Lang::En);
    }

    #[test]
    fn the_query_overrides_the_header_when_the_pages_speak_it() {
        assert_eq!(Lang::negotiate(Some("ja"), Some("de")), Lang::Ja);
        assert_eq!(Lang::negotiate(Some("zh-TW"), None), Lang::ZhHant);
        assert_eq!(Lang::negotiate(Some("pt-BR"), Some("de")), Lang::PtBr);
        assert_eq!(Lang::negotiate(Some("klingon!"), Some("de")), Lang::De);
        assert_eq!(Lang::negotiate(Some("nl"), None), Lang::En);
    }

    #[test]
    fn each_language_has_its_own_sentences() {
        for (i, lang) in Lang::ALL.into_iter().enumerate() {
            assert_eq!(lang as usize, i, "Lang::ALL is in the variants' order");
        }
        assert_eq!(Lang::Ko.text().eta_label, "예상 대기 시간");
        assert_eq!(Lang::PtBr.check_text().starting, "Começando…");
        let titles: std::collections::BTreeSet<_> =
            Lang::ALL.iter().map(|l| l.text().waiting_title).collect();
        assert_eq!(titles.len(), Lang::ALL.len());
    }

    #[test]
    fn every_tag_negotiates_to_its_own_language() {
        for lang in Lang::ALL {
            assert_eq!(Lang::negotiate(Some(lang.tag()), None), lang);
            assert_eq!(Lang::negotiate(None, Some(lang.tag())), lang);
        }
    }

    #[test]
    fn numbers_are_grouped_as_the_language_groups_them() {
        assert_eq!(Lang::En.format_number(999), "999");
        assert_eq!(Lang::En.format_number(1234), "1,234");
        assert_eq!(Lang::Ko.format_number(1_234_567), "1,234,567");
        assert_eq!(Lang::De.format_number(12_345), "12.345");
        assert_eq!(Lang::PtBr.format_number(1234), "1.234");
        assert_eq!(Lang::Es.format_number(1234), "1234");
        assert_eq!(Lang::Es.format_number(12_345), "12.345");
        assert_eq!(Lang::Fr.format_number(1234), "1\u{202f}234");
    }

    #[test]
    fn waits_in_words_in_each_language() {
        assert_eq!(Lang::En.format_wait(Some(0)), "under a minute");
        assert_eq!(Lang::En.format_wait(Some(89)), "about 1 minute");
        assert_eq!(Lang::En.format_wait(Some(125)), "about 2 minutes");
        assert_eq!(Lang::En.format_wait(Some(3600)), "about 1 h 0 min");
        assert_eq!(Lang::En.format_wait(None), "unknown");
        assert_eq!(Lang::Ko.format_wait(Some(125)), "약 2분");
        assert_eq!(Lang::Ja.format_wait(Some(3900)), "約1時間5分");
        assert_eq!(Lang::De.format_wait(Some(600)), "etwa 10 Minuten");
        assert_eq!(Lang::Fr.format_wait(Some(30)), "moins d’une minute");
        for lang in Lang::ALL {
            for eta in [None, Some(1), Some(90), Some(900), Some(7200)] {
                assert!(!lang.format_wait(eta).contains('{'), "{lang:?} {eta:?}");
            }
        }
    }
}
