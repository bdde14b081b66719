//! One time axis for every stage. Live frames are stamped with the wall
//! clock (time since the Unix epoch); replayed frames with the footage's own
//! start time plus their pts. Identity compares those times across cameras,
//! and routing judges quiet hours at the local time they map to here, so a
//! replay of last night's footage is judged at night, not at replay time.

use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};

/// Which local time the wall clock means.
#[derive(Clone, Debug, Default)]
pub enum Zone {
    /// The process's local time zone (`TZ`, `/etc/localtime`). Under
    /// systemd or in a container without either this is UTC.
    #[default]
    System,
    /// A named IANA time zone (the config's `timezone`).
    Iana(jiff::tz::TimeZone),
}

impl Zone {
    /// The IANA zone `name` (e.g. `Europe/Berlin`), from the system's
    /// time zone database.
    pub fn named(name: &str) -> Option<Self> {
        jiff::tz::TimeZone::get(name).ok().map(Zone::Iana)
    }

    fn offset_at(&self, utc: DateTime<Utc>) -> FixedOffset {
        match self {
            Zone::System => *Local.from_utc_datetime(&utc.naive_utc()).offset(),
            Zone::Iana(tz) => {
                let seconds = jiff::Timestamp::from_second(utc.timestamp())
                    .map(|t| tz.to_offset(t).seconds())
                    .unwrap_or(0);
                FixedOffset::east_opt(seconds)
                    .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"))
            }
        }
    }
}

/// Maps frame times to local time.
#[derive(Clone, Debug)]
pub enum Clock {
    /// Frame times are wall-clock times since the Unix epoch (live), shown
    /// in `zone`.
    Wall(Zone),
    /// Frame times are offsets from `start` (replay).
    Footage {
        /// When the footage began.
        start: DateTime<FixedOffset>,
    },
}

impl Clock {
    /// The local time of a frame stamped `pts`.
    pub fn local_time(&self, pts: Duration) -> DateTime<FixedOffset> {
        match self {
            Clock::Wall(zone) => {
                let utc: DateTime<Utc> = (UNIX_EPOCH + pts).into();
                utc.with_timezone(&zone.offset_at(utc))
            }
            Clock::Footage { start } => {
                *start
                    + chrono::Duration::from_std(pts).unwrap_or_else(|_| chrono::Duration::zero())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footage_time_is_start_plus_pts() {
        let start = DateTime::parse_from_rfc3339("2026-11-20T23:30:00+01:00").unwrap();
        let clock = Clock::Footage { start };
        assert_eq!(
            clock.local_time(Duration::from_secs(45 * 60)).to_rfc3339(),
            "2026-11-21T00:15:00+01:00"
        );
    }

    #[test]
    fn wall_time_is_the_epoch_offset() {
        let t = Clock::Wall(Zone::System).local_time(Duration::from_secs(1_800_000_000));
        assert_eq!(t.timestamp(), 1_800_000_000);
    }

    #[test]
    fn a_named_zone_gives_its_own_offset_whatever_tz_the_process_has() {
        let berlin = Zone::named("Europe/Berlin").expect("tzdata has Europe/Berlin");
        // 2026-07-01T12:00:00Z is summer time in Berlin (+02:00), and
        // 2026-01-15T12:00:00Z winter time (+01:00).
        let summer = Clock::Wall(berlin.clone()).local_time(Duration::from_secs(1_782_907_200));
        assert_eq!(summer.to_rfc3339(), "2026-07-01T14:00:00+02:00");
        let winter = Clock::Wall(berlin).local_time(Duration::from_secs(1_768_478_400));
        assert_eq!(winter.to_rfc3339(), "2026-01-15T13:00:00+01:00");
        assert!(Zone::named("Mars/Olympus_Mons").is_none());
    }
}
