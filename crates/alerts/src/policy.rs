//! The routing policy as a pure function: given the policy, the run-time
//! state (mode, notifications switch, suspension, last deliveries) and an
//! alert, which channels get it, and if none, why. No clock, no I/O: the
//! caller passes `now`.
//!
//! Rules, in order. A critical alert passes every rule but the channels'
//! own minimums. Otherwise: notifications switched off, a suspension, quiet
//! hours for the camera, the mode's minimum urgency, and (for new alerts
//! only) the camera's and the global cooldown each hold it back. The alert
//! then goes to every channel whose minimum it reaches. An update (stage
//! two) always reaches the channels its first stage reached, so consumers
//! can revise what they showed, and cooldowns never hold an update back.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveTime, Weekday};
use serde::Serialize;
use streamer_core::Urgency;

use crate::config::{camera_slug, ClockTime, QuietHoursConfig, RoutingConfig};

/// A channel consumers subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Name used in config and in `delivered_to`.
    pub name: String,
    /// MQTT topic the alert JSON goes to.
    pub topic: String,
    /// Least urgency sent to it.
    pub min_urgency: Urgency,
}

/// A quiet-hours window, validated.
#[derive(Clone, Debug)]
pub struct QuietHours {
    /// Camera names; empty = all.
    pub cameras: Vec<String>,
    /// Days the window starts on; empty = all.
    pub days: Vec<Weekday>,
    /// Local start.
    pub start: NaiveTime,
    /// Local end (exclusive); before `start` means the next day.
    pub end: NaiveTime,
}

impl QuietHours {
    fn from_config(c: &QuietHoursConfig) -> Self {
        Self {
            cameras: c.cameras.clone(),
            days: c.days.iter().map(|d| d.weekday()).collect(),
            start: c.start.0,
            end: c.end.0,
        }
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    /// Whether local time `now` on `camera` falls in this window.
    pub fn covers(&self, camera: &str, now: &DateTime<FixedOffset>) -> bool {
        if !self.cameras.is_empty()
            && !self
                .cameras
                .iter()
                .any(|c| c == camera || camera_slug(c) == camera_slug(camera))
        {
            return false;
        }
        let time = now.time();
        let today = now.weekday();
        if self.start < self.end {
            self.starts_on(today) && time >= self.start && time < self.end
        } else {
            // Runs past midnight: the evening part belongs to today's
            // window, the morning part to yesterday's.
            (self.starts_on(today) && time >= self.start)
                || (self.starts_on(today.pred()) && time < self.end)
        }
    }
}

/// The policy built from [`RoutingConfig`].
#[derive(Clone, Debug)]
pub struct Policy {
    /// Channels in config order.
    pub channels: Vec<Channel>,
    /// Mode name → least urgency that passes in it.
    pub modes: BTreeMap<String, Urgency>,
    /// Quiet-hours windows.
    pub quiet_hours: Vec<QuietHours>,
    /// Default per-camera cooldown.
    pub cooldown: Duration,
    /// Per-camera cooldowns replacing the default.
    pub camera_cooldown: BTreeMap<String, Duration>,
    /// Cooldown across all cameras (zero: off).
    pub global_cooldown: Duration,
}

impl Policy {
    /// Builds the policy; `topic_prefix` places channels without a topic.
    pub fn from_config(config: &RoutingConfig, topic_prefix: &str) -> Self {
        let secs = |s: u64| Duration::seconds(s.min(i64::MAX as u64) as i64);
        Self {
            channels: config
                .channels
                .iter()
                .map(|c| Channel {
                    name: c.name.clone(),
                    topic: c
                        .topic
                        .clone()
                        .unwrap_or_else(|| format!("{topic_prefix}/alerts/{}", c.name)),
                    min_urgency: c.min_urgency,
                })
                .collect(),
            modes: config
                .modes
                .iter()
                .map(|(name, mode)| (name.clone(), mode.min_urgency))
                .collect(),
            quiet_hours: config
                .quiet_hours
                .iter()
                .map(QuietHours::from_config)
                .collect(),
            cooldown: secs(config.cooldown_secs),
            camera_cooldown: config
                .camera_cooldown_secs
                .iter()
                .map(|(camera, s)| (camera.clone(), secs(*s)))
                .collect(),
            global_cooldown: secs(config.global_cooldown_secs),
        }
    }

    /// Mode names, for Home Assistant's select.
    pub fn mode_names(&self) -> Vec<String> {
        self.modes.keys().cloned().collect()
    }

    fn cooldown_for(&self, camera: &str) -> Duration {
        self.camera_cooldown
            .get(camera)
            .copied()
            .unwrap_or(self.cooldown)
    }
}

/// What changes at run time: set from Home Assistant or the API, and
/// updated by [`RoutingState::record`] after each delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutingState {
    /// Active mode (a key of [`Policy::modes`]).
    pub mode: String,
    /// The notifications switch.
    pub notifications: bool,
    /// No alerts below critical until then.
    pub suspended_until: Option<DateTime<FixedOffset>>,
    /// Last delivered new alert per camera.
    pub last_alert: BTreeMap<String, DateTime<FixedOffset>>,
    /// Last delivered new alert from any camera.
    pub last_any: Option<DateTime<FixedOffset>>,
}

impl RoutingState {
    /// Start state: `mode`, notifications on, nothing delivered yet.
    pub fn new(mode: impl Into<String>) -> Self {
        Self {
            mode: mode.into(),
            notifications: true,
            suspended_until: None,
            last_alert: BTreeMap::new(),
            last_any: None,
        }
    }

    /// Notes a delivery so cooldowns start; updates and suppressed alerts
    /// start nothing.
    pub fn record(
        &mut self,
        candidate: &AlertCandidate<'_>,
        decision: &Decision,
        now: DateTime<FixedOffset>,
    ) {
        if candidate.update_of.is_none() && !decision.deliver_to.is_empty() {
            self.last_alert.insert(candidate.camera.to_string(), now);
            self.last_any = Some(now);
        }
    }
}

/// The alert being routed.
#[derive(Clone, Debug)]
pub struct AlertCandidate<'a> {
    /// Camera name.
    pub camera: &'a str,
    /// Its urgency.
    pub urgency: Urgency,
    /// For an update: the channels the first stage went to.
    pub update_of: Option<&'a [String]>,
}

/// Why an alert reached no channel (or, for an update, no new one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Suppression {
    /// The notifications switch is off.
    NotificationsOff,
    /// Suspended until a time.
    Suspended {
        /// End of the suspension.
        until: DateTime<FixedOffset>,
    },
    /// Quiet hours cover this camera now.
    QuietHours,
    /// The active mode wants more urgency.
    Mode {
        /// Active mode.
        mode: String,
        /// Its minimum.
        min_urgency: Urgency,
    },
    /// The camera alerted recently.
    CameraCooldown {
        /// Seconds until the cooldown ends.
        remaining_secs: i64,
    },
    /// Some camera alerted recently.
    GlobalCooldown {
        /// Seconds until the cooldown ends.
        remaining_secs: i64,
    },
    /// No channel takes alerts this low.
    BelowChannelMinimum,
}

impl fmt::Display for Suppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suppression::NotificationsOff => f.write_str("notifications are off"),
            Suppression::Suspended { until } => {
                write!(f, "suspended until {}", until.format("%H:%M"))
            }
            Suppression::QuietHours => f.write_str("quiet hours"),
            Suppression::Mode { mode, min_urgency } => {
                write!(f, "mode {mode} passes {} and above", min_urgency.as_str())
            }
            Suppression::CameraCooldown { remaining_secs } => {
                write!(f, "camera cooldown ({remaining_secs} s left)")
            }
            Suppression::GlobalCooldown { remaining_secs } => {
                write!(f, "global cooldown ({remaining_secs} s left)")
            }
            Suppression::BelowChannelMinimum => f.write_str("below every channel's minimum"),
        }
    }
}

/// Where an alert goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Channel names, in config order.
    pub deliver_to: Vec<String>,
    /// Why it went nowhere (for an update: why it went no further than its
    /// first stage).
    pub suppressed: Option<Suppression>,
}

/// Decides where `candidate` goes at local time `now`.
pub fn decide(
    policy: &Policy,
    state: &RoutingState,
    candidate: &AlertCandidate<'_>,
    now: DateTime<FixedOffset>,
) -> Decision {
    let previous: &[String] = candidate.update_of.unwrap_or(&[]);
    let suppressed = hold_back(policy, state, candidate, now);
    let deliver_to: Vec<String> = policy
        .channels
        .iter()
        .filter(|c| {
            previous.contains(&c.name)
                || (suppressed.is_none() && candidate.urgency >= c.min_urgency)
        })
        .map(|c| c.name.clone())
        .collect();
    let suppressed = suppressed.or_else(|| {
        let reached_new = policy
            .channels
            .iter()
            .any(|c| candidate.urgency >= c.min_urgency);
        (!reached_new).then_some(Suppression::BelowChannelMinimum)
    });
    Decision {
        deliver_to,
        suppressed,
    }
}

fn hold_back(
    policy: &Policy,
    state: &RoutingState,
    candidate: &AlertCandidate<'_>,
    now: DateTime<FixedOffset>,
) -> Option<Suppression> {
    if candidate.urgency >= Urgency::Critical {
        return None;
    }
    if !state.notifications {
        return Some(Suppression::NotificationsOff);
    }
    if let Some(until) = state.suspended_until {
        if now < until {
            return Some(Suppression::Suspended { until });
        }
    }
    if policy
        .quiet_hours
        .iter()
        .any(|q| q.covers(candidate.camera, &now))
    {
        return Some(Suppression::QuietHours);
    }
    let mode_min = policy
        .modes
        .get(&state.mode)
        .copied()
        .unwrap_or(Urgency::Normal);
    if candidate.urgency < mode_min {
        return Some(Suppression::Mode {
            mode: state.mode.clone(),
            min_urgency: mode_min,
        });
    }
    if candidate.update_of.is_some() {
        return None;
    }
    if let Some(last) = state.last_alert.get(candidate.camera) {
        let ends = *last + policy.cooldown_for(candidate.camera);
        if now < ends {
            return Some(Suppression::CameraCooldown {
                remaining_secs: remaining(ends, now),
            });
        }
    }
    if let Some(last) = state.last_any {
        let ends = last + policy.global_cooldown;
        if now < ends {
            return Some(Suppression::GlobalCooldown {
                remaining_secs: remaining(ends, now),
            });
        }
    }
    None
}

/// Whole seconds left, rounded up so "0 s left" never shows while held.
fn remaining(ends: DateTime<FixedOffset>, now: DateTime<FixedOffset>) -> i64 {
    let ms = (ends - now).num_milliseconds();
    (ms + 999) / 1000
}

/// Whether `time` is inside `[start, end)`, wrapping past midnight when
/// `end < start`.
pub fn within(time: NaiveTime, start: ClockTime, end: ClockTime) -> bool {
    let (start, end) = (start.0, end.0);
    if start <= end {
        time >= start && time < end
    } else {
        time >= start || time < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelConfig, Day, ModeConfig, QuietHoursConfig};
    use chrono::TimeZone;
    use Urgency::*;

    /// Local time on a fixed week: 2026-11-16 is a Monday.
    fn at(day: u32, hour: u32, minute: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 16 + day, hour, minute, 0)
            .unwrap()
    }
    const MON: u32 = 0;
    const FRI: u32 = 4;
    const SAT: u32 = 5;
    const SUN: u32 = 6;

    fn policy() -> Policy {
        let config = RoutingConfig {
            channels: vec![
                ChannelConfig {
                    name: "log".into(),
                    min_urgency: Normal,
                    topic: None,
                },
                ChannelConfig {
                    name: "phone".into(),
                    min_urgency: Monitor,
                    topic: None,
                },
                ChannelConfig {
                    name: "siren".into(),
                    min_urgency: Critical,
                    topic: Some("house/siren".into()),
                },
            ],
            modes: [("home", Suspicious), ("away", Normal), ("night", Monitor)]
                .into_iter()
                .map(|(n, u)| (n.to_string(), ModeConfig { min_urgency: u }))
                .collect(),
            initial_mode: "away".into(),
            quiet_hours: vec![
                // Fridays and Saturdays 23:00 to 07:00 next morning, porch only.
                QuietHoursConfig {
                    cameras: vec!["porch".into()],
                    days: vec![Day::Fri, Day::Sat],
                    start: ClockTime::hm(23, 0),
                    end: ClockTime::hm(7, 0),
                },
                // Every day over lunch, every camera.
                QuietHoursConfig {
                    cameras: vec![],
                    days: vec![],
                    start: ClockTime::hm(12, 0),
                    end: ClockTime::hm(13, 0),
                },
            ],
            cooldown_secs: 60,
            camera_cooldown_secs: [("garden".to_string(), 600)].into_iter().collect(),
            global_cooldown_secs: 10,
        };
        Policy::from_config(&config, "streamer")
    }

    struct Row {
        name: &'static str,
        camera: &'static str,
        urgency: Urgency,
        now: DateTime<FixedOffset>,
        state: fn(&mut RoutingState),
        update_of: Option<&'static [&'static str]>,
        deliver_to: &'static [&'static str],
        suppressed: Option<Suppression>,
    }

    fn nothing(_: &mut RoutingState) {}

    #[test]
    fn routing_table() {
        let rows = [
            Row {
                name: "monitor goes to log and phone",
                camera: "porch",
                urgency: Monitor,
                now: at(MON, 10, 0),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "normal reaches only the log",
                camera: "porch",
                urgency: Normal,
                now: at(MON, 10, 0),
                state: nothing,
                update_of: None,
                deliver_to: &["log"],
                suppressed: None,
            },
            Row {
                name: "critical reaches every channel",
                camera: "porch",
                urgency: Critical,
                now: at(MON, 10, 0),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone", "siren"],
                suppressed: None,
            },
            Row {
                name: "quiet hours on Friday evening hold monitor back",
                camera: "porch",
                urgency: Monitor,
                now: at(FRI, 23, 30),
                state: nothing,
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::QuietHours),
            },
            Row {
                name: "quiet hours cross midnight into Saturday morning",
                camera: "porch",
                urgency: Suspicious,
                now: at(SAT, 6, 59),
                state: nothing,
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::QuietHours),
            },
            Row {
                name: "Saturday's window reaches into Sunday morning",
                camera: "porch",
                urgency: Monitor,
                now: at(SUN, 2, 0),
                state: nothing,
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::QuietHours),
            },
            Row {
                name: "quiet hours end at their end time",
                camera: "porch",
                urgency: Monitor,
                now: at(SAT, 7, 0),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "Thursday night is not a quiet night",
                camera: "porch",
                urgency: Monitor,
                now: at(FRI, 2, 0),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "quiet hours of one camera do not touch another",
                camera: "garden",
                urgency: Monitor,
                now: at(FRI, 23, 30),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "critical passes quiet hours",
                camera: "porch",
                urgency: Critical,
                now: at(FRI, 23, 30),
                state: nothing,
                update_of: None,
                deliver_to: &["log", "phone", "siren"],
                suppressed: None,
            },
            Row {
                name: "every-day lunch window covers all cameras",
                camera: "garden",
                urgency: Suspicious,
                now: at(MON, 12, 30),
                state: nothing,
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::QuietHours),
            },
            Row {
                name: "camera cooldown holds a second alert",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| {
                    s.last_alert
                        .insert("porch".into(), at(MON, 9, 59) + Duration::seconds(30));
                },
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::CameraCooldown { remaining_secs: 30 }),
            },
            Row {
                name: "camera cooldown has ended",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| {
                    s.last_alert.insert("porch".into(), at(MON, 9, 59));
                },
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "per-camera cooldown replaces the default",
                camera: "garden",
                urgency: Monitor,
                now: at(MON, 10, 0),
                state: |s| {
                    s.last_alert.insert("garden".into(), at(MON, 9, 55));
                },
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::CameraCooldown {
                    remaining_secs: 300,
                }),
            },
            Row {
                name: "global cooldown holds other cameras briefly",
                camera: "garden",
                urgency: Monitor,
                now: at(MON, 10, 0),
                state: |s| s.last_any = Some(at(MON, 10, 0) - Duration::seconds(4)),
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::GlobalCooldown { remaining_secs: 6 }),
            },
            Row {
                name: "critical passes cooldowns",
                camera: "porch",
                urgency: Critical,
                now: at(MON, 10, 0),
                state: |s| {
                    s.last_alert.insert("porch".into(), at(MON, 10, 0));
                    s.last_any = Some(at(MON, 10, 0));
                },
                update_of: None,
                deliver_to: &["log", "phone", "siren"],
                suppressed: None,
            },
            Row {
                name: "an update is not held by the cooldown its first stage started",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| {
                    s.last_alert.insert("porch".into(), at(MON, 10, 0));
                    s.last_any = Some(at(MON, 10, 0));
                },
                update_of: Some(&["log", "phone"]),
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "a downgraded update still reaches the first stage's channels",
                camera: "porch",
                urgency: Normal,
                now: at(MON, 10, 0),
                state: nothing,
                update_of: Some(&["log", "phone"]),
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "an update raised to critical in quiet hours goes out",
                camera: "porch",
                urgency: Critical,
                now: at(FRI, 23, 30),
                state: nothing,
                update_of: Some(&[]),
                deliver_to: &["log", "phone", "siren"],
                suppressed: None,
            },
            Row {
                name: "an update held by quiet hours reaches no new channel",
                camera: "porch",
                urgency: Suspicious,
                now: at(FRI, 23, 30),
                state: nothing,
                update_of: Some(&["log"]),
                deliver_to: &["log"],
                suppressed: Some(Suppression::QuietHours),
            },
            Row {
                name: "notifications off hold everything below critical",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| s.notifications = false,
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::NotificationsOff),
            },
            Row {
                name: "critical passes the notifications switch",
                camera: "porch",
                urgency: Critical,
                now: at(MON, 10, 0),
                state: |s| s.notifications = false,
                update_of: None,
                deliver_to: &["log", "phone", "siren"],
                suppressed: None,
            },
            Row {
                name: "suspension holds alerts until it ends",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| s.suspended_until = Some(at(MON, 10, 30)),
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::Suspended {
                    until: at(MON, 10, 30),
                }),
            },
            Row {
                name: "an ended suspension holds nothing",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 31),
                state: |s| s.suspended_until = Some(at(MON, 10, 30)),
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "home mode passes suspicious and above only",
                camera: "porch",
                urgency: Monitor,
                now: at(MON, 10, 0),
                state: |s| s.mode = "home".into(),
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::Mode {
                    mode: "home".into(),
                    min_urgency: Suspicious,
                }),
            },
            Row {
                name: "home mode passes suspicious",
                camera: "porch",
                urgency: Suspicious,
                now: at(MON, 10, 0),
                state: |s| s.mode = "home".into(),
                update_of: None,
                deliver_to: &["log", "phone"],
                suppressed: None,
            },
            Row {
                name: "night mode holds normal",
                camera: "porch",
                urgency: Normal,
                now: at(MON, 10, 0),
                state: |s| s.mode = "night".into(),
                update_of: None,
                deliver_to: &[],
                suppressed: Some(Suppression::Mode {
                    mode: "night".into(),
                    min_urgency: Monitor,
                }),
            },
        ];
        let policy = policy();
        for row in rows {
            let mut state = RoutingState::new("away");
            (row.state)(&mut state);
            let previous: Option<Vec<String>> = row
                .update_of
                .map(|p| p.iter().map(|s| s.to_string()).collect());
            let candidate = AlertCandidate {
                camera: row.camera,
                urgency: row.urgency,
                update_of: previous.as_deref(),
            };
            let decision = decide(&policy, &state, &candidate, row.now);
            assert_eq!(decision.deliver_to, row.deliver_to, "{}", row.name);
            assert_eq!(decision.suppressed, row.suppressed, "{}", row.name);
        }
    }

    #[test]
    fn only_delivered_new_alerts_start_cooldowns() {
        let policy = policy();
        let mut state = RoutingState::new("away");
        let now = at(MON, 10, 0);
        let alert = AlertCandidate {
            camera: "porch",
            urgency: Monitor,
            update_of: None,
        };
        let decision = decide(&policy, &state, &alert, now);
        state.record(&alert, &decision, now);
        assert_eq!(state.last_alert.get("porch"), Some(&now));

        let mut quiet = RoutingState::new("home");
        let held = decide(&policy, &quiet, &alert, now);
        quiet.record(&alert, &held, now);
        assert!(quiet.last_alert.is_empty());
    }

    #[test]
    fn channels_get_topics() {
        let policy = policy();
        assert_eq!(policy.channels[0].topic, "streamer/alerts/log");
        assert_eq!(policy.channels[2].topic, "house/siren");
    }

    #[test]
    fn windows_wrap_midnight() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        let (night, morning) = (ClockTime::hm(22, 0), ClockTime::hm(6, 0));
        assert!(within(t(23, 0), night, morning));
        assert!(within(t(5, 59), night, morning));
        assert!(!within(t(6, 0), night, morning));
        assert!(!within(t(12, 0), night, morning));
        assert!(within(t(12, 0), ClockTime::hm(9, 0), ClockTime::hm(17, 0)));
    }
}
