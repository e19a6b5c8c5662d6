//! Choosing restore points for the panel's date picker (pure).

use crate::time::Date;
use crate::time::TimeZone;

use crate::manifest::Generation;

/// The points taken on `day` (a calendar day in `tz`); when that day has
/// none, the nearest point before it and the nearest after it. `gens` is
/// oldest first and so is the answer.
pub fn on_day(gens: Vec<Generation>, day: Date, tz: &TimeZone) -> Result<Vec<Generation>, String> {
    let next = day
        .succ_opt()
        .ok_or_else(|| format!("{day} is the last date there is"))?;
    let start = crate::time::start_of_day(day, tz);
    let end = crate::time::start_of_day(next, tz);
    let that_day: Vec<Generation> = gens
        .iter()
        .filter(|g| g.taken_at >= start && g.taken_at < end)
        .cloned()
        .collect();
    if !that_day.is_empty() {
        return Ok(that_day);
    }
    let before = gens
        .iter()
        .filter(|g| g.taken_at < start)
        .max_by_key(|g| g.taken_at);
    let after = gens
        .iter()
        .filter(|g| g.taken_at >= end)
        .min_by_key(|g| g.taken_at);
    Ok(before.into_iter().chain(after).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{CollectionCounts, GenerationId, MailCounts};
    use crate::store::BlobId;
    use crate::time::Timestamp;

    fn g(t: &str) -> Generation {
        let taken_at: Timestamp = t.parse().unwrap();
        Generation {
            id: GenerationId::new(taken_at, 1),
            user: "a".into(),
            taken_at,
            root: BlobId::of(t.as_bytes()),
            mail: MailCounts::default(),
            calendars: CollectionCounts::default(),
            contacts: CollectionCounts::default(),
            mailbox: None,
            partial: vec![],
        }
    }

    fn ids(v: &[Generation]) -> Vec<String> {
        v.iter().map(|g| g.id.to_string()).collect()
    }

    #[test]
    fn the_day_in_the_daemons_time_zone_or_the_nearest_around_it() {
        let paris = crate::time::zone("Europe/Paris").unwrap();
        let gens = vec![
            g("2026-11-24T12:00:00Z"),
            g("2026-11-25T23:30:00Z"), // 26 Nov 00:30 in Paris
            g("2026-11-26T10:00:00Z"),
            g("2026-11-26T23:10:00Z"), // 27 Nov in Paris
            g("2026-11-30T08:00:00Z"),
        ];
        let day = |s: &str| s.parse::<Date>().unwrap();
        assert_eq!(
            ids(&on_day(gens.clone(), day("2026-11-26"), &paris).unwrap()),
            vec!["20261125T233000Z", "20261126T100000Z"]
        );
        assert_eq!(
            ids(&on_day(gens.clone(), day("2026-11-28"), &paris).unwrap()),
            vec!["20261126T231000Z", "20261130T080000Z"]
        );
        assert_eq!(
            ids(&on_day(gens.clone(), day("2026-12-05"), &paris).unwrap()),
            vec!["20261130T080000Z"]
        );
        assert_eq!(
            ids(&on_day(gens.clone(), day("2020-01-01"), &paris).unwrap()),
            vec!["20261124T120000Z"]
        );
        assert!(
            on_day(vec![], day("2026-11-26"), &paris)
                .unwrap()
                .is_empty()
        );
    }
}
