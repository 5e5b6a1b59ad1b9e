//! Times for people and scripts: local-time display, RFC 3339 (UTC) for JSON, and parsing of
//! `--time` / `--as-of` arguments.
//!
//! Accepted input: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM`, `YYYY-MM-DD HH:MM:SS[.fraction]` (a `T`
//! may replace the space), optionally followed by `Z` or an offset `+HH:MM` / `-HH:MM`. Without
//! a zone the time is local. Relative times: `now`, `today` and `yesterday` (local days), `N
//! UNIT ago` and `-NUNIT` (`2 days ago`, `-3h`, `-90min`; units s, m/min, h, d, w and their
//! long names). Local time comes from the C library (`localtime_r`, `mktime`),
//! the only `unsafe` in this crate.

use anyhow::{bail, Result};
use nix::libc;

const NS_PER_SEC: i64 = 1_000_000_000;

/// `YYYY-MM-DD HH:MM:SS` in local time (UTC with a `Z` when local time is unavailable).
pub fn format_local(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_SEC);
    match local_tm(secs) {
        Some(tm) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ),
        None => format_rfc3339(secs * NS_PER_SEC),
    }
}

/// The local date and hour of `ns`, for retention buckets (UTC when local time is unknown).
pub fn local_time(ns: i64) -> repo_core::LocalTime {
    match local_tm(ns.div_euclid(NS_PER_SEC)) {
        Some(tm) => repo_core::LocalTime {
            year: tm.tm_year.saturating_add(1900),
            month: u32::try_from(tm.tm_mon + 1).unwrap_or(1),
            day: u32::try_from(tm.tm_mday).unwrap_or(1),
            hour: u32::try_from(tm.tm_hour).unwrap_or(0),
        },
        None => repo_core::LocalTime::at_offset(ns, 0),
    }
}

/// Makes `zone` (an IANA name such as `Europe/Berlin`, or `UTC`) the local time zone of this
/// process, for `--tz`. Called before any thread starts.
pub fn set_zone(zone: &str) -> Result<()> {
    let known = zone == "UTC"
        || (!zone.contains("..")
            && !zone.starts_with('/')
            && std::path::Path::new("/usr/share/zoneinfo")
                .join(zone)
                .is_file());
    if !known {
        bail!("unknown time zone {zone:?}: give an IANA name such as Europe/Berlin, or UTC");
    }
    std::env::set_var("TZ", if zone == "UTC" { "UTC0" } else { zone });
    // SAFETY: tzset only rereads TZ into the C library's zone state; no other thread runs
    // yet (this is called while the command line is handled), so nothing reads that state
    // concurrently.
    unsafe { tzset() };
    Ok(())
}

extern "C" {
    /// POSIX `tzset(3)` (the libc crate does not bind it): initialises the zone from `TZ`.
    fn tzset();
}

/// RFC 3339 in UTC, with a fraction only when the time has one: `2024-05-01T12:00:00.5Z`.
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(NS_PER_SEC);
    let frac = ns.rem_euclid(NS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses a time argument into ns since the Unix epoch.
pub fn parse(input: &str) -> Result<i64> {
    parse_period(input).map(|(start, _)| start)
}

/// Parses a time as the end of the period it names, for `--as-of`: a time given to the second
/// means the last nanosecond of that second (the `snapshots` table shows times to the second,
/// and a snapshot taken at 12:00:00.7 must count as "at or before 12:00:00"), to the minute the
/// end of that minute, a date the end of that day.
pub fn parse_until(input: &str) -> Result<i64> {
    let (start, len) = parse_period(input)?;
    Ok(start.saturating_add(len - 1))
}

/// The start of the time `input` names (ns since the epoch) and the length of the period its
/// precision gives (1 ns with a fraction of a second, 1 s, 1 min, or a day for a date).
fn parse_period(input: &str) -> Result<(i64, i64)> {
    let s = input.trim();
    let bad = || {
        anyhow::anyhow!(
            "invalid time {input:?}: use RFC 3339 (2024-05-01T12:00:00Z), \"YYYY-MM-DD[ HH:MM[:SS]]\" (local time), or a relative time (yesterday, \"2 days ago\", -3h)"
        )
    };
    if let Some(period) = relative_period(s, now_ns()) {
        return period.ok_or_else(bad);
    }
    let mut p = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let year = p.digits(4).ok_or_else(bad)?;
    p.expect(b'-').ok_or_else(bad)?;
    let month = p.digits(2).ok_or_else(bad)?;
    p.expect(b'-').ok_or_else(bad)?;
    let day = p.digits(2).ok_or_else(bad)?;
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0i64);
    let mut period = 86_400 * NS_PER_SEC;
    if p.peek()
        .is_some_and(|c| c == b' ' || c == b'T' || c == b't')
    {
        p.i += 1;
        hour = p.digits(2).ok_or_else(bad)?;
        p.expect(b':').ok_or_else(bad)?;
        minute = p.digits(2).ok_or_else(bad)?;
        period = 60 * NS_PER_SEC;
        if p.peek() == Some(b':') {
            p.i += 1;
            second = p.digits(2).ok_or_else(bad)?;
            period = NS_PER_SEC;
            if p.peek() == Some(b'.') {
                p.i += 1;
                let start = p.i;
                while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                    p.i += 1;
                }
                let frac = &s[start..p.i];
                if frac.is_empty() || frac.len() > 9 {
                    return Err(bad());
                }
                nanos = format!("{frac:0<9}").parse().map_err(|_| bad())?;
                period = 10i64.pow(9 - frac.len() as u32);
            }
        }
    }
    let offset_secs = match p.peek() {
        None => None,
        Some(b'Z' | b'z') => {
            p.i += 1;
            Some(0)
        }
        Some(sign @ (b'+' | b'-')) => {
            p.i += 1;
            let oh = p.digits(2).ok_or_else(bad)?;
            if p.peek() == Some(b':') {
                p.i += 1;
            }
            let om = p.digits(2).ok_or_else(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = oh * 3600 + om * 60;
            Some(if sign == b'-' { -off } else { off })
        }
        Some(_) => return Err(bad()),
    };
    if p.i != p.s.len() {
        return Err(bad());
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        bail!("invalid time {input:?}: date or time out of range");
    }
    let secs = match offset_secs {
        Some(off) => {
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - off
        }
        None => local_mktime(year, month, day, hour, minute, second)
            .ok_or_else(|| anyhow::anyhow!("invalid time {input:?}: not a local time"))?,
    };
    let start = secs
        .checked_mul(NS_PER_SEC)
        .and_then(|n| n.checked_add(nanos))
        .ok_or_else(|| anyhow::anyhow!("invalid time {input:?}: out of range"))?;
    Ok((start, period))
}

/// The time now, ns since the epoch.
fn now_ns() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// A relative time (`now`, `today`, `yesterday`, `N UNIT ago`, `-NUNIT`) as the period it
/// names, taking `now` as the present: None when `s` is not written as one, Some(None) when
/// it is but does not work out (an unknown unit, out of range).
fn relative_period(s: &str, now: i64) -> Option<Option<(i64, i64)>> {
    let lower = s.to_ascii_lowercase();
    let day = 86_400 * NS_PER_SEC;
    let local_day = |back: i64| -> Option<(i64, i64)> {
        let tm = local_tm(now.div_euclid(NS_PER_SEC))?;
        let (y, m, d) = (
            i64::from(tm.tm_year) + 1900,
            i64::from(tm.tm_mon) + 1,
            i64::from(tm.tm_mday),
        );
        // Back by whole days through the civil calendar, so a change to or from summer
        // time in between does not shift the day.
        let (y, m, d) = civil_from_days(days_from_civil(y, m, d) - back);
        let start = local_mktime(y, m, d, 0, 0, 0)?.checked_mul(NS_PER_SEC)?;
        let (y2, m2, d2) = civil_from_days(days_from_civil(y, m, d) + 1);
        let end = local_mktime(y2, m2, d2, 0, 0, 0)?.checked_mul(NS_PER_SEC)?;
        Some((start, (end - start).max(1)))
    };
    match lower.as_str() {
        "now" => return Some(Some((now, 1))),
        "today" => return Some(local_day(0)),
        "yesterday" => return Some(local_day(1)),
        _ => {}
    }
    let (amount, unit) = if let Some(rest) = lower.strip_prefix('-') {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        (&rest[..digits], rest[digits..].trim())
    } else if let Some(rest) = lower.strip_suffix("ago") {
        let rest = rest.trim_end();
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Some(None);
        }
        (&rest[..digits], rest[digits..].trim())
    } else {
        return None;
    };
    let unit_ns = match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => NS_PER_SEC,
        "m" | "min" | "mins" | "minute" | "minutes" => 60 * NS_PER_SEC,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600 * NS_PER_SEC,
        "d" | "day" | "days" => day,
        "w" | "week" | "weeks" => 7 * day,
        _ => return Some(None),
    };
    let back = amount
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ns));
    Some(back.and_then(|b| now.checked_sub(b)).map(|t| (t, 1)))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let part = self.s.get(self.i..self.i + n)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.i += n;
        Some(part.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn local_tm(secs: i64) -> Option<libc::tm> {
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: `tm` is plain old data (integers and a pointer), for which all-zero is valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; `localtime_r` is the re-entrant variant
    // and writes only into `tm`.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    (!r.is_null()).then_some(tm)
}

// `time_t` is `i64` on 64-bit Linux but narrower elsewhere, hence the conversion.
#[allow(clippy::useless_conversion)]
fn local_mktime(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    // SAFETY: as in `local_tm`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = i32::try_from(y - 1900).ok()?;
    tm.tm_mon = i32::try_from(mo - 1).ok()?;
    tm.tm_mday = i32::try_from(d).ok()?;
    tm.tm_hour = i32::try_from(h).ok()?;
    tm.tm_min = i32::try_from(mi).ok()?;
    tm.tm_sec = i32::try_from(s).ok()?;
    tm.tm_isdst = -1;
    // SAFETY: `tm` is a valid, initialised struct; `mktime` reads and normalises it in place.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1 || (y, mo, d, h, mi, s) == (1969, 12, 31, 23, 59, 59)).then_some(i64::from(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_count_back_from_now() {
        let now = parse("2026-11-15T12:34:56Z").unwrap();
        let at = |s: &str| relative_period(s, now).unwrap().unwrap();
        assert_eq!(at("now"), (now, 1));
        assert_eq!(at("-3h"), (now - 3 * 3600 * NS_PER_SEC, 1));
        assert_eq!(at("-90min"), (now - 90 * 60 * NS_PER_SEC, 1));
        assert_eq!(at("2 days ago"), (now - 2 * 86_400 * NS_PER_SEC, 1));
        assert_eq!(at("1 Week Ago"), (now - 7 * 86_400 * NS_PER_SEC, 1));
        assert_eq!(at("10s ago"), (now - 10 * NS_PER_SEC, 1));
        // Local days: yesterday ends where today begins, and today holds now.
        let (today, today_len) = at("today");
        let (yesterday, yesterday_len) = at("yesterday");
        assert!(today <= now && now < today + today_len);
        assert_eq!(yesterday + yesterday_len, today);
        assert!((23..=25).contains(&(yesterday_len / (3600 * NS_PER_SEC))));
        // Written as relative times but wrong: errors, not absolute times.
        assert_eq!(relative_period("5 parsecs ago", now), Some(None));
        assert_eq!(relative_period("ago", now), Some(None));
        assert_eq!(relative_period("-3 fortnights", now), Some(None));
        // Not relative at all: left to the absolute parser.
        assert_eq!(relative_period("2026-11-01", now), None);
        assert!(parse("-x").is_err());
        assert!(parse("3 days ago").unwrap() < parse("now").unwrap());
        assert!(parse_until("yesterday").unwrap() < parse("today").unwrap());
    }

    #[test]
    fn as_of_times_mean_the_end_of_the_period_given() {
        let start = parse("2026-11-01T12:00:00Z").unwrap();
        assert_eq!(
            parse_until("2026-11-01T12:00:00Z").unwrap(),
            start + NS_PER_SEC - 1
        );
        assert_eq!(
            parse_until("2026-11-01T12:00Z").unwrap(),
            start + 60 * NS_PER_SEC - 1
        );
        assert_eq!(
            parse_until("2026-11-01T12:00:00.5Z").unwrap(),
            start + NS_PER_SEC / 2 + 99_999_999
        );
        assert_eq!(
            parse_until("2026-11-01T12:00:00.123456789Z").unwrap(),
            start + 123_456_789
        );
        let day = parse("2026-11-01T00:00:00Z").unwrap();
        let local_day = parse("2026-11-01").unwrap();
        assert_eq!(
            parse_until("2026-11-01").unwrap(),
            local_day + 86_400 * NS_PER_SEC - 1
        );
        assert_eq!(day % (86_400 * NS_PER_SEC), 0);
    }

    #[test]
    fn rfc3339_roundtrip_with_offsets() {
        assert_eq!(parse("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse("2024-02-29T12:30:15.5Z").unwrap(),
            1_709_209_815_500_000_000
        );
        assert_eq!(
            parse("2024-02-29T14:30:15+02:00").unwrap(),
            parse("2024-02-29 12:30:15Z").unwrap()
        );
        assert_eq!(
            format_rfc3339(1_709_209_815_500_000_000),
            "2024-02-29T12:30:15.5Z"
        );
        assert_eq!(format_rfc3339(-1_000_000_000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn bad_times_are_refused() {
        for bad in [
            "",
            "2024",
            "2024-13-01",
            "2023-02-29",
            "2024-01-01 25:00",
            "2024-01-01x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_times_parse_and_format_back() {
        let ns = parse("2024-05-01 10:20:30").unwrap();
        assert_eq!(format_local(ns), "2024-05-01 10:20:30");
        assert!(parse("2024-05-01").is_ok());
    }
}
