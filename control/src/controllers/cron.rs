//! Cron schedules as the CronJob controller evaluates them: five fields (minute, hour,
//! day of month, month, day of week) with `*`, `?`, ranges, steps, lists and names, the
//! `@hourly`…`@yearly` descriptors, and an optional `TZ=`/`CRON_TZ=` prefix.

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    day_any: bool,
    weekday_any: bool,
    /// Time zone named in the schedule, if any.
    pub time_zone: Option<String>,
}

const MONTHS: &[&str] = &[
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(Vec<bool>, bool), String> {
    let mut set = vec![false; (max + 1) as usize];
    let any = text == "*" || text == "?";
    let value = |v: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as u32 + name_base);
        }
        v.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {v}"))
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("failed to parse int from {s}"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        let (start, end) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if part.contains('/') { max } else { v })
        };
        if start < min || end > max || start > end {
            return Err(format!(
                "end of range ({end}) above maximum ({max}) or start ({start}) below minimum ({min}): {part}"
            ));
        }
        let mut v = start;
        while v <= end {
            set[v as usize] = true;
            // A step past the field's end (even near u32::MAX) just ends the range.
            let Some(next) = v.checked_add(step) else {
                break;
            };
            v = next;
        }
    }
    Ok((set, any))
}

impl Schedule {
    /// Parse a schedule.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (time_zone, body) = match text
            .strip_prefix("TZ=")
            .or_else(|| text.strip_prefix("CRON_TZ="))
        {
            Some(rest) => {
                let (tz, body) = rest
                    .split_once(' ')
                    .ok_or("a time zone must be followed by a schedule")?;
                (Some(tz.to_owned()), body.trim())
            }
            None => (None, text),
        };
        let body = match body {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = body.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields.as_slice() else {
            return Err(format!(
                "expected exactly 5 fields, found {}: {body}",
                fields.len()
            ));
        };
        let (minutes, _) = field(minute, 0, 59, &[], 0)?;
        let (hours, _) = field(hour, 0, 23, &[], 0)?;
        let (days, day_any) = field(dom, 1, 31, &[], 0)?;
        let (months, _) = field(month, 1, 12, MONTHS, 1)?;
        // 0-6 as kube's parser (robfig/cron) has it: 7 is not another Sunday.
        let (weekdays, weekday_any) = field(dow, 0, 6, DAYS, 0)?;
        Ok(Self {
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_any,
            weekday_any,
            time_zone,
        })
    }

    fn matches(&self, t: &jiff::civil::DateTime) -> bool {
        let day_ok = self.days[t.day() as usize];
        let weekday_ok = self.weekdays[t.weekday().to_sunday_zero_offset() as usize];
        // Cron's rule: when both day fields are restricted, either may match.
        let day = match (self.day_any, self.weekday_any) {
            (true, true) => true,
            (true, false) => weekday_ok,
            (false, true) => day_ok,
            (false, false) => day_ok || weekday_ok,
        };
        self.minutes[t.minute() as usize]
            && self.hours[t.hour() as usize]
            && self.months[t.month() as usize]
            && day
    }

    /// The latest scheduled time in (`after`, `until`], scanning at most `limit` minutes back
    /// from `until`, and how many scheduled times were in that window.
    pub fn latest(
        &self,
        after: jiff::Timestamp,
        until: jiff::Timestamp,
        tz: &jiff::tz::TimeZone,
        limit: i64,
    ) -> (Option<jiff::Timestamp>, usize) {
        let mut latest = None;
        let mut count = 0;
        let mut t = truncate_minute(until);
        for _ in 0..limit {
            if t <= after {
                break;
            }
            if self.matches(&tz.to_datetime(t)) {
                latest.get_or_insert(t);
                count += 1;
            }
            t -= jiff::SignedDuration::from_mins(1);
        }
        (latest, count)
    }

    /// The next scheduled time after `from`, within a year.
    pub fn next(&self, from: jiff::Timestamp, tz: &jiff::tz::TimeZone) -> Option<jiff::Timestamp> {
        let mut t = truncate_minute(from) + jiff::SignedDuration::from_mins(1);
        for _ in 0..(366 * 24 * 60) {
            if self.matches(&tz.to_datetime(t)) {
                return Some(t);
            }
            t += jiff::SignedDuration::from_mins(1);
        }
        None
    }
}

fn truncate_minute(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second() - t.as_second().rem_euclid(60)).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn every_minute_and_descriptors() {
        let utc = jiff::tz::TimeZone::UTC;
        let every = Schedule::parse("*/1 * * * *").expect("parse");
        assert_eq!(
            every.next(at("2026-01-01T00:00:30Z"), &utc),
            Some(at("2026-01-01T00:01:00Z"))
        );
        let hourly = Schedule::parse("@hourly").expect("parse");
        assert_eq!(
            hourly.next(at("2026-01-01T00:00:30Z"), &utc),
            Some(at("2026-01-01T01:00:00Z"))
        );
        let (latest, count) = every.latest(
            at("2026-01-01T00:00:00Z"),
            at("2026-01-01T00:05:10Z"),
            &utc,
            100,
        );
        assert_eq!((latest, count), (Some(at("2026-01-01T00:05:00Z")), 5));
    }

    #[test]
    fn names_ranges_and_weekdays() {
        let utc = jiff::tz::TimeZone::UTC;
        let s = Schedule::parse("30 9 * jan-mar mon-fri").expect("parse");
        // 2026-01-03 is a Saturday: the next run is Monday the 5th at 09:30.
        assert_eq!(
            s.next(at("2026-01-03T10:00:00Z"), &utc),
            Some(at("2026-01-05T09:30:00Z"))
        );
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * *").is_err());
        assert!(Schedule::parse("@sometimes").is_err());
    }
}
