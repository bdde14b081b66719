//! The outbox: every alert message is appended to an on-disk journal (and
//! fsynced) before it is sent, and marked when the broker acknowledges it.
//! A broker outage or a restart therefore loses nothing: on start the
//! journal is read back and whatever is unacknowledged is sent again, in the
//! order it was written. Delivery is at least once; consumers that must not
//! see a message twice key on `(id, stage)`.
//!
//! The journal is JSON lines in `<dir>/journal.jsonl`:
//!
//! ```text
//! {"next_seq":41}                                            header after compaction
//! {"seq":41,"topic":"streamer/porch/event","retain":false,"payload":"{…}"}
//! {"seq":42,"topic":"streamer/porch/snapshot","retain":true,"payload_b64":"/9j/…"}
//! {"ack":41}
//! ```
//!
//! Acknowledgement marks are written without fsync: losing one in a crash
//! only means sending that message once more. A torn last line (a crash in
//! the middle of a write) is dropped, since its message was never reported
//! as stored. The journal is compacted (rewritten with only pending
//! messages, then renamed into place) when it opens and after every
//! [`COMPACT_AFTER_ACKS`] marks.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::AlertsError;

/// Marks written before the journal is rewritten.
pub const COMPACT_AFTER_ACKS: usize = 512;

const JOURNAL: &str = "journal.jsonl";
const JOURNAL_TMP: &str = "journal.jsonl.tmp";

/// One message waiting for the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Position in the journal; sending follows it.
    pub seq: u64,
    /// MQTT topic.
    pub topic: String,
    /// Payload bytes (JSON text or a JPEG).
    pub payload: Vec<u8>,
    /// Whether the broker should retain it.
    pub retain: bool,
}

/// A message to append.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// MQTT topic.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Retained on the broker.
    pub retain: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Record {
    Message {
        seq: u64,
        topic: String,
        retain: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload_b64: Option<String>,
    },
    Ack {
        ack: u64,
    },
    Header {
        next_seq: u64,
    },
}

impl Record {
    fn message(m: &OutboxMessage) -> Self {
        let (payload, payload_b64) = match std::str::from_utf8(&m.payload) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&m.payload)),
            ),
        };
        Record::Message {
            seq: m.seq,
            topic: m.topic.clone(),
            retain: m.retain,
            payload,
            payload_b64,
        }
    }
}

/// The journal and the messages still waiting for acknowledgement.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    file: File,
    pending: BTreeMap<u64, OutboxMessage>,
    next_seq: u64,
    acks_since_compaction: usize,
}

impl Outbox {
    /// Opens (or creates) the journal in `dir` and loads what is pending.
    pub fn open(dir: &Path) -> Result<Self, AlertsError> {
        let io = |action: &str, path: &Path, e: std::io::Error| AlertsError::Outbox {
            action: action.to_string(),
            path: path.to_path_buf(),
            source: e,
        };
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let path = dir.join(JOURNAL);
        let mut pending = BTreeMap::new();
        let mut next_seq = 0;
        match File::open(&path) {
            Ok(file) => {
                let lines: Vec<String> = BufReader::new(file)
                    .lines()
                    .collect::<Result<_, _>>()
                    .map_err(|e| io("read", &path, e))?;
                let last = lines.len().saturating_sub(1);
                for (i, line) in lines.iter().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Record>(line) {
                        Ok(Record::Header { next_seq: n }) => next_seq = next_seq.max(n),
                        Ok(Record::Ack { ack }) => {
                            pending.remove(&ack);
                        }
                        Ok(Record::Message {
                            seq,
                            topic,
                            retain,
                            payload,
                            payload_b64,
                        }) => {
                            let payload = match (payload, payload_b64) {
                                (Some(text), _) => text.into_bytes(),
                                (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                                    .decode(b64)
                                    .map_err(|e| AlertsError::Journal {
                                        path: path.clone(),
                                        line: i + 1,
                                        message: e.to_string(),
                                    })?,
                                (None, None) => Vec::new(),
                            };
                            next_seq = next_seq.max(seq + 1);
                            pending.insert(
                                seq,
                                OutboxMessage {
                                    seq,
                                    topic,
                                    payload,
                                    retain,
                                },
                            );
                        }
                        Err(e) if i == last => {
                            tracing::warn!(
                                path = %path.display(),
                                line = i + 1,
                                error = %e,
                                "Dropping a torn last journal line"
                            );
                        }
                        Err(e) => {
                            return Err(AlertsError::Journal {
                                path: path.clone(),
                                line: i + 1,
                                message: e.to_string(),
                            })
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("open", &path, e)),
        }
        let file = write_compacted(dir, &pending, next_seq)?;
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "Outbox has messages from a previous run"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            pending,
            next_seq,
            acks_since_compaction: 0,
        })
    }

    /// Appends messages in order with one fsync; when this returns they
    /// survive a crash. Returns their sequence numbers.
    pub fn append(&mut self, messages: Vec<NewMessage>) -> Result<Vec<u64>, AlertsError> {
        let mut text = String::new();
        let mut stored = Vec::with_capacity(messages.len());
        for m in messages {
            let message = OutboxMessage {
                seq: self.next_seq + stored.len() as u64,
                topic: m.topic,
                payload: m.payload,
                retain: m.retain,
            };
            text.push_str(
                &serde_json::to_string(&Record::message(&message))
                    .expect("journal records serialise"),
            );
            text.push('\n');
            stored.push(message);
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io_error("append to", e))?;
        self.next_seq += stored.len() as u64;
        let seqs = stored.iter().map(|m| m.seq).collect();
        for m in stored {
            self.pending.insert(m.seq, m);
        }
        Ok(seqs)
    }

    /// Marks a message delivered. Unknown or repeated marks are ignored.
    pub fn ack(&mut self, seq: u64) -> Result<(), AlertsError> {
        if self.pending.remove(&seq).is_none() {
            return Ok(());
        }
        let line = format!(
            "{}\n",
            serde_json::to_string(&Record::Ack { ack: seq }).expect("serialises")
        );
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| self.io_error("append to", e))?;
        self.acks_since_compaction += 1;
        if self.acks_since_compaction >= COMPACT_AFTER_ACKS {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the journal with only pending messages.
    pub fn compact(&mut self) -> Result<(), AlertsError> {
        self.file = write_compacted(&self.dir, &self.pending, self.next_seq)?;
        self.acks_since_compaction = 0;
        Ok(())
    }

    /// The first pending message after `seq` (or the first of all).
    pub fn next_after(&self, seq: Option<u64>) -> Option<&OutboxMessage> {
        match seq {
            None => self.pending.values().next(),
            Some(seq) => self.pending.range(seq + 1..).next().map(|(_, m)| m),
        }
    }

    /// Messages waiting for acknowledgement.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether `seq` still waits for acknowledgement.
    pub fn is_pending(&self, seq: u64) -> bool {
        self.pending.contains_key(&seq)
    }

    /// The journal file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    fn io_error(&self, action: &str, e: std::io::Error) -> AlertsError {
        AlertsError::Outbox {
            action: action.to_string(),
            path: self.path(),
            source: e,
        }
    }
}

/// Writes header + pending to a temporary file, fsyncs, renames it over the
/// journal and returns the journal opened for appending.
fn write_compacted(
    dir: &Path,
    pending: &BTreeMap<u64, OutboxMessage>,
    next_seq: u64,
) -> Result<File, AlertsError> {
    let tmp = dir.join(JOURNAL_TMP);
    let path = dir.join(JOURNAL);
    let io = |action: &str, path: &Path, e: std::io::Error| AlertsError::Outbox {
        action: action.to_string(),
        path: path.to_path_buf(),
        source: e,
    };
    let mut text = serde_json::to_string(&Record::Header { next_seq }).expect("serialises");
    text.push('\n');
    for m in pending.values() {
        text.push_str(&serde_json::to_string(&Record::message(m)).expect("serialises"));
        text.push('\n');
    }
    let mut file = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io("rename into", &path, e))?;
    // The rename itself must reach the disk.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))?;
    OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| io("open", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &[u8]) -> NewMessage {
        NewMessage {
            topic: topic.into(),
            payload: payload.to_vec(),
            retain: false,
        }
    }

    #[test]
    fn pending_messages_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let seqs = outbox
            .append(vec![
                msg("a", b"1"),
                msg("b", &[0xff, 0xd8, 0x00]),
                msg("c", b"3"),
            ])
            .unwrap();
        assert_eq!(seqs, [0, 1, 2]);
        outbox.ack(0).unwrap();
        drop(outbox);

        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.pending_len(), 2);
        let first = outbox.next_after(None).unwrap();
        assert_eq!((first.seq, first.topic.as_str()), (1, "b"));
        assert_eq!(first.payload, [0xff, 0xd8, 0x00]);
        assert_eq!(outbox.next_after(Some(1)).unwrap().topic, "c");
        assert!(outbox.next_after(Some(2)).is_none());
    }

    #[test]
    fn sequence_numbers_continue_after_everything_was_acked() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.append(vec![msg("a", b"1"), msg("b", b"2")]).unwrap();
        outbox.ack(0).unwrap();
        outbox.ack(1).unwrap();
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.pending_len(), 0);
        assert_eq!(outbox.append(vec![msg("c", b"3")]).unwrap(), [2]);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        outbox.append(vec![msg("a", b"1")]).unwrap();
        drop(outbox);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL))
            .unwrap();
        file.write_all(b"{\"seq\":1,\"topic\":\"b\",\"ret").unwrap();
        drop(file);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.pending_len(), 1);
        // Compaction on open removed the torn line for good.
        let text = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert!(!text.contains("\"ret\n"));
        assert_eq!(text.lines().count(), 2);
    }

    #[test]
    fn a_damaged_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(JOURNAL),
            "{\"next_seq\":0}\nnot json\n{\"ack\":3}\n",
        )
        .unwrap();
        let err = Outbox::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn compaction_keeps_only_pending_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let n = COMPACT_AFTER_ACKS + 3;
        let seqs = outbox
            .append((0..n).map(|i| msg("t", i.to_string().as_bytes())).collect())
            .unwrap();
        for seq in &seqs[..COMPACT_AFTER_ACKS] {
            outbox.ack(*seq).unwrap();
        }
        let text = fs::read_to_string(dir.path().join(JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 1 + 3, "header and three pending");
        assert_eq!(
            outbox.next_after(None).unwrap().seq,
            COMPACT_AFTER_ACKS as u64
        );
    }
}
