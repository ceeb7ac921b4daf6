//! Languages: Project Fluent for every string (one `.ftl` file per
//! language, compiled into the binary), ICU4X for numbers and dates.
//!
//! Fluent resolves plural categories itself (Arabic has six); ICU4X's
//! compiled CLDR data formats numbers (Arabic-Indic digits for `ar`) and
//! dates. A key missing in one language is a test failure
//! (`every_key_in_every_language`), never a silent fallback.

use std::sync::OnceLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use icu_datetime::fieldsets::YMDT;
use icu_datetime::input::{Date, DateTime, Time};
use icu_datetime::DateTimeFormatter;
use icu_decimal::input::Decimal;
use icu_decimal::DecimalFormatter;
use icu_locale_core::Locale;
use serde::{Deserialize, Serialize};

/// An interface language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Lang {
    /// Arabic (right to left).
    Ar,
    /// English.
    En,
    /// French.
    Fr,
}

impl Lang {
    /// Every language, in the order of the language switch.
    pub const ALL: [Lang; 3] = [Lang::Ar, Lang::En, Lang::Fr];

    /// The BCP 47 tag (`lang` attribute, CLI).
    pub fn tag(self) -> &'static str {
        match self {
            Lang::Ar => "ar",
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// Parses [`Lang::tag`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.tag() == s)
    }

    /// The `dir` attribute of a page in this language.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Ar => "rtl",
            Lang::En | Lang::Fr => "ltr",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Lang::Ar => include_str!("../locales/ar.ftl"),
            Lang::En => include_str!("../locales/en.ftl"),
            Lang::Fr => include_str!("../locales/fr.ftl"),
        }
    }

    fn bundle(self) -> &'static FluentBundle<FluentResource> {
        static BUNDLES: OnceLock<[FluentBundle<FluentResource>; 3]> = OnceLock::new();
        let all = BUNDLES.get_or_init(|| Lang::ALL.map(build));
        &all[self as usize]
    }
}

fn build(lang: Lang) -> FluentBundle<FluentResource> {
    let id: unic_langid::LanguageIdentifier = lang.tag().parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // The .ftl files are part of the binary and checked by the tests; a
    // syntax error there keeps the entries that parsed.
    let res = FluentResource::try_new(lang.source().to_owned()).unwrap_or_else(|(r, _)| r);
    let _ = bundle.add_resource(res);
    bundle
}

/// The text of `key` in `lang`. A missing key yields the key itself (and
/// the tests fail).
pub fn t(lang: Lang, key: &str) -> String {
    t_args(lang, key, &[])
}

/// The text of `key` in `lang` with arguments (numbers select plurals).
pub fn t_args(lang: Lang, key: &str, args: &[(&str, Arg<'_>)]) -> String {
    let bundle = lang.bundle();
    let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
        tracing::error!(key, lang = lang.tag(), "console text missing");
        return key.to_owned();
    };
    let mut fa = FluentArgs::new();
    for (name, value) in args {
        match value {
            Arg::Str(s) => fa.set(*name, FluentValue::from(*s)),
            Arg::Num(n) => fa.set(*name, FluentValue::from(*n)),
        }
    }
    let mut errors = Vec::new();
    bundle
        .format_pattern(pattern, Some(&fa), &mut errors)
        .into_owned()
}

/// An argument of [`t_args`].
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// Text, inserted as is (isolated for bidirectional text).
    Str(&'a str),
    /// A count: selects the plural form.
    Num(u64),
}

/// Locale formatting of numbers and dates for one language (ICU4X,
/// compiled CLDR data).
#[derive(Debug)]
pub struct Formats {
    lang: Lang,
    decimal: Option<DecimalFormatter>,
    datetime: Option<DateTimeFormatter<YMDT>>,
}

impl Formats {
    /// The formatters of `lang`. Arabic is formatted as used in Iraq
    /// (`ar-IQ`: Arabic-Indic digits); CLDR's plain `ar` now has Latin ones.
    pub fn new(lang: Lang) -> Self {
        let tag = match lang {
            Lang::Ar => "ar-IQ",
            other => other.tag(),
        };
        let locale = Locale::try_from_str(tag).ok();
        let decimal = locale
            .as_ref()
            .and_then(|l| DecimalFormatter::try_new(l.into(), Default::default()).ok());
        let datetime = locale
            .as_ref()
            .and_then(|l| DateTimeFormatter::try_new(l.into(), YMDT::medium()).ok());
        Self {
            lang,
            decimal,
            datetime,
        }
    }

    /// The language these formats are for.
    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// `n` with the locale's digits and grouping.
    pub fn number(&self, n: u64) -> String {
        match &self.decimal {
            Some(f) => f.format(&Decimal::from(n)).to_string(),
            None => n.to_string(),
        }
    }

    /// A Unix time in milliseconds as a UTC date and time in the locale's form.
    pub fn utc_ms(&self, ms: u64) -> String {
        let secs = ms / 1000;
        let (y, m, d) = civil_from_days((secs / 86_400) as i64);
        let rem = secs % 86_400;
        let (hh, mm, ss) = (
            (rem / 3600) as u8,
            ((rem / 60) % 60) as u8,
            (rem % 60) as u8,
        );
        let dt = Date::try_new_iso(y as i32, m, d)
            .ok()
            .zip(Time::try_new(hh, mm, ss, 0).ok());
        match (&self.datetime, dt) {
            (Some(f), Some((date, time))) => f.format(&DateTime { date, time }).to_string(),
            _ => format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}"),
        }
    }
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u8, u8) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeSet;

    use super::*;

    fn ids(lang: Lang) -> BTreeSet<String> {
        let res = FluentResource::try_new(lang.source().to_owned())
            .unwrap_or_else(|(_, e)| panic!("{}.ftl does not parse: {e:?}", lang.tag()));
        res.entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name.to_owned()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_key_in_every_language() {
        let en = ids(Lang::En);
        for key in crate::KEYS {
            assert!(
                en.contains(*key),
                "key {key} used by the code is not in en.ftl"
            );
        }
        for lang in Lang::ALL {
            let have = ids(lang);
            let missing: Vec<_> = en.difference(&have).collect();
            let extra: Vec<_> = have.difference(&en).collect();
            assert!(missing.is_empty(), "{}.ftl lacks {missing:?}", lang.tag());
            assert!(
                extra.is_empty(),
                "{}.ftl has keys en.ftl lacks: {extra:?}",
                lang.tag()
            );
            for key in &en {
                assert_ne!(t(lang, key), *key, "{} {key} does not format", lang.tag());
            }
        }
    }

    #[test]
    fn arabic_plurals_and_locale_numbers_and_dates() {
        let n = |lang, c| t_args(lang, "dash-pending", &[("count", Arg::Num(c))]);
        // Arabic: distinct forms for 1, 2, 3..10 and 11..99.
        let forms: BTreeSet<String> = [1, 2, 3, 11].map(|c| n(Lang::Ar, c)).into();
        assert_eq!(forms.len(), 4, "{forms:?}");
        assert_ne!(n(Lang::En, 1), n(Lang::En, 2));
        // 1234567 in each locale's digits and grouping.
        assert_eq!(Formats::new(Lang::En).number(1_234_567), "1,234,567");
        assert_eq!(
            Formats::new(Lang::Fr).number(1_234_567),
            "1\u{202f}234\u{202f}567"
        );
        assert_eq!(Formats::new(Lang::Ar).number(1_234_567), "١٬٢٣٤٬٥٦٧");
        // 2026-12-03T18:30:05Z.
        let ms = 1_796_322_605_000;
        let en = Formats::new(Lang::En).utc_ms(ms);
        assert!(en.contains("Dec 3, 2026"), "{en}");
        let fr = Formats::new(Lang::Fr).utc_ms(ms);
        assert!(fr.contains("3 déc. 2026"), "{fr}");
        let ar = Formats::new(Lang::Ar).utc_ms(ms);
        assert!(ar.contains("٢٠٢٦"), "{ar}");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
    }
}
