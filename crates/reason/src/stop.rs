//! Incremental text assembly: bytes from tokens to UTF-8, and stop strings
//! that may arrive split across tokens.

/// Turns token bytes into text, holding back incomplete UTF-8 sequences.
#[derive(Default)]
pub(crate) struct Utf8Buffer {
    bytes: Vec<u8>,
}

impl Utf8Buffer {
    pub(crate) fn push(&mut self, piece: &[u8]) -> String {
        self.bytes.extend_from_slice(piece);
        match std::str::from_utf8(&self.bytes) {
            Ok(s) => {
                let out = s.to_string();
                self.bytes.clear();
                out
            }
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: emit what is complete.
                let valid = e.valid_up_to();
                let out = String::from_utf8_lossy(&self.bytes[..valid]).into_owned();
                self.bytes.drain(..valid);
                out
            }
            Err(_) => {
                let out = String::from_utf8_lossy(&self.bytes).into_owned();
                self.bytes.clear();
                out
            }
        }
    }
}

/// Finds stop strings in streamed text. Text that might be the start of a
/// stop string is held back until it is known not to be one.
pub(crate) struct StopScan {
    stops: Vec<String>,
    pending: String,
}

impl StopScan {
    pub(crate) fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Adds text; returns the text now safe to emit and whether a stop
    /// string was reached (the stop string itself is never emitted).
    pub(crate) fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = earliest {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest tail that could still grow into a stop string.
        let hold = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.pending[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.pending.len());
        let out = self.pending[..hold].to_string();
        self.pending.drain(..hold);
        (out, false)
    }

    /// Text still held back when generation ends for another reason.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_split_across_pieces_are_found_and_not_emitted() {
        let mut scan = StopScan::new(&["</answer>".into()]);
        let mut out = String::new();
        let mut stopped = false;
        for piece in ["The cat", " sat</an", "swer> trailing"] {
            let (text, stop) = scan.push(piece);
            out.push_str(&text);
            stopped |= stop;
            if stop {
                break;
            }
        }
        assert!(stopped);
        assert_eq!(out, "The cat sat");
    }

    #[test]
    fn held_back_prefixes_are_released_when_they_diverge() {
        let mut scan = StopScan::new(&["STOP".into()]);
        assert_eq!(scan.push("ab ST"), ("ab ".to_string(), false));
        assert_eq!(scan.push("AY"), ("STAY".to_string(), false));
        assert_eq!(scan.push("S"), (String::new(), false));
        assert_eq!(scan.finish(), "S");
    }

    #[test]
    fn multibyte_characters_split_across_tokens_are_reassembled() {
        let mut buf = Utf8Buffer::default();
        let bytes = "né".as_bytes();
        assert_eq!(buf.push(&bytes[..2]), "n");
        assert_eq!(buf.push(&bytes[2..]), "é");
    }
}
