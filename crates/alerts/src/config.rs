//! What the user writes: the `[alerts]` section (MQTT broker, routing
//! policy, triage deadline, per-camera notes). Parsed strictly: an unknown
//! key is an error that names it, with its path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{NaiveTime, Weekday};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use streamer_core::Urgency;

use crate::AlertsError;

/// Everything the alerts stage reads from the config file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Directory of the outbox journal (alerts waiting for the broker's
    /// acknowledgement survive restarts there).
    #[serde(default = "default_outbox_dir")]
    pub outbox_dir: PathBuf,
    /// The MQTT broker and topic layout.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// Who gets which alert, when.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// Stage two: describing and triaging with a model.
    #[serde(default)]
    pub triage: TriageConfig,
    /// Cameras by name. Each gets a Home Assistant device; cameras that
    /// appear only at run time get one on their first alert.
    #[serde(default)]
    pub cameras: BTreeMap<String, CameraConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            outbox_dir: default_outbox_dir(),
            mqtt: MqttConfig::default(),
            routing: RoutingConfig::default(),
            triage: TriageConfig::default(),
            cameras: BTreeMap::new(),
        }
    }
}

/// The MQTT broker connection and topic layout.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker port (1883 plain, 8883 usually TLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Connect with TLS (needs streamer built with the `tls` feature).
    #[serde(default)]
    pub tls: bool,
    /// PEM file of the CA that signed the broker's certificate (with `tls`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Name of the environment variable holding the user name.
    #[serde(default)]
    pub username_env: Option<String>,
    /// Name of the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// First level of every streamer topic.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Home Assistant's discovery prefix.
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Home Assistant announces `online` here when it (re)starts; discovery
    /// and states are then published again. Default `<discovery_prefix>/status`.
    #[serde(default)]
    pub ha_status_topic: Option<String>,
    /// MQTT client id; two streamers on one broker need different ones.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Keep-alive interval.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// First wait before reconnecting; doubles up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest wait between reconnection attempts.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Largest message (a snapshot JPEG) sent or accepted, in bytes.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            tls: false,
            ca_file: None,
            username_env: None,
            password_env: None,
            topic_prefix: default_topic_prefix(),
            discovery_prefix: default_discovery_prefix(),
            ha_status_topic: None,
            client_id: default_client_id(),
            keep_alive_secs: default_keep_alive_secs(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            max_packet_bytes: default_max_packet_bytes(),
        }
    }
}

/// The routing policy: channels, modes, quiet hours, cooldowns.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Where alerts go. Each channel is an MQTT topic consumers subscribe
    /// to (`<prefix>/alerts/<name>` unless `topic` is given).
    #[serde(default = "default_channels")]
    pub channels: Vec<ChannelConfig>,
    /// Modes selectable at run time (Home Assistant's mode select), each
    /// with the least urgency that passes while it is active.
    #[serde(default = "default_modes")]
    pub modes: BTreeMap<String, ModeConfig>,
    /// The mode at start.
    #[serde(default = "default_mode")]
    pub initial_mode: String,
    /// Times when only critical alerts pass.
    #[serde(default)]
    pub quiet_hours: Vec<QuietHoursConfig>,
    /// After an alert from a camera, further new alerts from it are held
    /// back this long (critical ones pass).
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u64,
    /// Per-camera cooldowns that replace `cooldown_secs`.
    #[serde(default)]
    pub camera_cooldown_secs: BTreeMap<String, u64>,
    /// After any alert, new alerts from every camera are held back this
    /// long (critical ones pass). 0 turns it off.
    #[serde(default)]
    pub global_cooldown_secs: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            channels: default_channels(),
            modes: default_modes(),
            initial_mode: default_mode(),
            quiet_hours: Vec::new(),
            cooldown_secs: default_cooldown_secs(),
            camera_cooldown_secs: BTreeMap::new(),
            global_cooldown_secs: 0,
        }
    }
}

/// One delivery channel.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel name (a topic level: no `/`, `+`, `#`).
    pub name: String,
    /// Least urgency sent to this channel.
    #[serde(default = "default_channel_urgency")]
    pub min_urgency: Urgency,
    /// Full topic, replacing `<prefix>/alerts/<name>`.
    #[serde(default)]
    pub topic: Option<String>,
}

/// One routing mode.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModeConfig {
    /// Least urgency that passes while this mode is active.
    pub min_urgency: Urgency,
}

/// A weekly quiet-hours window. A window whose end is before its start
/// runs past midnight into the next day; `days` names the day it starts.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursConfig {
    /// Cameras it applies to; empty means every camera.
    #[serde(default)]
    pub cameras: Vec<String>,
    /// Days the window starts on (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<Day>,
    /// Local start time, `HH:MM`.
    pub start: ClockTime,
    /// Local end time, `HH:MM` (exclusive).
    pub end: ClockTime,
}

/// Stage two: describe the frame, then triage it, within a deadline.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriageConfig {
    /// Longest time describe + triage may take; after it the rule-based
    /// verdict is sent, marked as such.
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Stage twos allowed waiting for or on the model at once (one model
    /// call runs at a time); a visit that would exceed it gets the
    /// rule-based verdict at once, so a slow model cannot pile up work.
    /// Queued work whose deadline passed or whose visit ended is dropped
    /// before it reaches the model.
    #[serde(default = "default_max_model_jobs")]
    pub max_model_jobs: usize,
    /// Start of night for the rule-based urgency, `HH:MM` local.
    #[serde(default = "default_night_start")]
    pub night_start: ClockTime,
    /// End of night, `HH:MM` local.
    #[serde(default = "default_night_end")]
    pub night_end: ClockTime,
}

impl Default for TriageConfig {
    fn default() -> Self {
        Self {
            deadline_ms: default_deadline_ms(),
            max_model_jobs: default_max_model_jobs(),
            night_start: default_night_start(),
            night_end: default_night_end(),
        }
    }
}

/// Per-camera settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// What the owner tells the triage model about this camera ("faces the
    /// street; parcels arrive 9-17 on weekdays").
    #[serde(default)]
    pub notes: String,
    /// Name shown in Home Assistant (default: the camera name).
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A day of the week as written in the config (`mon` … `sun`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    /// The chrono weekday.
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

/// A local time of day written `HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(pub NaiveTime);

impl ClockTime {
    /// `hour:minute`; panics on an impossible time (a bug in the caller).
    pub fn hm(hour: u32, minute: u32) -> Self {
        Self(NaiveTime::from_hms_opt(hour, minute, 0).expect("hour < 24 and minute < 60"))
    }
}

impl<'de> Deserialize<'de> for ClockTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .map(ClockTime)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not HH:MM ({e})")))
    }
}

impl Serialize for ClockTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.format("%H:%M").to_string())
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%H:%M"))
    }
}

/// A value read from the environment that must not be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl AlertsConfig {
    /// Parses the alerts section from TOML; errors name the key path
    /// (`routing.channels[0].min_urgency: unknown variant …`).
    pub fn from_toml(text: &str) -> Result<Self, AlertsError> {
        let deserializer = toml::Deserializer::new(text);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            AlertsError::Config(vec![format!("{path}: {}", e.into_inner().message())])
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot, reporting every problem at once, each
    /// prefixed with its key path.
    pub fn validate(&self) -> Result<(), AlertsError> {
        let mut problems = Vec::new();
        let m = &self.mqtt;
        for (key, value) in [
            ("mqtt.topic_prefix", &m.topic_prefix),
            ("mqtt.discovery_prefix", &m.discovery_prefix),
        ] {
            if value.is_empty() || value.contains(['+', '#']) || value.ends_with('/') {
                problems.push(format!(
                    "{key}: `{value}` must be a non-empty topic without `+`, `#` or a trailing `/`"
                ));
            }
        }
        if m.client_id.is_empty() {
            problems.push("mqtt.client_id: must not be empty".into());
        }
        if m.tls && !cfg!(feature = "tls") {
            problems.push(
                "mqtt.tls: this streamer was built without TLS: rebuild with `--features streamer-alerts/tls`"
                    .into(),
            );
        }
        if m.reconnect_min_ms == 0 || m.reconnect_min_ms > m.reconnect_max_ms {
            problems.push(format!(
                "mqtt.reconnect_min_ms: {} must be above 0 and at most reconnect_max_ms ({})",
                m.reconnect_min_ms, m.reconnect_max_ms
            ));
        }
        let r = &self.routing;
        let mut seen = Vec::new();
        for (i, channel) in r.channels.iter().enumerate() {
            if !is_topic_level(&channel.name) {
                problems.push(format!(
                    "routing.channels[{i}].name: `{}` must be a non-empty topic level without `/`, `+`, `#`",
                    channel.name
                ));
            }
            if seen.contains(&&channel.name) {
                problems.push(format!(
                    "routing.channels[{i}].name: `{}` is used twice",
                    channel.name
                ));
            }
            seen.push(&channel.name);
        }
        if r.modes.is_empty() {
            problems.push("routing.modes: at least one mode is needed".into());
        } else if !r.modes.contains_key(&r.initial_mode) {
            problems.push(format!(
                "routing.initial_mode: `{}` is not one of the modes ({})",
                r.initial_mode,
                r.modes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        for (i, window) in r.quiet_hours.iter().enumerate() {
            if window.start == window.end {
                problems.push(format!(
                    "routing.quiet_hours[{i}]: start and end are both {}; give a window",
                    window.start
                ));
            }
        }
        if self.triage.max_model_jobs == 0 {
            problems.push("triage.max_model_jobs: must be at least 1".into());
        }
        for name in self.cameras.keys() {
            if camera_slug(name).is_empty() {
                problems.push(format!("cameras.{name}: the name needs a letter or digit"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AlertsError::Config(problems))
        }
    }

    /// The status topic Home Assistant announces itself on.
    pub fn ha_status_topic(&self) -> String {
        self.mqtt
            .ha_status_topic
            .clone()
            .unwrap_or_else(|| format!("{}/status", self.mqtt.discovery_prefix))
    }
}

fn is_topic_level(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '+', '#'])
}

/// A camera name as a topic level and id: lowercase ASCII letters, digits
/// and `_`.
pub fn camera_slug(camera: &str) -> String {
    let mut slug = String::with_capacity(camera.len());
    for c in camera.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('_') {
            slug.push('_');
        }
    }
    slug.trim_matches('_').to_string()
}

fn default_outbox_dir() -> PathBuf {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(state).join("streamer/outbox");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/streamer/outbox"),
        None => PathBuf::from("streamer-outbox"),
    }
}
fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_topic_prefix() -> String {
    "streamer".into()
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}
fn default_client_id() -> String {
    "streamer".into()
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_reconnect_min_ms() -> u64 {
    200
}
fn default_reconnect_max_ms() -> u64 {
    10_000
}
fn default_max_packet_bytes() -> usize {
    4 << 20
}
fn default_channels() -> Vec<ChannelConfig> {
    vec![ChannelConfig {
        name: "phone".into(),
        min_urgency: Urgency::Monitor,
        topic: None,
    }]
}
fn default_channel_urgency() -> Urgency {
    Urgency::Normal
}
fn default_modes() -> BTreeMap<String, ModeConfig> {
    [
        ("home", Urgency::Suspicious),
        ("away", Urgency::Normal),
        ("night", Urgency::Monitor),
    ]
    .into_iter()
    .map(|(name, min_urgency)| (name.to_string(), ModeConfig { min_urgency }))
    .collect()
}
fn default_mode() -> String {
    "away".into()
}
fn default_cooldown_secs() -> u64 {
    60
}
fn default_deadline_ms() -> u64 {
    30_000
}
fn default_max_model_jobs() -> usize {
    2
}
fn default_night_start() -> ClockTime {
    ClockTime::hm(22, 0)
}
fn default_night_end() -> ClockTime {
    ClockTime::hm(6, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        AlertsConfig::default().validate().unwrap();
        let parsed = AlertsConfig::from_toml("").unwrap();
        assert_eq!(parsed.mqtt.topic_prefix, "streamer");
        assert_eq!(parsed.ha_status_topic(), "homeassistant/status");
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let err = AlertsConfig::from_toml("[mqtt]\nhost = \"b\"\nprot = 1883\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt"), "{err}");
        assert!(err.contains("prot"), "{err}");

        let err = AlertsConfig::from_toml(
            "[[routing.channels]]\nname = \"phone\"\nmin_urgency = \"urgent\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("routing.channels[0].min_urgency"), "{err}");
    }

    #[test]
    fn a_full_config_parses() {
        let config = AlertsConfig::from_toml(
            r#"
outbox_dir = "/tmp/outbox"
[mqtt]
host = "broker.lan"
port = 1884
username_env = "MQTT_USER"
password_env = "MQTT_PASS"
topic_prefix = "home/streamer"
[routing]
initial_mode = "home"
cooldown_secs = 30
camera_cooldown_secs = { porch = 120 }
[[routing.channels]]
name = "phone"
min_urgency = "suspicious"
[[routing.channels]]
name = "log"
[[routing.quiet_hours]]
cameras = ["porch"]
days = ["fri", "sat"]
start = "23:00"
end = "07:30"
[triage]
deadline_ms = 5000
[cameras.porch]
notes = "faces the street"
"#,
        )
        .unwrap();
        assert_eq!(config.routing.channels[1].min_urgency, Urgency::Normal);
        assert_eq!(config.routing.quiet_hours[0].end, ClockTime::hm(7, 30));
        assert_eq!(config.routing.quiet_hours[0].days, [Day::Fri, Day::Sat]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut config = AlertsConfig::default();
        config.mqtt.topic_prefix = "a/#".into();
        config.routing.initial_mode = "holiday".into();
        config
            .routing
            .channels
            .push(config.routing.channels[0].clone());
        let AlertsError::Config(problems) = config.validate().unwrap_err() else {
            panic!("expected a config error");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("mqtt.topic_prefix"));
        assert!(problems
            .iter()
            .any(|p| p.starts_with("routing.initial_mode")));
    }

    #[test]
    fn bad_times_say_what_was_expected() {
        let err =
            AlertsConfig::from_toml("[[routing.quiet_hours]]\nstart = \"10pm\"\nend = \"07:00\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("routing.quiet_hours[0].start"), "{err}");
        assert!(err.contains("HH:MM"), "{err}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn camera_names_become_slugs() {
        assert_eq!(camera_slug("Front Door"), "front_door");
        assert_eq!(camera_slug("  back-yard #2 "), "back_yard_2");
    }
}
