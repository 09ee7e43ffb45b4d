//! UTC calendar arithmetic without a date crate: proleptic Gregorian dates to and from day
//! counts, and the ISO 8601 form `2026-11-27T09:00:00Z` that dead letters and the tracker use.
//!
//! The day-count conversions are Howard Hinnant's era-based algorithms ("chrono-Compatible
//! Low-Level Date Algorithms"): exact for every year, with no table and no loop.

use std::time::{SystemTime, UNIX_EPOCH};

pub const SECS_PER_DAY: i64 = 86_400;

/// Days in one 400-year era, after which the Gregorian calendar repeats.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 (where eras start, so the leap day ends a year) to 1970-01-01.
const EPOCH_SHIFT: i64 = 719_468;

pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1-12) of `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (negative before it). `month` is 1-12 and `day`
/// 1-31; an impossible date (30 February) is not checked and counts on into the next month.
pub const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years start in March, so February's leap day is the last day of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * DAYS_PER_ERA + doe - EPOCH_SHIFT
}

/// The date `days` after 1970-01-01 (before it when negative): `(year, month 1-12, day 1-31)`.
/// The inverse of [`days_from_civil`].
pub const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT;
    let era = z.div_euclid(DAYS_PER_ERA);
    let doe = z.rem_euclid(DAYS_PER_ERA);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

/// `yyyy-mm-ddTHH:MM:SSZ` for `secs` seconds since 1970-01-01T00:00:00Z (before it when
/// negative). Years outside 0000-9999 are written with as many digits and sign as they need.
pub fn iso8601_from_unix(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    let in_day = secs.rem_euclid(SECS_PER_DAY) as u32;
    let (hour, minute, second) = (in_day / 3600, in_day % 3600 / 60, in_day % 60);
    match u32::try_from(year) {
        // Digit by digit rather than with `format!`: the worker formats one time per log line.
        Ok(y) if y <= 9999 => {
            let mut out = *b"0000-00-00T00:00:00Z";
            put_digits(&mut out[0..4], y);
            put_digits(&mut out[5..7], month);
            put_digits(&mut out[8..10], day);
            put_digits(&mut out[11..13], hour);
            put_digits(&mut out[14..16], minute);
            put_digits(&mut out[17..19], second);
            // One copy of ASCII bytes; collecting chars one by one took half again as long.
            String::from_utf8(out.to_vec()).expect("ASCII digits and separators")
        }
        _ => format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
    }
}

/// `t` as UTC ISO 8601 with seconds, `2026-11-27T09:00:00Z`; a time before 1970 (a clock set
/// far back) shows as 1970-01-01T00:00:00Z.
pub fn utc_iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    iso8601_from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// Writes `n` as zero-padded decimal filling `buf`.
fn put_digits(buf: &mut [u8], mut n: u32) {
    for d in buf.iter_mut().rev() {
        *d = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
    }

    #[test]
    fn day_counts_round_trip_and_step_one_day_at_a_time() {
        // Every day from 1599-12-01 to 2401-02-01: covers 1600 and 2000 (leap), 1700, 1800,
        // 1900 and 2100 (not), and the era boundaries.
        let mut expect = (1599, 12, 1);
        for days in days_from_civil(1599, 12, 1)..=days_from_civil(2401, 2, 1) {
            assert_eq!(civil_from_days(days), expect, "day {days}");
            assert_eq!(days_from_civil(expect.0, expect.1, expect.2), days);
            let (y, m, d) = expect;
            expect = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn leap_years() {
        for (y, leap) in [
            (1900, false),
            (2000, true),
            (2023, false),
            (2024, true),
            (0, true),
        ] {
            assert_eq!(is_leap(y), leap, "{y}");
        }
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2023, 4), 30);
        assert_eq!(days_in_month(2023, 12), 31);
    }

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(utc_iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56
        let t = UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(utc_iso8601(t), "2000-02-29T12:34:56Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_287_284_682);
        assert_eq!(utc_iso8601(t), "2010-10-17T03:04:42Z");
        assert_eq!(
            utc_iso8601(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(iso8601_from_unix(-1), "1969-12-31T23:59:59Z");
        assert_eq!(iso8601_from_unix(-62_167_219_200), "0000-01-01T00:00:00Z");
        assert_eq!(iso8601_from_unix(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(iso8601_from_unix(253_402_300_800), "10000-01-01T00:00:00Z");
    }
}
