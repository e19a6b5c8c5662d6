//! Time: instants, time zones, calendar dates and strftime templates.
//!
//! One library does it all: chrono, with the IANA database compiled in by
//! chrono-tz. imap-codec (INTERNALDATE) and calcard (iCalendar) link chrono
//! anyway, so a second time library would only add weight. This module names
//! the types the crate uses and holds the few operations chrono spells
//! differently; it depends on nothing else of the crate.
//!
//! Instants are UTC and print as RFC 3339 (`2026-11-26T14:05:00Z`, with the
//! fraction when there is one), which is how the index, the manifests and
//! the API hold them.

use chrono::format::{Item, StrftimeItems};
use chrono::{LocalResult, NaiveTime, TimeZone as _};

pub use chrono::{Datelike, NaiveDate as Date, TimeDelta, Timelike};

/// An instant, in UTC.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// An IANA time zone (`Europe/Paris`).
pub type TimeZone = chrono_tz::Tz;

/// An instant seen in a time zone.
pub type Zoned = chrono::DateTime<TimeZone>;

/// UTC, as a [`TimeZone`].
pub const UTC: TimeZone = chrono_tz::UTC;

/// Now.
pub fn now() -> Timestamp {
    chrono::Utc::now()
}

/// The instant `seconds` after 1970-01-01T00:00:00Z; `None` out of range.
pub fn from_second(seconds: i64) -> Option<Timestamp> {
    Timestamp::from_timestamp(seconds, 0)
}

/// The zone named `name` (`Europe/Paris`, `UTC`).
pub fn zone(name: &str) -> Option<TimeZone> {
    name.parse().ok()
}

/// The host's zone: the name `/etc/localtime` (or `$TZ`) gives, or UTC when
/// the host names none chrono-tz knows.
pub fn system_zone() -> TimeZone {
    std::env::var("TZ")
        .ok()
        .and_then(|tz| zone(tz.trim_start_matches(':')))
        .or_else(|| iana_time_zone::get_timezone().ok().and_then(|n| zone(&n)))
        .unwrap_or(UTC)
}

/// The first instant of `day` in `tz`: its midnight, or the end of the gap
/// when the clocks skip midnight that day.
pub fn start_of_day(day: Date, tz: &TimeZone) -> Timestamp {
    let mut local = day.and_time(NaiveTime::MIN);
    // A gap is at most a few hours; step through it by minutes.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.to_utc(),
            LocalResult::None => local += TimeDelta::minutes(1),
        }
    }
    day.and_time(NaiveTime::MIN).and_utc()
}

/// RFC 3339 in UTC, the fraction only when there is one
/// (`2026-11-26T14:05:00Z`, `2026-11-26T14:05:00.25Z`).
pub fn rfc3339(t: &Timestamp) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A strftime template checked once, so that formatting it cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(String);

impl Template {
    /// `template` if every `%` specifier in it is one chrono knows.
    pub fn parse(template: &str) -> Result<Template, String> {
        if StrftimeItems::new(template).any(|item| matches!(item, Item::Error)) {
            return Err(format!("{template:?} is not a valid strftime template"));
        }
        Ok(Template(template.to_string()))
    }

    /// `t` formatted by the template.
    pub fn format(&self, t: &Zoned) -> String {
        t.format_with_items(StrftimeItems::new(&self.0)).to_string()
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `2026-11-26T14:05:00[Europe/Paris]` (local time, then the zone) as a
/// [`Zoned`], for tests.
#[cfg(test)]
pub(crate) fn zoned(s: &str) -> Zoned {
    let (local, zone_name) = s
        .strip_suffix(']')
        .and_then(|s| s.split_once('['))
        .expect("local time[zone]");
    let local =
        chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S").expect("a local time");
    zone(zone_name)
        .expect("a zone")
        .from_local_datetime(&local)
        .single()
        .expect("a local time that exists once")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_rfc3339_in_utc() {
        let t = from_second(1_795_701_900).unwrap();
        assert_eq!(rfc3339(&t), "2026-11-26T14:05:00Z");
        let t = t + TimeDelta::milliseconds(250);
        assert_eq!(rfc3339(&t), "2026-11-26T14:05:00.250Z");
        assert_eq!("2026-11-26T14:05:00.250Z".parse::<Timestamp>().unwrap(), t);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#""2026-11-26T14:05:00.250Z""#
        );
    }

    #[test]
    fn days_start_at_local_midnight_or_after_a_gap() {
        let paris = zone("Europe/Paris").unwrap();
        let day = Date::from_ymd_opt(2026, 3, 29).unwrap();
        assert_eq!(rfc3339(&start_of_day(day, &paris)), "2026-03-28T23:00:00Z");
        // Santiago skipped 2022-09-11 00:00 → 01:00.
        let santiago = zone("America/Santiago").unwrap();
        let day = Date::from_ymd_opt(2022, 9, 11).unwrap();
        assert_eq!(
            rfc3339(&start_of_day(day, &santiago)),
            "2022-09-11T04:00:00Z"
        );
    }

    #[test]
    fn templates_are_checked_once() {
        let t = Template::parse("INBOX_%Y_%m_%d_%H%M").unwrap();
        let at = from_second(1_795_701_900)
            .unwrap()
            .with_timezone(&zone("Europe/Paris").unwrap());
        assert_eq!(t.format(&at), "INBOX_2026_11_26_1505");
        assert!(Template::parse("INBOX_%Q").is_err());
        assert!(Template::parse("100%").is_err());
    }

    #[test]
    fn zones_by_name() {
        assert_eq!(zone("UTC"), Some(UTC));
        assert!(zone("Mars/Olympus").is_none());
        let _ = system_zone();
    }
}
