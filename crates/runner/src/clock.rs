//! One time axis for every stage. Live frames are stamped with the wall
//! clock (time since the Unix epoch); replayed frames with the footage's own
//! start time plus their pts. Identity compares those times across cameras,
//! and routing judges quiet hours at the local time they map to here, so a
//! replay of last night's footage is judged at night, not at replay time.

use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Local, TimeZone, Utc};

/// Maps frame times to local time.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// Frame times are wall-clock times since the Unix epoch (live).
    #[default]
    Wall,
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
            Clock::Wall => {
                let utc: DateTime<Utc> = (UNIX_EPOCH + pts).into();
                Local.from_utc_datetime(&utc.naive_utc()).fixed_offset()
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
        let t = Clock::Wall.local_time(Duration::from_secs(1_800_000_000));
        assert_eq!(t.timestamp(), 1_800_000_000);
    }
}
