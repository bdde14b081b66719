//! The outbox: every alert message is appended to an on-disk journal (and
//! fsynced) before it is sent, and marked when the broker acknowledges it.
//! A broker outage or a restart therefore loses nothing: on start the
//! journal is read back and whatever is unacknowledged is sent again, in the
//! order it was written. Delivery is at least once; consumers that must not
//! see a message twice key on `(id, stage)`.
//!
//! Only where each pending message lies in the journal is kept in memory;
//! its payload (a snapshot JPEG, say) is read back when it is sent, so a
//! long outage costs disk, not memory.
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
    fn message(seq: u64, m: &NewMessage) -> Self {
        let (payload, payload_b64) = match std::str::from_utf8(&m.payload) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&m.payload)),
            ),
        };
        Record::Message {
            seq,
            topic: m.topic.clone(),
            retain: m.retain,
            payload,
            payload_b64,
        }
    }
}

/// Where a pending message's line lies in the journal: the payload stays on
/// disk until it is sent, so a long broker outage costs disk, not memory.
#[derive(Clone, Copy, Debug)]
struct Stored {
    offset: u64,
    len: usize,
}

/// The journal and the messages still waiting for acknowledgement.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    /// The journal, opened for appending.
    file: File,
    /// The same journal, for reading pending messages back.
    reader: File,
    pending: BTreeMap<u64, Stored>,
    next_seq: u64,
    acks_since_compaction: usize,
}

impl Outbox {
    /// Opens (or creates) the journal in `dir` and finds what is pending.
    pub fn open(dir: &Path) -> Result<Self, AlertsError> {
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
        let path = dir.join(JOURNAL);
        let mut pending = BTreeMap::new();
        let mut next_seq = 0;
        let old = match File::open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("open", &path, e)),
        };
        if let Some(file) = &old {
            let mut reader = BufReader::new(file);
            let mut offset = 0u64;
            let mut number = 0;
            let mut line = Vec::new();
            loop {
                line.clear();
                let len = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| io("read", &path, e))?;
                if len == 0 {
                    break;
                }
                number += 1;
                let at = offset;
                offset += len as u64;
                let complete = line.ends_with(b"\n");
                let text = String::from_utf8_lossy(&line);
                if text.trim().is_empty() {
                    continue;
                }
                match parse(&text, &path, number) {
                    Ok(Record::Header { next_seq: n }) => next_seq = next_seq.max(n),
                    Ok(Record::Ack { ack }) => {
                        pending.remove(&ack);
                    }
                    Ok(Record::Message { seq, .. }) if complete => {
                        next_seq = next_seq.max(seq + 1);
                        pending.insert(seq, Stored { offset: at, len });
                    }
                    // A message line without its newline was cut by a
                    // crash before it was reported stored.
                    Ok(Record::Message { .. }) => torn(&path, number, "no newline"),
                    Err(e) if !complete => torn(&path, number, &e.to_string()),
                    Err(e) => return Err(e),
                }
            }
        }
        let (file, pending) = write_compacted(dir, old.as_ref(), &pending, next_seq)?;
        if !pending.is_empty() {
            tracing::info!(
                pending = pending.len(),
                "Outbox has messages from a previous run"
            );
        }
        let reader = File::open(&path).map_err(|e| io("open", &path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            reader,
            pending,
            next_seq,
            acks_since_compaction: 0,
        })
    }

    /// Appends messages in order with one fsync; when this returns they
    /// survive a crash. Returns their sequence numbers.
    pub fn append(&mut self, messages: Vec<NewMessage>) -> Result<Vec<u64>, AlertsError> {
        // Where this write starts: the file's end (appends only).
        let start = self
            .file
            .metadata()
            .map_err(|e| self.io_error("read the size of", e))?
            .len();
        let mut text = String::new();
        let mut stored = Vec::with_capacity(messages.len());
        for m in messages {
            let seq = self.next_seq + stored.len() as u64;
            let at = start + text.len() as u64;
            text.push_str(
                &serde_json::to_string(&Record::message(seq, &m))
                    .expect("journal records serialise"),
            );
            text.push('\n');
            let len = (start + text.len() as u64 - at) as usize;
            stored.push((seq, Stored { offset: at, len }));
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| self.io_error("append to", e))?;
        self.next_seq += stored.len() as u64;
        let seqs = stored.iter().map(|(seq, _)| *seq).collect();
        self.pending.extend(stored);
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
        let (file, pending) =
            write_compacted(&self.dir, Some(&self.reader), &self.pending, self.next_seq)?;
        self.file = file;
        self.pending = pending;
        self.reader = File::open(self.path()).map_err(|e| self.io_error("open", e))?;
        self.acks_since_compaction = 0;
        Ok(())
    }

    /// The first pending message after `seq` (or the first of all), read
    /// back from the journal.
    pub fn next_after(&self, seq: Option<u64>) -> Result<Option<OutboxMessage>, AlertsError> {
        let next = match seq {
            None => self.pending.iter().next(),
            Some(seq) => self.pending.range(seq + 1..).next(),
        };
        let Some((_, stored)) = next else {
            return Ok(None);
        };
        let line = read_line(&self.reader, *stored).map_err(|e| self.io_error("read", e))?;
        let path = self.path();
        match parse(&String::from_utf8_lossy(&line), &path, 0)? {
            Record::Message {
                seq,
                topic,
                retain,
                payload,
                payload_b64,
            } => Ok(Some(OutboxMessage {
                seq,
                topic,
                retain,
                payload: decode_payload(payload, payload_b64, &path, 0)?,
            })),
            _ => Err(AlertsError::Journal {
                path,
                line: 0,
                message: format!("expected a message at byte {}", stored.offset),
            }),
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
        io(action, &self.path(), e)
    }
}

fn io(action: &str, path: &Path, e: std::io::Error) -> AlertsError {
    AlertsError::Outbox {
        action: action.to_string(),
        path: path.to_path_buf(),
        source: e,
    }
}

fn torn(path: &Path, line: usize, why: &str) {
    tracing::warn!(
        path = %path.display(),
        line,
        error = why,
        "Dropping a torn last journal line"
    );
}

/// Parses one journal line; a message's payload must decode too.
fn parse(text: &str, path: &Path, line: usize) -> Result<Record, AlertsError> {
    let journal = |message: String| AlertsError::Journal {
        path: path.to_path_buf(),
        line,
        message,
    };
    let record: Record = serde_json::from_str(text).map_err(|e| journal(e.to_string()))?;
    if let Record::Message {
        payload_b64: Some(b64),
        ..
    } = &record
    {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| journal(e.to_string()))?;
    }
    Ok(record)
}

fn decode_payload(
    payload: Option<String>,
    payload_b64: Option<String>,
    path: &Path,
    line: usize,
) -> Result<Vec<u8>, AlertsError> {
    match (payload, payload_b64) {
        (Some(text), _) => Ok(text.into_bytes()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| AlertsError::Journal {
                path: path.to_path_buf(),
                line,
                message: e.to_string(),
            }),
        (None, None) => Ok(Vec::new()),
    }
}

fn read_line(file: &File, stored: Stored) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt as _;
    let mut line = vec![0; stored.len];
    file.read_exact_at(&mut line, stored.offset)?;
    Ok(line)
}

/// Writes the header and the pending messages' lines (copied from `old`)
/// to a temporary file, fsyncs, renames it over the journal and returns the
/// journal opened for appending, with the lines' new places.
fn write_compacted(
    dir: &Path,
    old: Option<&File>,
    pending: &BTreeMap<u64, Stored>,
    next_seq: u64,
) -> Result<(File, BTreeMap<u64, Stored>), AlertsError> {
    let tmp = dir.join(JOURNAL_TMP);
    let path = dir.join(JOURNAL);
    let file = File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
    let mut out = std::io::BufWriter::new(file);
    let mut header = serde_json::to_string(&Record::Header { next_seq }).expect("serialises");
    header.push('\n');
    out.write_all(header.as_bytes())
        .map_err(|e| io("write", &tmp, e))?;
    let mut offset = header.len() as u64;
    let mut moved = BTreeMap::new();
    for (&seq, &stored) in pending {
        let old = old.expect("pending messages come from the old journal");
        let line = read_line(old, stored).map_err(|e| io("read", &path, e))?;
        out.write_all(&line).map_err(|e| io("write", &tmp, e))?;
        moved.insert(
            seq,
            Stored {
                offset,
                len: line.len(),
            },
        );
        offset += line.len() as u64;
    }
    out.into_inner()
        .map_err(|e| io("write", &tmp, e.into_error()))?
        .sync_all()
        .map_err(|e| io("write", &tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| io("rename into", &path, e))?;
    // The rename itself must reach the disk.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("sync", dir, e))?;
    let file = OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    Ok((file, moved))
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
        let first = outbox.next_after(None).unwrap().unwrap();
        assert_eq!((first.seq, first.topic.as_str()), (1, "b"));
        assert_eq!(first.payload, [0xff, 0xd8, 0x00]);
        assert_eq!(outbox.next_after(Some(1)).unwrap().unwrap().topic, "c");
        assert!(outbox.next_after(Some(2)).unwrap().is_none());
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
            outbox.next_after(None).unwrap().unwrap().seq,
            COMPACT_AFTER_ACKS as u64
        );
    }

    #[test]
    fn messages_read_back_right_after_compaction_and_later_appends() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path()).unwrap();
        let jpeg = [0xff, 0xd8, 0xff, 0x00, 0x10];
        let seqs = outbox
            .append(vec![msg("a", b"first"), msg("img", &jpeg)])
            .unwrap();
        outbox.ack(seqs[0]).unwrap();
        outbox.compact().unwrap();
        outbox.append(vec![msg("c", b"after")]).unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        while let Some(m) = outbox.next_after(cursor).unwrap() {
            cursor = Some(m.seq);
            seen.push((m.seq, m.topic, m.payload));
        }
        assert_eq!(
            seen,
            [
                (1, "img".to_string(), jpeg.to_vec()),
                (2, "c".into(), b"after".to_vec())
            ]
        );
        drop(outbox);
        let outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(
            outbox.next_after(Some(1)).unwrap().unwrap().payload,
            b"after"
        );
    }
}
