//! Home Assistant MQTT discovery, device based: one retained message per
//! device on `<discovery_prefix>/device/<id>/config` with `dev` (the
//! device), `o` (origin: streamer) and `cmps` (its entities, each with `p`,
//! its platform). Entity ids are suggested with `default_entity_id`
//! (`event.porch_alert`), which replaced `object_id`.
//!
//! * one device per camera: an event entity (`event_types`: the four
//!   urgencies), an image entity (the latest alert snapshot), binary sensors
//!   for a person being present (occupancy) and the camera being connected
//!   (connectivity), and diagnostic sensors (fps, dropped frames,
//!   reconnects, frames without motion, last model latency);
//! * one hub device: a mode select, a notifications switch and a suspend
//!   number that change routing at run time.
//!
//! Every entity uses streamer's availability topic. Its value template
//! maps everything but `online` (the last will's `offline`, a clean exit's
//! `stopped`) to unavailable. A camera's entities also need the camera's
//! own availability topic to read `online` (`avty_mode: all`).

use serde_json::{json, Map, Value};
use streamer_core::Urgency;

use crate::alert::{Topics, OFFLINE, ONLINE};
use crate::config::camera_slug;

/// Device id of the hub.
pub const HUB_DEVICE_ID: &str = "streamer_hub";

/// Longest suspension offered by the hub's number entity, in minutes.
pub const MAX_SUSPEND_MINUTES: u32 = 24 * 60;

/// Device id of a camera.
pub fn camera_device_id(camera: &str) -> String {
    format!("streamer_{}", camera_slug(camera))
}

fn origin() -> Value {
    json!({
        "name": "streamer",
        "sw": env!("CARGO_PKG_VERSION"),
    })
}

fn availability(topics: &Topics) -> Value {
    json!([{
        "topic": topics.availability(),
        "value_template": format!(
            "{{{{ 'online' if value == '{ONLINE}' else 'offline' }}}}"
        ),
    }])
}

/// A camera's entities are available while both streamer and the camera
/// are (`avty_mode: all`): a dead camera's values do not look current.
fn camera_availability(topics: &Topics, camera: &str) -> Value {
    let mut list = availability(topics);
    if let Value::Array(items) = &mut list {
        items.push(json!({
            "topic": topics.camera_availability(camera),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
        }));
    }
    list
}

fn component(platform: &str, unique_id: &str, name: &str, extra: Value) -> Value {
    let mut map = Map::new();
    map.insert("p".into(), platform.into());
    map.insert("name".into(), name.into());
    map.insert("unique_id".into(), unique_id.into());
    map.insert(
        "default_entity_id".into(),
        format!("{platform}.{unique_id}").into(),
    );
    if let Value::Object(extra) = extra {
        map.extend(extra);
    }
    Value::Object(map)
}

/// The discovery message of one camera: `(topic, payload)`. Without a
/// model (`with_model` false) there is no model-latency sensor, rather than
/// one that stays unknown forever.
pub fn camera_discovery(
    topics: &Topics,
    camera: &str,
    display_name: &str,
    with_model: bool,
) -> (String, Value) {
    let slug = camera_slug(camera);
    let device_id = camera_device_id(camera);
    let id = |what: &str| format!("{slug}_{what}");
    let diagnostics = topics.diagnostics(camera);
    let mut cmps = Map::new();
    cmps.insert(
        id("alert"),
        component(
            "event",
            &id("alert"),
            "Alert",
            json!({
                "state_topic": topics.event(camera),
                "event_types": Urgency::ALL.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                "icon": "mdi:cctv",
            }),
        ),
    );
    cmps.insert(
        id("snapshot"),
        component(
            "image",
            &id("snapshot"),
            "Snapshot",
            json!({
                "image_topic": topics.snapshot(camera),
                "content_type": "image/jpeg",
            }),
        ),
    );
    cmps.insert(
        id("person"),
        component(
            "binary_sensor",
            &id("person"),
            "Person",
            json!({
                "state_topic": topics.person(camera),
                "device_class": "occupancy",
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        ),
    );
    cmps.insert(
        id("connected"),
        component(
            "binary_sensor",
            &id("connected"),
            "Connected",
            json!({
                "state_topic": topics.connected(camera),
                "device_class": "connectivity",
                // Shows OFF for a dead camera instead of going unavailable.
                "avty": availability(topics),
                "entity_category": "diagnostic",
                "payload_on": "ON",
                "payload_off": "OFF",
            }),
        ),
    );
    for (what, name, field, extra) in [
        (
            "fps",
            "Frame rate",
            "fps",
            json!({"unit_of_measurement": "fps", "state_class": "measurement", "suggested_display_precision": 1}),
        ),
        (
            "dropped_frames",
            "Dropped frames",
            "dropped_frames",
            json!({"state_class": "total_increasing"}),
        ),
        (
            "reconnects",
            "Reconnects",
            "reconnects",
            json!({"state_class": "total_increasing"}),
        ),
        (
            "frames_gated_out",
            "Frames without motion",
            "frames_gated_out",
            json!({"state_class": "total_increasing"}),
        ),
        (
            "model_latency",
            "Model latency",
            "model_latency_ms",
            json!({"unit_of_measurement": "ms", "device_class": "duration", "state_class": "measurement"}),
        ),
    ] {
        if what == "model_latency" && !with_model {
            continue;
        }
        let mut config = json!({
            "state_topic": diagnostics,
            "value_template": format!("{{{{ value_json.{field} }}}}"),
            "entity_category": "diagnostic",
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut config, extra) {
            c.extend(e);
        }
        cmps.insert(id(what), component("sensor", &id(what), name, config));
    }
    let payload = json!({
        "dev": {
            "ids": [device_id],
            "name": display_name,
            "mf": "streamer",
            "mdl": "Camera",
            "via_device": HUB_DEVICE_ID,
        },
        "o": origin(),
        "avty": camera_availability(topics, camera),
        "avty_mode": "all",
        "cmps": Value::Object(cmps),
        "qos": 1,
    });
    (topics.discovery(&device_id), payload)
}

/// The hub's discovery message: mode select, notifications switch,
/// suspend number.
pub fn hub_discovery(topics: &Topics, modes: &[String]) -> (String, Value) {
    let mut cmps = Map::new();
    cmps.insert(
        "streamer_mode".into(),
        component(
            "select",
            "streamer_mode",
            "Mode",
            json!({
                "state_topic": topics.mode(),
                "command_topic": topics.mode_set(),
                "options": modes,
                "icon": "mdi:shield-home",
            }),
        ),
    );
    cmps.insert(
        "streamer_notifications".into(),
        component(
            "switch",
            "streamer_notifications",
            "Notifications",
            json!({
                "state_topic": topics.notifications(),
                "command_topic": topics.notifications_set(),
                "payload_on": "ON",
                "payload_off": "OFF",
                "icon": "mdi:bell",
            }),
        ),
    );
    cmps.insert(
        "streamer_suspend".into(),
        component(
            "number",
            "streamer_suspend",
            "Suspend alerts",
            json!({
                "state_topic": topics.suspend(),
                "command_topic": topics.suspend_set(),
                "min": 0,
                "max": MAX_SUSPEND_MINUTES,
                "step": 1,
                "unit_of_measurement": "min",
                "mode": "box",
                "icon": "mdi:bell-sleep",
            }),
        ),
    );
    let payload = json!({
        "dev": {
            "ids": [HUB_DEVICE_ID],
            "name": "streamer",
            "mf": "streamer",
            "mdl": "Alert hub",
            "sw": env!("CARGO_PKG_VERSION"),
        },
        "o": origin(),
        "avty": availability(topics),
        "cmps": Value::Object(cmps),
        "qos": 1,
    });
    (topics.discovery(HUB_DEVICE_ID), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("streamer", "homeassistant")
    }

    #[test]
    fn a_camera_is_one_device_with_its_entities() {
        let (topic, payload) = camera_discovery(&topics(), "Front Door", "Front door", true);
        assert_eq!(topic, "homeassistant/device/streamer_front_door/config");
        assert_eq!(payload["dev"]["ids"][0], "streamer_front_door");
        assert_eq!(payload["dev"]["via_device"], HUB_DEVICE_ID);
        assert_eq!(payload["o"]["name"], "streamer");
        assert_eq!(payload["avty"][0]["topic"], "streamer/availability");
        let cmps = payload["cmps"].as_object().unwrap();
        assert_eq!(cmps.len(), 9);
        assert_eq!(payload["avty_mode"], "all");
        assert_eq!(
            payload["avty"][1]["topic"],
            "streamer/front_door/availability"
        );
        // The connectivity sensor shows OFF for a dead camera, not unavailable.
        let connected = &cmps["front_door_connected"]["avty"];
        assert_eq!(connected.as_array().unwrap().len(), 1);
        // Without a model there is no latency sensor that stays unknown.
        let (_, no_model) = camera_discovery(&topics(), "Front Door", "Front door", false);
        let no_model = no_model["cmps"].as_object().unwrap();
        assert_eq!(no_model.len(), 8);
        assert!(!no_model.contains_key("front_door_model_latency"));

        let event = &cmps["front_door_alert"];
        assert_eq!(event["p"], "event");
        assert_eq!(event["state_topic"], "streamer/front_door/event");
        assert_eq!(
            event["event_types"],
            json!(["normal", "monitor", "suspicious", "critical"])
        );
        assert_eq!(event["default_entity_id"], "event.front_door_alert");
        assert!(event.get("object_id").is_none());

        let image = &cmps["front_door_snapshot"];
        assert_eq!(image["p"], "image");
        assert_eq!(image["image_topic"], "streamer/front_door/snapshot");
        assert_eq!(image["content_type"], "image/jpeg");

        assert_eq!(cmps["front_door_person"]["device_class"], "occupancy");
        assert_eq!(cmps["front_door_connected"]["device_class"], "connectivity");
        for diag in [
            "fps",
            "dropped_frames",
            "reconnects",
            "frames_gated_out",
            "model_latency",
            "connected",
        ] {
            let c = &cmps[&format!("front_door_{diag}")];
            assert_eq!(c["entity_category"], "diagnostic", "{diag}");
        }
        assert_eq!(
            cmps["front_door_model_latency"]["value_template"],
            "{{ value_json.model_latency_ms }}"
        );
        // Every component has a unique id (HA requires it in device discovery).
        for (key, c) in cmps {
            assert_eq!(c["unique_id"], key.as_str());
        }
    }

    #[test]
    fn the_hub_offers_mode_notifications_and_suspend() {
        let (topic, payload) = hub_discovery(&topics(), &["away".into(), "home".into()]);
        assert_eq!(topic, "homeassistant/device/streamer_hub/config");
        let cmps = &payload["cmps"];
        assert_eq!(cmps["streamer_mode"]["p"], "select");
        assert_eq!(cmps["streamer_mode"]["options"], json!(["away", "home"]));
        assert_eq!(
            cmps["streamer_mode"]["command_topic"],
            "streamer/hub/mode/set"
        );
        assert_eq!(cmps["streamer_notifications"]["p"], "switch");
        assert_eq!(
            cmps["streamer_notifications"]["default_entity_id"],
            "switch.streamer_notifications"
        );
        assert_eq!(cmps["streamer_suspend"]["p"], "number");
    }

    #[test]
    fn availability_maps_stopped_to_offline() {
        let (_, payload) = hub_discovery(&topics(), &[]);
        assert_eq!(
            payload["avty"][0]["value_template"],
            "{{ 'online' if value == 'online' else 'offline' }}"
        );
    }
}
