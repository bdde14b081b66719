//! The rule-based verdict: urgency and message from the detector's labels
//! and the time of day alone. Stage one uses it (no model has looked yet),
//! and stage two falls back to it when the model is late or talks nonsense.
//!
//! | seen                                   | urgency    |
//! |----------------------------------------|------------|
//! | a person with a weapon-like object     | critical   |
//! | a person at night                      | monitor    |
//! | a person by day                        | normal     |
//! | anything else (vehicles, animals)      | normal     |

use std::collections::BTreeMap;

use chrono::NaiveTime;
use streamer_core::Urgency;

use crate::config::ClockTime;
use crate::policy::within;

/// The detector label of a person.
pub const PERSON_LABEL: &str = "person";

/// COCO labels that, next to a person, are treated as a weapon.
pub const WEAPON_LABELS: &[&str] = &["knife", "baseball bat"];

/// A verdict reached without a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleVerdict {
    /// Urgency from the table above.
    pub urgency: Urgency,
    /// One sentence for the owner's phone.
    pub message: String,
    /// Whether the owner should be told (monitor and above).
    pub should_notify: bool,
}

/// Night as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct NightHours {
    /// Start of night.
    pub start: ClockTime,
    /// End of night (next morning when before `start`).
    pub end: ClockTime,
}

/// Judges a visit from its labels and local time.
pub fn rule_verdict(
    camera: &str,
    labels: &[String],
    local_time: NaiveTime,
    night: NightHours,
) -> RuleVerdict {
    let person = labels.iter().any(|l| l == PERSON_LABEL);
    let weapon = labels.iter().find(|l| WEAPON_LABELS.contains(&l.as_str()));
    let at_night = within(local_time, night.start, night.end);
    let clock = local_time.format("%H:%M");
    let (urgency, message) = match (person, weapon, at_night) {
        (true, Some(weapon), _) => (
            Urgency::Critical,
            format!("Person with a {weapon} at {camera} at {clock}."),
        ),
        (true, None, true) => (
            Urgency::Monitor,
            format!("Person at {camera} at night ({clock})."),
        ),
        (true, None, false) => (Urgency::Normal, format!("Person at {camera} at {clock}.")),
        (false, _, _) => (
            Urgency::Normal,
            match summary(labels) {
                Some(seen) => format!("{seen} at {camera} at {clock}."),
                None => format!("Activity at {camera} at {clock}."),
            },
        ),
    };
    RuleVerdict {
        should_notify: urgency >= Urgency::Monitor,
        urgency,
        message,
    }
}

/// "Car and 2 dogs", capitalised; `None` when there are no labels.
fn summary(labels: &[String]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in labels {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(label, n)| {
            if n == 1 {
                label.to_string()
            } else {
                format!("{n} {label}s")
            }
        })
        .collect();
    let text = match parts.len() {
        0 => return None,
        1 => parts[0].clone(),
        n => format!("{} and {}", parts[..n - 1].join(", "), parts[n - 1]),
    };
    let mut chars = text.chars();
    let first = chars.next()?;
    Some(first.to_uppercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIGHT: NightHours = NightHours {
        start: ClockTime(NaiveTime::from_hms_opt(22, 0, 0).unwrap()),
        end: ClockTime(NaiveTime::from_hms_opt(6, 0, 0).unwrap()),
    };

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rule_table() {
        let rows: &[(&[&str], NaiveTime, Urgency, &str)] = &[
            (
                &["person"],
                t(14, 5),
                Urgency::Normal,
                "Person at porch at 14:05.",
            ),
            (
                &["person"],
                t(23, 41),
                Urgency::Monitor,
                "Person at porch at night (23:41).",
            ),
            (
                &["person"],
                t(5, 59),
                Urgency::Monitor,
                "Person at porch at night (05:59).",
            ),
            (
                &["person", "knife"],
                t(14, 5),
                Urgency::Critical,
                "Person with a knife at porch at 14:05.",
            ),
            (
                &["baseball bat", "person"],
                t(1, 0),
                Urgency::Critical,
                "Person with a baseball bat at porch at 01:00.",
            ),
            (
                &["knife"],
                t(1, 0),
                Urgency::Normal,
                "Knife at porch at 01:00.",
            ),
            (
                &["car", "dog", "dog"],
                t(23, 0),
                Urgency::Normal,
                "Car and 2 dogs at porch at 23:00.",
            ),
            (
                &[],
                t(12, 0),
                Urgency::Normal,
                "Activity at porch at 12:00.",
            ),
        ];
        for (seen, time, urgency, message) in rows {
            let verdict = rule_verdict("porch", &labels(seen), *time, NIGHT);
            assert_eq!(verdict.urgency, *urgency, "{seen:?} at {time}");
            assert_eq!(verdict.message, *message);
            assert_eq!(verdict.should_notify, *urgency >= Urgency::Monitor);
        }
    }
}
