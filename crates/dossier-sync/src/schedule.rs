//! When a source syncs by itself: an interval (`15m`) or a cron expression (`0 3 * * *`, with
//! an optional seconds field) in a time zone (`Europe/Paris`; UTC by default).

use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use croner::Cron;
use dossier_core::parse_duration_secs;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron { cron: Box<Cron>, tz: Tz },
}

impl Schedule {
    /// Reads `schedule` (an interval or a cron expression) and `timezone` (cron only).
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, String> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name.trim()).map_err(|_| {
                format!(
                    "timezone {name:?} is not an IANA time zone such as \"Europe/Paris\" or \"UTC\""
                )
            })?,
        };
        if schedule.trim().starts_with(|c: char| c.is_ascii_digit())
            && !schedule.trim().contains(' ')
        {
            if timezone.is_some() {
                return Err(format!(
                    "timezone only applies to cron schedules, and {schedule:?} is an interval"
                ));
            }
            let secs = parse_duration_secs(schedule)?;
            return Ok(Schedule::Every(Duration::seconds(secs)));
        }
        let cron = Cron::from_str(schedule.trim()).map_err(|e| {
            // croner's messages are sentences; ours are lowercase with no final period.
            let why = e.to_string().trim_end_matches('.').to_lowercase();
            format!(
                "{schedule:?} is neither an interval (15m, 1h) nor a cron expression (\"0 3 * * *\"): {why}"
            )
        })?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
        })
    }

    /// The first due time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(d) => after + *d,
            Schedule::Cron { cron, tz } => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .map(|t| t.with_timezone(&Utc))
                // A pattern with no future occurrence (e.g. a past year) never fires again.
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        }
    }

    /// The next due time after a run that was due at `due` and ended at `now`: the schedule
    /// moves on from `due`, skipping slots missed while the run (or the machine) was busy, so
    /// each slot runs at most once and a late run is not followed by a burst of catch-ups.
    pub fn next_due(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut next = self.next_after(due);
        if next <= now {
            next = match self {
                Schedule::Every(d) => {
                    let step = d.num_microseconds().unwrap_or(i64::MAX).max(1);
                    let missed = (now - next).num_microseconds().unwrap_or(0) / step + 1;
                    next + Duration::microseconds(step.saturating_mul(missed))
                }
                Schedule::Cron { .. } => self.next_after(now),
            };
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn intervals_and_cron_in_a_time_zone() {
        let every = Schedule::parse("15m", None).unwrap();
        assert_eq!(
            every.next_after(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T00:15:00Z")
        );
        // Paris is UTC+1 in winter, UTC+2 in summer.
        let paris = Schedule::parse("0 3 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(
            paris.next_after(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T02:00:00Z")
        );
        assert_eq!(
            paris.next_after(at("2026-07-01T00:00:00Z")),
            at("2026-07-01T01:00:00Z")
        );
        let utc = Schedule::parse("*/10 * * * *", None).unwrap();
        assert_eq!(
            utc.next_after(at("2026-01-01T00:00:00Z")),
            at("2026-01-01T00:10:00Z")
        );
    }

    #[test]
    fn missed_slots_are_skipped_not_replayed() {
        let every = Schedule::parse("15m", None).unwrap();
        // Due at 00:00, the run ended at 01:07: next is 01:15, not 00:15.
        assert_eq!(
            every.next_due(at("2026-01-01T00:00:00Z"), at("2026-01-01T01:07:00Z")),
            at("2026-01-01T01:15:00Z")
        );
        assert_eq!(
            every.next_due(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:01:00Z")),
            at("2026-01-01T00:15:00Z")
        );
        let hourly = Schedule::parse("0 * * * *", None).unwrap();
        assert_eq!(
            hourly.next_due(at("2026-01-01T00:00:00Z"), at("2026-01-01T05:30:00Z")),
            at("2026-01-01T06:00:00Z")
        );
    }

    #[test]
    fn bad_schedules_say_why() {
        insta::assert_snapshot!(Schedule::parse("15 minutes", None).unwrap_err(), @r#""15 minutes" is neither an interval (15m, 1h) nor a cron expression ("0 3 * * *"): invalid pattern: pattern must have between 5 and 7 fields"#);
        insta::assert_snapshot!(Schedule::parse("0 3 * *", None).unwrap_err(), @r#""0 3 * *" is neither an interval (15m, 1h) nor a cron expression ("0 3 * * *"): invalid pattern: pattern must have between 5 and 7 fields"#);
        insta::assert_snapshot!(Schedule::parse("0 3 * * *", Some("Paris")).unwrap_err(), @r#"timezone "Paris" is not an IANA time zone such as "Europe/Paris" or "UTC""#);
        insta::assert_snapshot!(Schedule::parse("1h", Some("UTC")).unwrap_err(), @r#"timezone only applies to cron schedules, and "1h" is an interval"#);
    }
}
