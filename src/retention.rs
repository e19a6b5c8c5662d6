//! The retention policy (pure): which restore points to keep.
//!
//! Keep the newest point in each of the last N hours, days, weeks (ISO,
//! from Monday) and months, counted back from `now` in the daemon's time zone
//! (days, weeks and months are local calendar periods, so a DST change makes
//! a 23- or 25-hour day, never a missing or doubled one; hours are absolute).
//! Always keep the newest point overall, every point a running restore uses,
//! and every point from the future (a clock that jumped back must not make
//! the daemon delete what it took before): "the further back, the fewer".

use std::collections::{BTreeMap, HashSet};

use crate::time::TimeZone;
use crate::time::Timestamp;
use crate::time::{Date, Datelike as _};

use crate::config::RetentionConfig;

/// One point as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointRef {
    /// Its id.
    pub id: String,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// False when a backend was down and the point lacks what it holds:
    /// a period keeps its newest complete point when it has one.
    pub complete: bool,
}

/// The verdict on one point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The point.
    pub id: String,
    /// Kept or dropped.
    pub keep: bool,
    /// Why it is kept (`newest`, `hourly 2026-11-26T13`, `in use`, …).
    pub reasons: Vec<String>,
}

/// A period's number (comparable, consecutive) and label for a time.
type PeriodKey<'a> = dyn Fn(Timestamp) -> (i64, String) + 'a;

/// Decides for every point (in the order given).
pub fn plan(
    policy: &RetentionConfig,
    points: &[PointRef],
    now: Timestamp,
    tz: &TimeZone,
    in_use: &HashSet<String>,
) -> Vec<Decision> {
    let order = newest_first(points);
    let mut reasons = always_kept(points, &order, now, in_use);
    let counts = [policy.hourly, policy.daily, policy.weekly, policy.monthly];
    for ((name, key), n) in periods(tz).into_iter().zip(counts) {
        keep_one_per_period(points, &order, now, name, n, &*key, &mut reasons);
    }
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let r = reasons.remove(&i).unwrap_or_default();
            Decision {
                id: p.id.clone(),
                keep: !r.is_empty(),
                reasons: r,
            }
        })
        .collect()
}

/// Indexes of `points`, newest first; ties broken by id for a stable answer.
fn newest_first(points: &[PointRef]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[b]
            .taken_at
            .cmp(&points[a].taken_at)
            .then_with(|| points[b].id.cmp(&points[a].id))
    });
    order
}

/// The points kept whatever the policy: the newest, those from the future
/// (a clock that jumped back), those a running restore reads.
fn always_kept(
    points: &[PointRef],
    order: &[usize],
    now: Timestamp,
    in_use: &HashSet<String>,
) -> BTreeMap<usize, Vec<String>> {
    let mut reasons: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    if let Some(&newest) = order.first() {
        reasons.entry(newest).or_default().push("newest".into());
    }
    for &i in order {
        if points[i].taken_at > now {
            reasons.entry(i).or_default().push("from the future".into());
        }
        if in_use.contains(&points[i].id) {
            reasons.entry(i).or_default().push("in use".into());
        }
    }
    reasons
}

/// The periods of the policy, each with the key of the period a time falls
/// in (numbered so that consecutive periods differ by one) and its label.
fn periods(tz: &TimeZone) -> [(&'static str, Box<PeriodKey<'_>>); 4] {
    [
        (
            "hourly",
            Box::new(move |t: Timestamp| {
                let h = t.timestamp().div_euclid(3600);
                (h, t.with_timezone(tz).format("%Y-%m-%dT%H").to_string())
            }),
        ),
        (
            "daily",
            Box::new(move |t: Timestamp| {
                let d = t.with_timezone(tz).date_naive();
                (days(d), d.to_string())
            }),
        ),
        (
            "weekly",
            Box::new(move |t: Timestamp| {
                let d = t.with_timezone(tz).date_naive();
                let monday = days(d) - i64::from(d.weekday().num_days_from_monday());
                (
                    monday.div_euclid(7),
                    format!("week of {}", from_days(monday)),
                )
            }),
        ),
        (
            "monthly",
            Box::new(move |t: Timestamp| {
                let d = t.with_timezone(tz).date_naive();
                (
                    i64::from(d.year()) * 12 + i64::from(d.month()) - 1,
                    format!("{:04}-{:02}", d.year(), d.month()),
                )
            }),
        ),
    ]
}

/// Keeps the newest point of each of the last `n` periods (the current one
/// included), with the reason `"{name} {label}"`.
fn keep_one_per_period(
    points: &[PointRef],
    order: &[usize],
    now: Timestamp,
    name: &str,
    n: u32,
    key: &PeriodKey<'_>,
    reasons: &mut BTreeMap<usize, Vec<String>>,
) {
    if n == 0 {
        return;
    }
    let (now_key, _) = key(now);
    let oldest = now_key - i64::from(n) + 1;
    // Per period: its newest complete point, else its newest point.
    let mut chosen: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    for &i in order {
        let t = points[i].taken_at;
        if t > now {
            continue;
        }
        let (k, label) = key(t);
        if k < oldest || k > now_key {
            continue;
        }
        match chosen.get(&k) {
            None => {
                chosen.insert(k, (i, label));
            }
            Some(&(c, _)) if !points[c].complete && points[i].complete => {
                chosen.insert(k, (i, label));
            }
            Some(_) => {}
        }
    }
    for (i, label) in chosen.into_values() {
        reasons
            .entry(i)
            .or_default()
            .push(format!("{name} {label}"));
    }
}

/// Days since 1970-01-01.
fn days(d: Date) -> i64 {
    (d - Date::default()).num_days()
}

/// The date `n` days after 1970-01-01 (that date itself when out of range).
fn from_days(n: i64) -> Date {
    Date::default()
        .checked_add_signed(crate::time::TimeDelta::days(n))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write;

    fn policy(h: u32, d: u32, w: u32, m: u32) -> RetentionConfig {
        RetentionConfig {
            hourly: h,
            daily: d,
            weekly: w,
            monthly: m,
        }
    }

    fn pts(times: &[Timestamp]) -> Vec<PointRef> {
        times
            .iter()
            .map(|t| PointRef {
                id: t.format("%Y%m%dT%H%M%SZ").to_string(),
                taken_at: *t,
                complete: true,
            })
            .collect()
    }

    fn render(title: &str, decisions: &[Decision]) -> String {
        let mut out = format!("## {title}\n");
        for d in decisions.iter().filter(|d| d.keep) {
            let _ = writeln!(out, "keep {} ({})", d.id, d.reasons.join(", "));
        }
        let dropped = decisions.iter().filter(|d| !d.keep).count();
        let _ = writeln!(out, "drop {dropped} points\n");
        out
    }

    fn hourly(from: &str, hours: i64) -> Vec<Timestamp> {
        let start: Timestamp = from.parse().unwrap();
        (0..hours)
            .map(|h| start + crate::time::TimeDelta::hours(h))
            .collect()
    }

    /// The golden table: every case's kept points and reasons. Run with
    /// `UPDATE_GOLDEN=1` to rewrite `fixtures/retention/golden.txt`.
    #[test]
    fn golden_cases() {
        let paris = crate::time::zone("Europe/Paris").unwrap();
        let none = HashSet::new();
        let mut out = String::new();

        let month = pts(&hourly("2026-10-01T00:30:00Z", 24 * 31 + 10));
        let now: Timestamp = "2026-11-01T10:45:00Z".parse().unwrap();
        out += &render(
            "a month of hourly points, contract defaults (24/14/8/12), Paris, across the October DST change",
            &plan(&policy(24, 14, 8, 12), &month, now, &paris, &none),
        );

        let spring = pts(&hourly("2026-03-28T20:00:00Z", 12));
        let now: Timestamp = "2026-03-29T07:59:00Z".parse().unwrap();
        out += &render(
            "spring DST (02:00 does not exist in Paris): daily buckets stay local days",
            &plan(&policy(3, 3, 1, 1), &spring, now, &paris, &none),
        );

        let mut jumped = hourly("2026-11-20T08:00:00Z", 5);
        jumped.push("2026-11-20T06:30:00Z".parse().unwrap()); // clock jumped back
        jumped.push("2026-11-27T09:00:00Z".parse().unwrap()); // from the future
        let now: Timestamp = "2026-11-20T12:10:00Z".parse().unwrap();
        out += &render(
            "clock jump back and a point from the future",
            &plan(&policy(2, 1, 0, 0), &pts(&jumped), now, &paris, &none),
        );

        let old = pts(&[
            "2025-01-05T10:00:00Z".parse().unwrap(),
            "2025-02-05T10:00:00Z".parse().unwrap(),
        ]);
        let now: Timestamp = "2026-11-20T12:10:00Z".parse().unwrap();
        let in_use: HashSet<String> = ["20250105T100000Z".to_string()].into();
        out += &render(
            "only old points: the newest stays, one in use by a restore stays",
            &plan(&policy(24, 14, 8, 12), &old, now, &paris, &in_use),
        );

        out += &render(
            "no points",
            &plan(&policy(24, 14, 8, 12), &[], now, &paris, &none),
        );

        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/retention/golden.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, &out).unwrap();
        }
        let golden = std::fs::read_to_string(path)
            .expect("golden file (run with UPDATE_GOLDEN=1 to create)");
        assert_eq!(
            out, golden,
            "retention decisions changed; inspect and rerun with UPDATE_GOLDEN=1 if intended"
        );
    }

    #[test]
    fn a_month_of_hourly_points_thins_to_the_policy() {
        let utc = crate::time::UTC;
        let month = pts(&hourly("2026-10-01T00:00:00Z", 24 * 31));
        let now: Timestamp = "2026-10-31T23:30:00Z".parse().unwrap();
        let d = plan(&policy(24, 14, 8, 12), &month, now, &utc, &HashSet::new());
        let kept = d.iter().filter(|d| d.keep).count();
        // 24 hourly + 13 more days + the weeks and the month they do not cover.
        assert!((37..=45).contains(&kept), "{kept} kept");
        assert!(d.iter().filter(|d| d.keep).all(|d| !d.reasons.is_empty()));
    }

    #[test]
    fn a_period_keeps_its_newest_complete_point_over_a_newer_partial_one() {
        let utc = crate::time::UTC;
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        let mut points = pts(&[
            t("2026-11-02T09:10:00Z"),
            t("2026-11-02T09:40:00Z"),
            t("2026-11-02T10:10:00Z"),
        ]);
        points[1].complete = false; // the DAV server was down at 09:40
        let now = t("2026-11-02T10:30:00Z");
        let d = plan(&policy(2, 0, 0, 0), &points, now, &utc, &HashSet::new());
        let kept: Vec<_> = d.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect();
        assert_eq!(kept, vec!["20261102T091000Z", "20261102T101000Z"], "{d:?}");
        // With no complete point in the period, the newest stays.
        points[0].complete = false;
        let d = plan(&policy(2, 0, 0, 0), &points, now, &utc, &HashSet::new());
        assert!(d[1].keep && !d[0].keep, "{d:?}");
    }
}
