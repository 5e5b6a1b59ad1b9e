//! Retention policies: which snapshots of a group `forget` keeps, and why.
//!
//! The rules are restic's, so a policy means the same in both: going from the newest snapshot
//! to the oldest, `last N` keeps the N newest; `hourly N` (likewise daily, weekly, monthly,
//! yearly) keeps the newest snapshot of each of the N most recent hours (days, ISO weeks,
//! months, years) that have one; `within D` keeps every snapshot taken at most D before the
//! newest one, and `within_daily D` (likewise the others) the newest of each day among them,
//! without a count; `tags` keeps every snapshot that carries all tags of one of its sets.
//! A snapshot is kept when any rule keeps it, and the decision lists every rule that did.
//!
//! Buckets are calendar periods in a time zone that the caller supplies as a function from a
//! time to its local date and hour ([`LocalTime`]): the CLI passes the system's local time
//! (or `--tz`), so a day is a local day whatever the UTC offset, across DST changes too. The
//! reference for `within` is the newest snapshot of the group, not the clock, so a policy
//! applied again later removes nothing more until a new snapshot is made.

use crate::id::SnapshotId;
use crate::snapshot::Snapshot;

/// A local calendar date and hour: what the buckets are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// The year.
    pub year: i32,
    /// 1..=12.
    pub month: u32,
    /// 1..=31.
    pub day: u32,
    /// 0..=23.
    pub hour: u32,
}

impl LocalTime {
    /// The local time `ns` (nanoseconds since the Unix epoch) shows at a fixed UTC offset.
    pub fn at_offset(ns: i64, offset_seconds: i32) -> Self {
        let secs = ns.div_euclid(1_000_000_000) + i64::from(offset_seconds);
        let days = secs.div_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year: i32::try_from(year).unwrap_or(i32::MAX),
            month,
            day,
            hour: u32::try_from(secs.rem_euclid(86_400) / 3600).unwrap_or(0),
        }
    }

    /// The ISO 8601 week: (week-numbering year, week 1..=53).
    fn iso_week(self) -> (i64, i64) {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        // 1970-01-01 was a Thursday; ISO weekdays run Monday = 0 to Sunday = 6.
        let weekday = (days + 3).rem_euclid(7);
        // The Thursday of this week decides the year the week belongs to.
        let thursday = days - weekday + 3;
        let (y, _, _) = civil_from_days(thursday);
        let first = days_from_civil(y, 1, 1);
        (y, (thursday - first) / 7 + 1)
    }
}

/// A retention policy. The default keeps nothing: a policy must say what to keep.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the N newest snapshots.
    pub last: u32,
    /// Keep the newest snapshot of each of the N most recent hours with one.
    pub hourly: u32,
    /// ... days.
    pub daily: u32,
    /// ... ISO weeks.
    pub weekly: u32,
    /// ... months.
    pub monthly: u32,
    /// ... years.
    pub yearly: u32,
    /// Keep every snapshot at most this many nanoseconds older than the newest.
    pub within_ns: Option<i64>,
    /// Within this span of the newest snapshot, keep the newest of each hour.
    pub within_hourly_ns: Option<i64>,
    /// ... of each day.
    pub within_daily_ns: Option<i64>,
    /// ... of each ISO week.
    pub within_weekly_ns: Option<i64>,
    /// ... of each month.
    pub within_monthly_ns: Option<i64>,
    /// ... of each year.
    pub within_yearly_ns: Option<i64>,
    /// Keep every snapshot that has all tags of one of these sets.
    pub tags: Vec<Vec<String>>,
}

impl RetentionPolicy {
    /// Whether the policy keeps anything at all (an empty policy would remove everything).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a policy decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDecision {
    /// The snapshot.
    pub id: SnapshotId,
    /// Kept (true) or to be removed.
    pub keep: bool,
    /// The rules that kept it (`last`, `daily`, `within`, `within-daily`, `tag a,b`, ...);
    /// empty when it goes.
    pub reasons: Vec<String>,
}

#[derive(Clone, Copy)]
enum Period {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    fn bucket(self, t: LocalTime, index: usize) -> i64 {
        let (y, m, d, h) = (
            i64::from(t.year),
            i64::from(t.month),
            i64::from(t.day),
            i64::from(t.hour),
        );
        match self {
            Self::Last => index as i64,
            Self::Hour => ((y * 100 + m) * 100 + d) * 100 + h,
            Self::Day => (y * 100 + m) * 100 + d,
            Self::Week => {
                let (wy, w) = t.iso_week();
                wy * 100 + w
            }
            Self::Month => y * 100 + m,
            Self::Year => y,
        }
    }
}

/// Applies `policy` to one group of snapshots (any order); `local` gives the local time of a
/// snapshot time. Returns one decision per snapshot, newest first.
pub fn apply_retention(
    snapshots: &[Snapshot],
    policy: &RetentionPolicy,
    local: &dyn Fn(i64) -> LocalTime,
) -> Vec<RetentionDecision> {
    let mut order: Vec<&Snapshot> = snapshots.iter().collect();
    order.sort_by(|a, b| b.meta.time_ns.cmp(&a.meta.time_ns).then(b.id.cmp(&a.id)));
    let newest = order.first().map_or(0, |s| s.meta.time_ns);
    // (name, period, count left (None: unlimited within a span), span, last bucket kept)
    struct Rule {
        name: &'static str,
        period: Period,
        left: Option<u32>,
        span: Option<i64>,
        last: Option<i64>,
    }
    let counted = |name, period, n: u32| Rule {
        name,
        period,
        left: Some(n),
        span: None,
        last: None,
    };
    let within = |name, period, span: Option<i64>| Rule {
        name,
        period,
        left: None,
        span,
        last: None,
    };
    let mut rules = vec![
        counted("last", Period::Last, policy.last),
        counted("hourly", Period::Hour, policy.hourly),
        counted("daily", Period::Day, policy.daily),
        counted("weekly", Period::Week, policy.weekly),
        counted("monthly", Period::Month, policy.monthly),
        counted("yearly", Period::Year, policy.yearly),
        within("within-hourly", Period::Hour, policy.within_hourly_ns),
        within("within-daily", Period::Day, policy.within_daily_ns),
        within("within-weekly", Period::Week, policy.within_weekly_ns),
        within("within-monthly", Period::Month, policy.within_monthly_ns),
        within("within-yearly", Period::Year, policy.within_yearly_ns),
    ];
    let mut out = Vec::with_capacity(order.len());
    for (index, snap) in order.iter().enumerate() {
        let t = local(snap.meta.time_ns);
        let age = newest.saturating_sub(snap.meta.time_ns);
        let mut reasons = Vec::new();
        for set in &policy.tags {
            if !set.is_empty() && set.iter().all(|tag| snap.meta.tags.contains(tag)) {
                reasons.push(format!("tag {}", set.join(",")));
            }
        }
        if policy.within_ns.is_some_and(|span| age <= span) {
            reasons.push("within".to_string());
        }
        for rule in &mut rules {
            match (rule.left, rule.span) {
                (Some(0), _) => continue,
                (None, None) => continue,
                (None, Some(span)) if age > span => continue,
                _ => {}
            }
            let bucket = rule.period.bucket(t, index);
            if rule.last != Some(bucket) {
                rule.last = Some(bucket);
                if let Some(n) = &mut rule.left {
                    *n -= 1;
                }
                reasons.push(rule.name.to_string());
            }
        }
        out.push(RetentionDecision {
            id: snap.id,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::SnapshotFile;
    use crate::id::{BlobId, Id};

    const HOUR: i64 = 3_600_000_000_000;
    const DAY: i64 = 24 * HOUR;

    /// Nanoseconds of a UTC date and hour.
    fn at(y: i64, m: u32, d: u32, h: i64) -> i64 {
        (days_from_civil(y, m, d) * 86_400 + h * 3600) * 1_000_000_000
    }

    fn snap(time_ns: i64, tags: &[&str]) -> Snapshot {
        Snapshot {
            id: SnapshotId(Id::hash(&time_ns.to_le_bytes())),
            meta: SnapshotFile {
                time_ns,
                hostname: "h".into(),
                username: "u".into(),
                paths: vec![b"/data".to_vec()],
                tags: tags.iter().map(|t| t.to_string()).collect(),
                description: String::new(),
                parent: None,
                tree: BlobId(Id::hash(b"t")),
                program_version: "test".into(),
                summary: Default::default(),
            },
        }
    }

    fn utc(ns: i64) -> LocalTime {
        LocalTime::at_offset(ns, 0)
    }

    /// The kept snapshots' times, newest first.
    fn kept(snaps: &[Snapshot], policy: &RetentionPolicy) -> Vec<i64> {
        let time = |id: &SnapshotId| snaps.iter().find(|s| s.id == *id).unwrap().meta.time_ns;
        apply_retention(snaps, policy, &utc)
            .iter()
            .filter(|d| d.keep)
            .map(|d| time(&d.id))
            .collect()
    }

    #[test]
    fn dates_and_iso_weeks() {
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        let w = |y, m, d| {
            LocalTime {
                year: y,
                month: m,
                day: d,
                hour: 0,
            }
            .iso_week()
        };
        // 2021-01-03 (a Sunday) belongs to week 53 of 2020; 2024-12-30 to week 1 of 2025.
        assert_eq!(w(2021, 1, 3), (2020, 53));
        assert_eq!(w(2021, 1, 4), (2021, 1));
        assert_eq!(w(2024, 12, 30), (2025, 1));
        assert_eq!(w(2026, 12, 3), (2026, 49));
        assert_eq!(LocalTime::at_offset(at(2026, 3, 1, 23), 3600).day, 2);
        assert_eq!(LocalTime::at_offset(at(2026, 3, 1, 0), -3600).day, 28);
    }

    #[test]
    fn last_and_counted_buckets_keep_the_newest_of_each_period() {
        // Three snapshots a day for five days.
        let snaps: Vec<Snapshot> = (0..5)
            .flat_map(|d| (0..3).map(move |h| snap(at(2026, 5, 10 + d, 8 + 4 * h), &[])))
            .collect();
        let mut p = RetentionPolicy {
            last: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&snaps, &p),
            vec![at(2026, 5, 14, 16), at(2026, 5, 14, 12)]
        );
        p = RetentionPolicy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&snaps, &p),
            vec![
                at(2026, 5, 14, 16),
                at(2026, 5, 13, 16),
                at(2026, 5, 12, 16)
            ]
        );
        // Rules add up; a snapshot kept by two says so.
        p.last = 2;
        let d = apply_retention(&snaps, &p, &utc);
        assert_eq!(d[0].reasons, vec!["last", "daily"]);
        assert_eq!(d[1].reasons, vec!["last"]);
        assert_eq!(d.iter().filter(|d| d.keep).count(), 4);
        assert!(d.iter().filter(|d| !d.keep).all(|d| d.reasons.is_empty()));
        // More periods asked for than there are: everything's newest of each is kept.
        p = RetentionPolicy {
            daily: 30,
            ..Default::default()
        };
        assert_eq!(kept(&snaps, &p).len(), 5);
    }

    /// Grandfather-father-son over two years of daily snapshots at 02:00, with gaps: a lost
    /// month (2025-03) and a lost week (2025-11-03..09).
    #[test]
    fn grandfather_father_son_over_two_years_with_gaps() {
        let start = days_from_civil(2024, 12, 1);
        let end = days_from_civil(2026, 11, 30);
        let gap = |d: i64| {
            let (y, m, day) = civil_from_days(d);
            (y == 2025 && m == 3) || (y == 2025 && m == 11 && (3..=9).contains(&day))
        };
        let snaps: Vec<Snapshot> = (start..=end)
            .filter(|d| !gap(*d))
            .map(|d| snap(d * 86_400_000_000_000 + 2 * HOUR, &[]))
            .collect();
        let policy = RetentionPolicy {
            daily: 7,
            weekly: 5,
            monthly: 12,
            yearly: 3,
            ..Default::default()
        };
        let kept = kept(&snaps, &policy);
        let day = |y, m, d| at(y, m, d, 2);
        let mut want = vec![
            // daily 7: 2026-11-24..30.
            day(2026, 11, 30),
            day(2026, 11, 29),
            day(2026, 11, 28),
            day(2026, 11, 27),
            day(2026, 11, 26),
            day(2026, 11, 25),
            day(2026, 11, 24),
            // weekly 5: the newest of ISO weeks 49 (the 30th, a Monday, kept), 48 (the 29th,
            // kept), 47, 46 and 45.
            day(2026, 11, 22),
            day(2026, 11, 15),
            day(2026, 11, 8),
            // monthly 12: November 2026 (the 30th, kept), then the month ends back to
            // 2025-12: twelve months with snapshots.
            day(2026, 10, 31),
            day(2026, 9, 30),
            day(2026, 8, 31),
            day(2026, 7, 31),
            day(2026, 6, 30),
            day(2026, 5, 31),
            day(2026, 4, 30),
            day(2026, 3, 31),
            day(2026, 2, 28),
            day(2026, 1, 31),
            day(2025, 12, 31),
            // yearly 3: 2026 (the 30th, kept), 2025-12-31 (kept), 2024-12-31.
            day(2024, 12, 31),
        ];
        want.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(kept, want);
        // Weekly with the lost week: asking for 60 weeks skips the week with no snapshot.
        let weekly = RetentionPolicy {
            weekly: 60,
            ..Default::default()
        };
        let k = super::tests::kept(&snaps, &weekly);
        assert_eq!(k.len(), 60);
        assert!(
            !k.contains(&day(2025, 11, 9)),
            "the lost week has no snapshot"
        );
        assert!(k.contains(&day(2025, 11, 16)) && k.contains(&day(2025, 11, 2)));
    }

    #[test]
    fn within_counts_back_from_the_newest_snapshot_and_tags_keep_what_they_name() {
        let snaps: Vec<Snapshot> = (0..10)
            .map(|d| {
                snap(
                    at(2026, 1, 1 + d, 12),
                    if d == 2 { &["keep", "db"] } else { &["db"] },
                )
            })
            .collect();
        let p = RetentionPolicy {
            within_ns: Some(3 * DAY),
            ..Default::default()
        };
        assert_eq!(
            kept(&snaps, &p),
            vec![
                at(2026, 1, 10, 12),
                at(2026, 1, 9, 12),
                at(2026, 1, 8, 12),
                at(2026, 1, 7, 12)
            ]
        );
        let p = RetentionPolicy {
            tags: vec![vec!["keep".into(), "db".into()]],
            ..Default::default()
        };
        assert_eq!(kept(&snaps, &p), vec![at(2026, 1, 3, 12)]);
        let d = apply_retention(&snaps, &p, &utc);
        assert_eq!(
            d.iter().find(|d| d.keep).unwrap().reasons,
            vec!["tag keep,db"]
        );
        // within-daily keeps one a day inside the span, with no count.
        let many: Vec<Snapshot> = (0..48)
            .map(|h| snap(at(2026, 1, 1, 0) + h * HOUR, &[]))
            .collect();
        let p = RetentionPolicy {
            within_daily_ns: Some(DAY),
            ..Default::default()
        };
        assert_eq!(
            kept(&many, &p),
            vec![at(2026, 1, 2, 23), at(2026, 1, 1, 23)]
        );
        assert!(RetentionPolicy::default().is_empty() && !p.is_empty());
    }

    /// Days are local days: at a change from UTC+1 to UTC+2 (2026-03-29 01:00 UTC in central
    /// Europe) snapshots at 23:30 local on each side of midnight land in their own local days,
    /// and an hour that occurs twice when the clock goes back counts as one hour.
    #[test]
    fn buckets_follow_local_time_across_dst_changes() {
        let change = at(2026, 3, 29, 1);
        let autumn = at(2026, 10, 25, 1);
        let cet = move |ns: i64| {
            let offset = if (change..autumn).contains(&ns) {
                7200
            } else {
                3600
            };
            LocalTime::at_offset(ns, offset)
        };
        // 23:30 UTC on the 28th is 00:30 local on the 29th; 21:30 UTC on the 29th is 23:30
        // local that day; 22:30 UTC on the 29th is 00:30 local on the 30th.
        let (a, b, c) = (
            at(2026, 3, 28, 23) + HOUR / 2,
            at(2026, 3, 29, 21) + HOUR / 2,
            at(2026, 3, 29, 22) + HOUR / 2,
        );
        let snaps: Vec<Snapshot> = [a, b, c].iter().map(|t| snap(*t, &[])).collect();
        let p = RetentionPolicy {
            daily: 10,
            ..Default::default()
        };
        let kept_by = |zone: &dyn Fn(i64) -> LocalTime| -> Vec<i64> {
            apply_retention(&snaps, &p, zone)
                .iter()
                .filter(|d| d.keep)
                .map(|d| snaps.iter().find(|s| s.id == d.id).unwrap().meta.time_ns)
                .collect()
        };
        // Local days 30th (c) and 29th (b, the newer of a and b); UTC days 29th (c) and 28th (a).
        assert_eq!(kept_by(&cet), vec![c, b]);
        assert_eq!(kept_by(&utc), vec![c, a]);
        // Autumn: 02:30 local happens at 00:30 UTC (UTC+2) and again at 01:30 UTC (UTC+1):
        // hourly keeps the later one only.
        let twice = [
            at(2026, 10, 25, 0) + HOUR / 2,
            at(2026, 10, 25, 1) + HOUR / 2,
        ];
        let snaps: Vec<Snapshot> = twice.iter().map(|t| snap(*t, &[])).collect();
        let p = RetentionPolicy {
            hourly: 10,
            ..Default::default()
        };
        let d = apply_retention(&snaps, &p, &cet);
        assert_eq!(
            d.iter().map(|d| d.keep).collect::<Vec<_>>(),
            vec![true, false]
        );
    }
}
