//! Splits streamed text into reasoning (`<think>…</think>`) and answer as it
//! arrives, holding back only what could still be the start of a tag.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// A piece of streamed text, sorted.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    Reasoning(String),
    Answer(String),
}

/// Streaming cannot take back text already sent, so a reply whose template
/// opened the block in the prompt (only `</think>` in the reply) streams as
/// answer; the non-streaming path ([`streamer_reason::split_reasoning`])
/// handles that case.
#[derive(Default)]
pub struct ThinkSplitter {
    inside: bool,
    held: String,
}

impl ThinkSplitter {
    /// Sorts `piece`; returns what can be sent now.
    pub fn push(&mut self, piece: &str) -> Vec<Split> {
        self.held.push_str(piece);
        let mut out = Vec::new();
        loop {
            let tag = if self.inside { CLOSE } else { OPEN };
            if let Some(at) = self.held.find(tag) {
                let before: String = self.held[..at].to_string();
                self.emit(&mut out, before);
                self.held.drain(..at + tag.len());
                self.inside = !self.inside;
                continue;
            }
            // Keep back a tail that may begin a tag.
            let keep = partial_tag_len(&self.held);
            let ready: String = self.held[..self.held.len() - keep].to_string();
            self.held.drain(..self.held.len() - keep);
            self.emit(&mut out, ready);
            return out;
        }
    }

    /// Whatever is still held back, at the end of the stream.
    pub fn finish(&mut self) -> Vec<Split> {
        let rest = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        self.emit(&mut out, rest);
        out
    }

    fn emit(&mut self, out: &mut Vec<Split>, text: String) {
        if text.is_empty() {
            return;
        }
        if self.inside {
            out.push(Split::Reasoning(text));
        } else {
            out.push(Split::Answer(text));
        }
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of a tag.
fn partial_tag_len(text: &str) -> usize {
    let mut best = 0;
    for tag in [OPEN, CLOSE] {
        for len in 1..tag.len() {
            if text.ends_with(&tag[..len]) {
                best = best.max(len);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> (String, String) {
        let mut s = ThinkSplitter::default();
        let (mut reasoning, mut answer) = (String::new(), String::new());
        let mut all: Vec<Split> = pieces.iter().flat_map(|p| s.push(p)).collect();
        all.extend(s.finish());
        for part in all {
            match part {
                Split::Reasoning(t) => reasoning.push_str(&t),
                Split::Answer(t) => answer.push_str(&t),
            }
        }
        (reasoning, answer)
    }

    #[test]
    fn tags_split_across_pieces_are_found() {
        assert_eq!(
            run(&["<th", "ink>a c", "at</th", "ink>\n\nA cat."]),
            ("a cat".into(), "\n\nA cat.".into())
        );
        assert_eq!(
            run(&["plain ", "text <b>"]),
            (String::new(), "plain text <b>".into())
        );
        assert_eq!(run(&["still <thi"]), (String::new(), "still <thi".into()));
    }
}
