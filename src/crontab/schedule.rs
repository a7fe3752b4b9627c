//! Schedules in crontab(5)'s five fields — minute, hour, day of month, month, day of week —
//! evaluated in UTC. Each field is `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`,
//! or a comma list of those; months and weekdays also take their English abbreviations
//! (`jan`, `sun`; Sunday is 0 or 7). As in cron, when both day fields are restricted a day
//! matches if either does.

use crate::repo::release::civil;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// How far [`Schedule::latest_at_or_before`] and [`Schedule::next_after`] look: eight years
/// cover every valid schedule (Feb 29 on a given weekday recurs within 28 years only when
/// both day fields are restricted, and then either day field matching is enough).
const HORIZON_DAYS: i64 = 8 * 366;

impl Schedule {
    /// Parses the five fields; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [min, hour, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "'{text}' has {} fields, not 5 (minute hour day-of-month month day-of-week)",
                fields.len()
            ));
        };
        let weekdays = field(dow, "day of week", 0, 7, &WEEKDAYS)?;
        // 7 is Sunday too.
        let weekdays = ((weekdays | (weekdays >> 7)) & 0x7f) as u8;
        Ok(Schedule {
            text: fields.join(" "),
            minutes: field(min, "minute", 0, 59, &[])?,
            hours: field(hour, "hour", 0, 23, &[])? as u32,
            days: field(dom, "day of month", 1, 31, &[])? as u32,
            months: (field(mon, "month", 1, 12, &MONTHS)? >> 1) as u16,
            weekdays,
            days_restricted: *dom != "*",
            weekdays_restricted: *dow != "*",
        })
    }

    /// The schedule as written (fields separated by one space).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = civil(day);
        if self.months & (1 << (month - 1)) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let weekday = (day + 4).rem_euclid(7);
        let by_dom = self.days & (1 << dom) != 0;
        let by_dow = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => by_dom || by_dow,
            (true, false) => by_dom,
            (false, true) => by_dow,
            (false, false) => true,
        }
    }

    /// The minutes of a matching day, in order (seconds after its midnight).
    fn times_of_day(&self) -> impl DoubleEndedIterator<Item = i64> + '_ {
        (0..24i64)
            .filter(|h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i64)
                    .filter(|m| self.minutes & (1 << m) != 0)
                    .map(move |m| h * 3600 + m * 60)
            })
    }

    /// The latest time the schedule names at or before `t` (seconds since the epoch).
    pub fn latest_at_or_before(&self, t: i64) -> Option<i64> {
        let today = t.div_euclid(86_400);
        (today - HORIZON_DAYS..=today)
            .rev()
            .filter(|d| self.day_matches(*d))
            .find_map(|d| {
                self.times_of_day()
                    .rev()
                    .map(|s| d * 86_400 + s)
                    .find(|at| *at <= t)
            })
    }

    /// The first time the schedule names after `t`.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let today = t.div_euclid(86_400);
        (today..=today + HORIZON_DAYS)
            .filter(|d| self.day_matches(*d))
            .find_map(|d| {
                self.times_of_day()
                    .map(|s| d * 86_400 + s)
                    .find(|at| *at > t)
            })
    }
}

/// One field as a bit set (bit n: value n).
fn field(text: &str, name: &str, lo: u32, hi: u32, names: &[&str]) -> Result<u64, String> {
    let bad = |why: String| format!("{name} '{text}': {why}");
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| v.eq_ignore_ascii_case(n)) {
            // Month names count from 1, weekday names from 0, as their numbers do.
            return Ok(i as u32 + lo);
        }
        let n: u32 = v
            .parse()
            .map_err(|_| bad(format!("'{v}' is not a number")))?;
        if n < lo || n > hi {
            return Err(bad(format!("{n} is outside {lo}-{hi}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("step '{s}' is not a positive number")))?;
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if from > to {
            return Err(bad(format!("range {from}-{to} is backwards")));
        }
        bits |= (from..=to)
            .step_by(step as usize)
            .fold(0, |b, v| b | 1 << v);
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-06 00:00 UTC, a Sunday.
    const SUNDAY: i64 = 1_796_515_200;

    fn at(day: i64, h: i64, m: i64) -> i64 {
        SUNDAY + day * 86_400 + h * 3600 + m * 60
    }

    #[test]
    fn sunday_is_a_sunday() {
        assert_eq!(
            crate::repo::release::rfc2822(SUNDAY),
            "Sun, 06 Dec 2026 00:00:00 UTC"
        );
    }

    #[test]
    fn weekly_runs_on_sunday_night() {
        let s = Schedule::parse("30 2 * * sun").unwrap();
        assert_eq!(s.next_after(at(0, 0, 0)), Some(at(0, 2, 30)));
        assert_eq!(s.next_after(at(0, 2, 30)), Some(at(7, 2, 30)));
        assert_eq!(s.latest_at_or_before(at(3, 12, 0)), Some(at(0, 2, 30)));
        assert_eq!(s.latest_at_or_before(at(0, 2, 29)), Some(at(-7, 2, 30)));
        assert_eq!(
            Schedule::parse("30 2 * * 7")
                .unwrap()
                .next_after(at(1, 0, 0)),
            Some(at(7, 2, 30))
        );
    }

    #[test]
    fn hourly_daily_monthly_yearly() {
        let hourly = Schedule::parse("7 * * * *").unwrap();
        assert_eq!(hourly.next_after(at(0, 5, 7)), Some(at(0, 6, 7)));
        let daily = Schedule::parse("0 5 * * *").unwrap();
        assert_eq!(daily.latest_at_or_before(at(2, 4, 59)), Some(at(1, 5, 0)));
        // 2027-01-01 is 26 days after 2026-12-06.
        let monthly = Schedule::parse("30 0 1 * *").unwrap();
        assert_eq!(monthly.next_after(at(0, 0, 0)), Some(at(26, 0, 30)));
        let yearly = Schedule::parse("0 1 1 jan *").unwrap();
        assert_eq!(yearly.next_after(at(0, 0, 0)), Some(at(26, 1, 0)));
        assert_eq!(yearly.next_after(at(26, 1, 0)), Some(at(26 + 365, 1, 0)));
    }

    #[test]
    fn lists_ranges_and_steps() {
        let s = Schedule::parse("*/15 9-17/4 * * mon-fri").unwrap();
        // Monday 2026-12-07.
        assert_eq!(s.next_after(at(0, 12, 0)), Some(at(1, 9, 0)));
        assert_eq!(s.next_after(at(1, 9, 45)), Some(at(1, 13, 0)));
        assert_eq!(s.latest_at_or_before(at(6, 23, 0)), Some(at(5, 17, 45)));
        let both = Schedule::parse("0 0 13 * fri").unwrap();
        // Either day field: Friday 2026-12-11 comes before the 13th.
        assert_eq!(both.next_after(at(0, 0, 0)), Some(at(5, 0, 0)));
        assert_eq!(both.next_after(at(5, 0, 0)), Some(at(7, 0, 0)));
    }

    #[test]
    fn bad_schedules_say_which_field() {
        for (text, says) in [
            ("0 2 * *", "4 fields"),
            ("60 * * * *", "minute '60': 60 is outside 0-59"),
            ("0 24 * * *", "hour '24'"),
            ("0 0 0 * *", "day of month '0'"),
            ("0 0 * foo *", "month 'foo': 'foo' is not a number"),
            ("0 0 * * 8", "day of week '8'"),
            ("*/0 * * * *", "step '0'"),
            ("0 5-2 * * *", "backwards"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        // A schedule that can never match finds nothing.
        assert_eq!(
            Schedule::parse("0 0 31 feb *").unwrap().next_after(SUNDAY),
            None
        );
    }
}
