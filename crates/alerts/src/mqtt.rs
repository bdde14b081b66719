//! MQTT delivery: one thread owns a small tokio runtime and the rumqttc
//! event loop; callers hand it work through [`Shared`] (the outbox, retained
//! states, routing state) and a wake-up.
//!
//! Each connection is a fresh rumqttc client with a clean session, so the
//! outbox, not rumqttc or the broker, decides what is resent: on every
//! connect streamer publishes `online` on its availability topic (the last
//! will says `offline`), subscribes to Home Assistant's status topic and the
//! hub's command topics, publishes discovery and every retained state, then
//! sends every unacknowledged outbox message in journal order. A message is
//! marked in the journal when its PUBACK arrives. Everything is QoS 1.
//! On a lost connection it reconnects with exponential backoff.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use tokio::sync::{mpsc, Notify};

use crate::alert::{Topics, OFFLINE, ONLINE, STOPPED};
use crate::config::{AlertsConfig, Secret};
use crate::discovery::MAX_SUSPEND_MINUTES;
use crate::outbox::{NewMessage, Outbox};
use crate::policy::RoutingState;
use crate::AlertsError;

/// Outbox messages handed to rumqttc and not yet acknowledged, at most.
/// Below rumqttc's in-flight limit so packet ids never collide.
const WINDOW: usize = 64;
/// rumqttc's in-flight limit (packet ids cycle through 1..=this).
const INFLIGHT: u16 = 100;
/// rumqttc's request channel: the window plus state publishes.
const REQUEST_CAPACITY: usize = 512;
/// How long a clean shutdown waits for the `stopped` message's PUBACK.
const STOP_ACK_WAIT: Duration = Duration::from_secs(2);

/// Connection settings, validated, with secrets read from the environment.
#[derive(Clone, Debug)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// CA certificate (PEM) for TLS; `None` means plain TCP.
    pub tls_ca: Option<Vec<u8>>,
    /// User name, from the environment.
    pub username: Option<Secret>,
    /// Password, from the environment.
    pub password: Option<Secret>,
    /// MQTT client id.
    pub client_id: String,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// First reconnect wait.
    pub reconnect_min: Duration,
    /// Longest reconnect wait.
    pub reconnect_max: Duration,
    /// Largest packet.
    pub max_packet_bytes: usize,
    /// Home Assistant's status topic.
    pub ha_status_topic: String,
}

impl MqttSettings {
    /// Reads the connection settings, taking credentials from the
    /// environment variables the config names.
    pub fn from_config(config: &AlertsConfig) -> Result<Self, AlertsError> {
        let m = &config.mqtt;
        let mut problems = Vec::new();
        let mut secret = |key: &str, var: &Option<String>| -> Option<Secret> {
            let var = var.as_ref()?;
            match std::env::var(var) {
                Ok(value) => Some(Secret::new(value)),
                Err(_) => {
                    problems.push(format!(
                        "mqtt.{key}: environment variable `{var}` is not set (or not UTF-8)"
                    ));
                    None
                }
            }
        };
        let username = secret("username_env", &m.username_env);
        let password = secret("password_env", &m.password_env);
        if password.is_some() && username.is_none() && m.username_env.is_none() {
            problems.push("mqtt.password_env: a password needs a username_env too".into());
        }
        let tls_ca = match (m.tls, &m.ca_file) {
            (false, _) => None,
            (true, None) => {
                problems.push("mqtt.ca_file: TLS needs the broker's CA certificate (PEM)".into());
                None
            }
            (true, Some(path)) => match std::fs::read(path) {
                Ok(pem) => Some(pem),
                Err(e) => {
                    problems.push(format!("mqtt.ca_file: cannot read {}: {e}", path.display()));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(AlertsError::Config(problems));
        }
        Ok(Self {
            host: m.host.clone(),
            port: m.port,
            tls_ca,
            username,
            password,
            client_id: m.client_id.clone(),
            keep_alive: Duration::from_secs(m.keep_alive_secs.max(1)),
            reconnect_min: Duration::from_millis(m.reconnect_min_ms),
            reconnect_max: Duration::from_millis(m.reconnect_max_ms),
            max_packet_bytes: m.max_packet_bytes,
            ha_status_topic: config.ha_status_topic(),
        })
    }

    fn options(&self, topics: &Topics) -> Result<MqttOptions, AlertsError> {
        let mut options = MqttOptions::new(&self.client_id, &self.host, self.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_inflight(INFLIGHT)
            .set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes)
            .set_last_will(LastWill::new(
                topics.availability(),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        if self.username.is_some() || self.password.is_some() {
            options.set_credentials(
                self.username
                    .as_ref()
                    .map(|s| s.expose())
                    .unwrap_or_default(),
                self.password
                    .as_ref()
                    .map(|s| s.expose())
                    .unwrap_or_default(),
            );
        }
        if let Some(ca) = &self.tls_ca {
            set_tls(&mut options, ca)?;
        }
        Ok(options)
    }
}

#[cfg(feature = "tls")]
fn set_tls(options: &mut MqttOptions, ca: &[u8]) -> Result<(), AlertsError> {
    // rumqttc builds its rustls config with the process-wide provider.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca: ca.to_vec(),
            alpn: None,
            client_auth: None,
        },
    ));
    Ok(())
}

#[cfg(not(feature = "tls"))]
fn set_tls(_: &mut MqttOptions, _: &[u8]) -> Result<(), AlertsError> {
    Err(AlertsError::Config(vec![
        "mqtt.tls: this streamer was built without TLS: rebuild with `--features streamer-alerts/tls`"
            .into(),
    ]))
}

/// Counters of the delivery loop.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Successful connections.
    pub connects: AtomicU64,
    /// Failed connection attempts and lost connections.
    pub connection_failures: AtomicU64,
    /// Outbox messages handed to the broker (resends included).
    pub sent: AtomicU64,
    /// Outbox messages the broker acknowledged.
    pub acked: AtomicU64,
}

/// Snapshot of [`DeliveryStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Successful connections.
    pub connects: u64,
    /// Failed attempts and lost connections.
    pub connection_failures: u64,
    /// Outbox messages sent (resends included).
    pub sent: u64,
    /// Outbox messages acknowledged.
    pub acked: u64,
}

/// Retained state topics and discovery configs, republished on every
/// connect and when Home Assistant comes online.
#[derive(Debug, Default)]
pub struct RetainedStates {
    discovery: BTreeMap<String, Vec<u8>>,
    states: BTreeMap<String, Vec<u8>>,
    /// Topics to publish, discovery first, in insertion order.
    dirty: VecDeque<String>,
}

impl RetainedStates {
    fn mark(&mut self, topic: &str) {
        if !self.dirty.iter().any(|t| t == topic) {
            self.dirty.push_back(topic.to_string());
        }
    }

    fn mark_all(&mut self) {
        self.dirty.clear();
        let topics: Vec<String> = self
            .discovery
            .keys()
            .chain(self.states.keys())
            .cloned()
            .collect();
        self.dirty.extend(topics);
    }

    fn payload(&self, topic: &str) -> Option<&Vec<u8>> {
        self.discovery.get(topic).or_else(|| self.states.get(topic))
    }
}

/// What the caller side and the delivery loop share.
#[derive(Debug)]
pub struct Shared {
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) retained: Mutex<RetainedStates>,
    pub(crate) routing: Mutex<RoutingState>,
    pub(crate) modes: Vec<String>,
    pub(crate) topics: Topics,
    wake: Notify,
    stopping: AtomicBool,
    connected: AtomicBool,
    no_broker: AtomicBool,
    stats: DeliveryStats,
}

/// Locks a mutex; a poisoned one means another thread panicked while
/// holding it, which is a bug worth stopping for.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
        .expect("no thread panics while holding an alerts lock")
}

impl Shared {
    pub(crate) fn new(
        outbox: Outbox,
        routing: RoutingState,
        modes: Vec<String>,
        topics: Topics,
    ) -> Self {
        Self {
            outbox: Mutex::new(outbox),
            retained: Mutex::new(RetainedStates::default()),
            routing: Mutex::new(routing),
            modes,
            topics,
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            no_broker: AtomicBool::new(false),
            stats: DeliveryStats::default(),
        }
    }

    /// Appends messages to the outbox (fsynced) and wakes the sender.
    pub(crate) fn enqueue(&self, messages: Vec<NewMessage>) -> Result<Vec<u64>, AlertsError> {
        let mut outbox = lock(&self.outbox);
        let seqs = outbox.append(messages)?;
        if self.no_broker.load(Ordering::Relaxed) {
            // Nobody will ever send these: done once journaled, so a long
            // terminal-only run does not hold every snapshot in memory.
            for seq in &seqs {
                outbox.ack(*seq)?;
            }
        }
        drop(outbox);
        self.wake.notify_one();
        Ok(seqs)
    }

    /// No broker will be connected: stored messages count as done.
    pub(crate) fn set_no_broker(&self) {
        self.no_broker.store(true, Ordering::Relaxed);
    }

    /// Sets a retained state topic; sent now if connected, else on connect.
    pub(crate) fn set_state(&self, topic: String, payload: Vec<u8>) {
        let mut retained = lock(&self.retained);
        if retained.states.get(&topic) == Some(&payload) {
            return;
        }
        retained.mark(&topic);
        retained.states.insert(topic, payload);
        drop(retained);
        self.wake.notify_one();
    }

    /// Adds or replaces a discovery config.
    pub(crate) fn set_discovery(&self, topic: String, payload: Vec<u8>) {
        let mut retained = lock(&self.retained);
        if retained.discovery.get(&topic) == Some(&payload) {
            return;
        }
        retained.mark(&topic);
        retained.discovery.insert(topic, payload);
        drop(retained);
        self.wake.notify_one();
    }

    pub(crate) fn has_discovery(&self, topic: &str) -> bool {
        lock(&self.retained).discovery.contains_key(topic)
    }

    /// Publishes the hub's states from the routing state.
    pub(crate) fn publish_hub_states(&self) {
        let routing = lock(&self.routing).clone();
        let suspend_minutes = routing
            .suspended_until
            .map(|until| {
                let left = until - chrono::Local::now().fixed_offset();
                ((left.num_seconds() + 59) / 60).max(0)
            })
            .unwrap_or(0);
        self.set_state(self.topics.mode(), routing.mode.into_bytes());
        self.set_state(
            self.topics.notifications(),
            on_off(routing.notifications).into(),
        );
        self.set_state(
            self.topics.suspend(),
            suspend_minutes.to_string().into_bytes(),
        );
    }

    /// Counters so far.
    pub fn counts(&self) -> DeliveryCounts {
        DeliveryCounts {
            connects: self.stats.connects.load(Ordering::Relaxed),
            connection_failures: self.stats.connection_failures.load(Ordering::Relaxed),
            sent: self.stats.sent.load(Ordering::Relaxed),
            acked: self.stats.acked.load(Ordering::Relaxed),
        }
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Outbox messages not yet acknowledged.
    pub fn pending(&self) -> usize {
        lock(&self.outbox).pending_len()
    }
}

pub(crate) fn on_off(on: bool) -> &'static str {
    if on {
        "ON"
    } else {
        "OFF"
    }
}

/// The delivery loop's handle: the thread that owns the MQTT connection.
#[derive(Debug)]
pub struct MqttPublisher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    flush_deadline: Arc<Mutex<Option<Instant>>>,
}

impl MqttPublisher {
    /// Starts the delivery thread. It connects in the background; alerts
    /// wait in the outbox until it does.
    pub fn start(settings: MqttSettings, shared: Arc<Shared>) -> Result<Self, AlertsError> {
        let options = settings.options(&shared.topics)?;
        let flush_deadline = Arc::new(Mutex::new(None));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| AlertsError::Runtime(e.to_string()))?;
        let loop_shared = Arc::clone(&shared);
        let loop_deadline = Arc::clone(&flush_deadline);
        let thread = thread::Builder::new()
            .name("alerts-mqtt".into())
            .spawn(move || {
                runtime.block_on(
                    DeliveryLoop::new(settings, options, loop_shared, loop_deadline).run(),
                )
            })
            .map_err(|e| AlertsError::Runtime(e.to_string()))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            flush_deadline,
        })
    }

    /// The shared state (counters, connection).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Sends what is pending for up to `flush`, publishes `stopped` on the
    /// availability topic and disconnects. Messages still unacknowledged
    /// stay in the outbox for the next start. Returns how many.
    pub fn shutdown(mut self, flush: Duration) -> usize {
        self.stop(flush);
        self.shared.pending()
    }

    fn stop(&mut self, flush: Duration) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        *lock(&self.flush_deadline) = Some(Instant::now() + flush);
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if thread.join().is_err() {
            tracing::error!("The MQTT delivery thread panicked");
        }
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.stop(Duration::ZERO);
    }
}

/// Per-connection bookkeeping: which publish request becomes which packet
/// id, and which packet id carries which outbox message.
struct Session {
    client: AsyncClient,
    /// One entry per publish handed to rumqttc, in order: the outbox seq,
    /// or `None` for a state/discovery publish.
    requested: VecDeque<Option<u64>>,
    /// Packet id → outbox seq, waiting for PUBACK.
    inflight: HashMap<u16, u64>,
    /// Packet ids of state publishes waiting for PUBACK.
    inflight_states: HashSet<u16>,
    /// Last outbox seq handed to rumqttc in this session.
    cursor: Option<u64>,
    /// Packet id of the `stopped` message, once sent.
    stop_pkid: Option<u16>,
    stop_requested: bool,
}

impl Session {
    fn outstanding(&self) -> usize {
        self.requested.len() + self.inflight.len() + self.inflight_states.len()
    }
}

struct DeliveryLoop {
    settings: MqttSettings,
    options: MqttOptions,
    shared: Arc<Shared>,
    flush_deadline: Arc<Mutex<Option<Instant>>>,
    backoff: Duration,
    /// Rate-limits the connection warning.
    last_warning: Option<Instant>,
}

/// Repeating connection warnings are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

enum SessionEnd {
    Lost(String),
    Stopped,
}

impl DeliveryLoop {
    fn new(
        settings: MqttSettings,
        options: MqttOptions,
        shared: Arc<Shared>,
        flush_deadline: Arc<Mutex<Option<Instant>>>,
    ) -> Self {
        let backoff = settings.reconnect_min;
        Self {
            settings,
            options,
            shared,
            flush_deadline,
            backoff,
            last_warning: None,
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Whether a stopping loop may still try to deliver.
    fn flush_time_left(&self) -> bool {
        match *lock(&self.flush_deadline) {
            Some(deadline) => Instant::now() < deadline,
            None => true,
        }
    }

    async fn run(mut self) {
        loop {
            if self.stopping() && (!self.flush_time_left() || self.shared.pending() == 0) {
                // Not connected: nothing more can be delivered or announced.
                return;
            }
            let (client, eventloop) = AsyncClient::new(self.options.clone(), REQUEST_CAPACITY);
            let (events_tx, mut events) = mpsc::unbounded_channel();
            let pump = tokio::spawn(pump(eventloop, events_tx));
            let end = self.session(client, &mut events).await;
            if let SessionEnd::Stopped = end {
                // Let the DISCONNECT reach the broker, or it publishes the
                // last will over `stopped`.
                let _ = tokio::time::timeout(STOP_ACK_WAIT, async {
                    while let Some(Ok(event)) = events.recv().await {
                        if let Event::Outgoing(Outgoing::Disconnect) = event {
                            break;
                        }
                    }
                })
                .await;
            }
            pump.abort();
            self.shared.connected.store(false, Ordering::SeqCst);
            match end {
                SessionEnd::Stopped => return,
                SessionEnd::Lost(reason) => {
                    self.shared
                        .stats
                        .connection_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.warn_lost(&reason);
                    let wait = self.backoff;
                    self.backoff = (self.backoff * 2).min(self.settings.reconnect_max);
                    // New alerts do not cut the wait short; shutdown does.
                    let until = tokio::time::Instant::now() + wait;
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = self.shared.wake.notified() => if self.stopping() { break },
                        }
                    }
                }
            }
        }
    }

    fn warn_lost(&mut self, reason: &str) {
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY)
        {
            self.last_warning = Some(now);
            tracing::warn!(
                broker = %format!("{}:{}", self.settings.host, self.settings.port),
                error = %reason,
                pending = self.shared.pending(),
                "MQTT broker unreachable; alerts wait in the outbox"
            );
        } else {
            tracing::debug!(error = %reason, "MQTT connection attempt failed");
        }
    }

    async fn session(
        &mut self,
        client: AsyncClient,
        events: &mut mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    ) -> SessionEnd {
        // The first event is the CONNACK or the reason there is none.
        match events.recv().await {
            Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {}
            Some(Ok(other)) => {
                return SessionEnd::Lost(format!("unexpected first packet {other:?}"))
            }
            Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
            None => return SessionEnd::Lost("event loop ended".into()),
        }
        self.backoff = self.settings.reconnect_min;
        self.shared.connected.store(true, Ordering::SeqCst);
        self.shared.stats.connects.fetch_add(1, Ordering::Relaxed);
        if self.last_warning.take().is_some() {
            tracing::info!(
                pending = self.shared.pending(),
                "MQTT broker reachable again"
            );
        } else {
            tracing::debug!("Connected to the MQTT broker");
        }
        let mut s = Session {
            client,
            requested: VecDeque::new(),
            inflight: HashMap::new(),
            inflight_states: HashSet::new(),
            cursor: None,
            stop_pkid: None,
            stop_requested: false,
        };
        let topics = &self.shared.topics;
        let subscriptions = [
            self.settings.ha_status_topic.clone(),
            topics.mode_set(),
            topics.notifications_set(),
            topics.suspend_set(),
            // Retained device configs, to clear cameras no longer configured.
            topics.discovery("+"),
        ];
        for topic in subscriptions {
            if let Err(e) = s.client.try_subscribe(topic, QoS::AtLeastOnce) {
                return SessionEnd::Lost(e.to_string());
            }
        }
        if let Err(e) = self.publish_state(&mut s, topics.availability(), ONLINE.into()) {
            return SessionEnd::Lost(e);
        }
        lock(&self.shared.retained).mark_all();

        loop {
            if let Err(e) = self.feed(&mut s) {
                return SessionEnd::Lost(e);
            }
            if self.stopping() && !s.stop_requested {
                let flushed = self.shared.pending() == 0 || !self.flush_time_left();
                if flushed {
                    s.stop_requested = true;
                    if let Err(e) = self.publish_state(
                        &mut s,
                        self.shared.topics.availability(),
                        STOPPED.into(),
                    ) {
                        return SessionEnd::Lost(e);
                    }
                }
            }
            let timeout = if s.stop_requested {
                STOP_ACK_WAIT
            } else if self.stopping() {
                // Re-check the flush deadline now and then.
                Duration::from_millis(50)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(event)) => {
                        if let Some(end) = self.handle(&mut s, event) {
                            return end;
                        }
                    }
                    Some(Err(e)) => return SessionEnd::Lost(e.to_string()),
                    None => return SessionEnd::Lost("event loop ended".into()),
                },
                _ = self.shared.wake.notified() => {}
                _ = tokio::time::sleep(timeout) => {
                    if s.stop_requested {
                        tracing::warn!("No acknowledgement of the `stopped` availability; disconnecting anyway");
                        let _ = s.client.try_disconnect();
                        return SessionEnd::Stopped;
                    }
                }
            }
        }
    }

    /// Hands rumqttc the dirty states, then outbox messages up to the window.
    fn feed(&mut self, s: &mut Session) -> Result<(), String> {
        if s.stop_requested {
            // `stopped` must be the last publish of the session.
            return Ok(());
        }
        loop {
            let next = {
                let mut retained = lock(&self.shared.retained);
                match retained.dirty.pop_front() {
                    Some(topic) => retained.payload(&topic).cloned().map(|p| (topic, p)),
                    None => break,
                }
            };
            if let Some((topic, payload)) = next {
                self.publish_state(s, topic, payload)?;
            }
        }
        while s.outstanding() < WINDOW {
            let next = lock(&self.shared.outbox)
                .next_after(s.cursor)
                .map_err(|e| e.to_string())?;
            let Some(message) = next else { break };
            s.client
                .try_publish(
                    message.topic,
                    QoS::AtLeastOnce,
                    message.retain,
                    message.payload,
                )
                .map_err(|e| e.to_string())?;
            s.requested.push_back(Some(message.seq));
            s.cursor = Some(message.seq);
            self.shared.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn publish_state(
        &self,
        s: &mut Session,
        topic: String,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        s.client
            .try_publish(topic, QoS::AtLeastOnce, true, payload)
            .map_err(|e| e.to_string())?;
        s.requested.push_back(None);
        Ok(())
    }

    fn handle(&mut self, s: &mut Session, event: Event) -> Option<SessionEnd> {
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => match s.requested.pop_front() {
                Some(Some(seq)) => {
                    s.inflight.insert(pkid, seq);
                }
                Some(None) => {
                    s.inflight_states.insert(pkid);
                    if s.stop_requested && s.requested.is_empty() {
                        s.stop_pkid = Some(pkid);
                    }
                }
                None => tracing::debug!(pkid, "Publish event without a request"),
            },
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                // A packet id collision: rumqttc sends it once the id frees
                // up, but we cannot tell its PUBACK apart; the message stays
                // pending and goes again on the next connection.
                s.requested.pop_front();
                tracing::debug!(pkid, "MQTT packet id collision");
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(seq) = s.inflight.remove(&ack.pkid) {
                    if let Err(e) = lock(&self.shared.outbox).ack(seq) {
                        // The message was delivered; losing the mark only
                        // means sending it again after a restart.
                        tracing::warn!(error = %e, seq, "Could not mark an alert delivered");
                    }
                    self.shared.stats.acked.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.inflight_states.remove(&ack.pkid);
                    if s.stop_pkid == Some(ack.pkid) {
                        let _ = s.client.try_disconnect();
                        return Some(SessionEnd::Stopped);
                    }
                }
            }
            Event::Incoming(Packet::Publish(publish)) => {
                if self.is_stale_device(&publish.topic, &publish.payload) {
                    tracing::info!(topic = %publish.topic, "clearing the discovery config of a camera no longer configured");
                    if let Err(e) = self.publish_state(s, publish.topic.clone(), Vec::new()) {
                        return Some(SessionEnd::Lost(e));
                    }
                    return None;
                }
                let payload = String::from_utf8_lossy(&publish.payload).trim().to_string();
                self.command(&publish.topic, &payload);
            }
            Event::Incoming(Packet::Disconnect) => {
                return Some(SessionEnd::Lost("broker sent DISCONNECT".into()));
            }
            _ => {}
        }
        None
    }

    /// A retained discovery config of one of streamer's camera devices that
    /// this run does not have: a camera removed from the config. Home
    /// Assistant removes the device when the config is cleared.
    fn is_stale_device(&self, topic: &str, payload: &[u8]) -> bool {
        let topics = &self.shared.topics;
        let Some(device) = topics.discovery_device(topic) else {
            return false;
        };
        !payload.is_empty()
            && device.starts_with("streamer_")
            && device != crate::discovery::HUB_DEVICE_ID
            && !self.shared.has_discovery(topic)
    }

    /// Home Assistant's status and the hub's command topics.
    fn command(&self, topic: &str, payload: &str) {
        let topics = &self.shared.topics;
        if topic == self.settings.ha_status_topic {
            if payload == "online" {
                tracing::info!("Home Assistant is online; publishing discovery and states again");
                lock(&self.shared.retained).mark_all();
                self.shared.wake.notify_one();
            }
        } else if topic == topics.mode_set() {
            if self.shared.modes.iter().any(|m| m == payload) {
                lock(&self.shared.routing).mode = payload.to_string();
                tracing::info!(mode = payload, "Routing mode changed");
            } else {
                tracing::warn!(mode = payload, known = ?self.shared.modes, "Ignoring an unknown mode");
            }
            self.shared.publish_hub_states();
        } else if topic == topics.notifications_set() {
            match payload.to_ascii_uppercase().as_str() {
                "ON" | "OFF" => {
                    let on = payload.eq_ignore_ascii_case("ON");
                    lock(&self.shared.routing).notifications = on;
                    tracing::info!(on, "Notifications switched");
                }
                _ => tracing::warn!(
                    payload,
                    "Ignoring a notifications command that is not ON or OFF"
                ),
            }
            self.shared.publish_hub_states();
        } else if topic == topics.suspend_set() {
            match payload.parse::<f64>() {
                Ok(minutes) if (0.0..=MAX_SUSPEND_MINUTES as f64).contains(&minutes) => {
                    let until = (minutes > 0.0).then(|| {
                        chrono::Local::now().fixed_offset()
                            + chrono::Duration::seconds((minutes * 60.0).round() as i64)
                    });
                    lock(&self.shared.routing).suspended_until = until;
                    tracing::info!(minutes, "Alerts below critical suspended");
                }
                _ => tracing::warn!(
                    payload,
                    "Ignoring a suspend command that is not 0..={MAX_SUSPEND_MINUTES} minutes"
                ),
            }
            self.shared.publish_hub_states();
        }
    }
}

/// Drives the rumqttc event loop and forwards its events; ends after the
/// first error (the caller starts a fresh client).
async fn pump(
    mut eventloop: EventLoop,
    events: mpsc::UnboundedSender<Result<Event, ConnectionError>>,
) {
    loop {
        let event = eventloop.poll().await;
        let failed = event.is_err();
        if events.send(event).is_err() || failed {
            return;
        }
    }
}
