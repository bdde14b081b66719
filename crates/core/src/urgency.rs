use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much an event matters, lowest first. Ordered, so policies can say
/// "at least `Suspicious`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Urgency {
    /// Expected activity: residents, deliveries in daytime, passers-by.
    Normal,
    /// Worth a look later: unknown person lingering, late visitor.
    Monitor,
    /// Someone should check now: trying doors, masked at night, taking parcels.
    Suspicious,
    /// Act now: break-in, weapon, fire, someone hurt.
    Critical,
}

impl Urgency {
    pub const ALL: [Urgency; 4] = [
        Urgency::Normal,
        Urgency::Monitor,
        Urgency::Suspicious,
        Urgency::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Normal => "normal",
            Urgency::Monitor => "monitor",
            Urgency::Suspicious => "suspicious",
            Urgency::Critical => "critical",
        }
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Urgency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Urgency::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| {
                format!("unknown urgency {s:?}: use normal, monitor, suspicious or critical")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgencies_order_and_round_trip() {
        assert!(Urgency::Critical > Urgency::Suspicious);
        assert!(Urgency::Monitor > Urgency::Normal);
        for u in Urgency::ALL {
            assert_eq!(u.as_str().parse::<Urgency>().unwrap(), u);
            assert_eq!(serde_json::to_string(&u).unwrap(), format!("\"{u}\""));
        }
        assert!("urgent".parse::<Urgency>().is_err());
    }
}
