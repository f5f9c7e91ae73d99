//! Stop strings matched across token boundaries.
//!
//! Text arrives in deltas. A stop string may straddle deltas, so the last
//! `longest stop string - 1` bytes are held back until the next delta shows they do not
//! begin a stop string. On a match the text is cut before the stop string (or after it,
//! with `include_stop_str_in_output`) and the request ends.

pub struct StopMatcher {
    stops: Vec<String>,
    include: bool,
    hold: usize,
    /// All text of the request so far.
    text: String,
    /// Bytes of `text` already released.
    sent: usize,
}

/// What a delta released.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    pub text: String,
    /// A stop string was found; the request must end.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>, include: bool) -> Self {
        let hold = stops
            .iter()
            .map(|s| s.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        Self {
            stops,
            include,
            hold,
            text: String::new(),
            sent: 0,
        }
    }

    /// Adds decoded text; returns what may be shown now.
    pub fn push(&mut self, delta: &str) -> Released {
        let search_from = floor_char(&self.text, self.text.len().saturating_sub(self.hold));
        self.text.push_str(delta);
        let found = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|p| (search_from + p, s.len()))
            })
            .min();
        if let Some((pos, len)) = found {
            let end = if self.include { pos + len } else { pos };
            let end = end.max(self.sent);
            let text = self.text[self.sent..end].to_string();
            self.sent = end;
            return Released {
                text,
                stopped: true,
            };
        }
        let safe = floor_char(&self.text, self.text.len().saturating_sub(self.hold)).max(self.sent);
        let text = self.text[self.sent..safe].to_string();
        self.sent = safe;
        Released {
            text,
            stopped: false,
        }
    }

    /// Releases whatever was held back (the request ended for another reason).
    pub fn flush(&mut self) -> String {
        let text = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        text
    }

    /// The full released text.
    pub fn text(&self) -> &str {
        &self.text[..self.sent]
    }
}

/// Largest char boundary of `s` at or below `i`.
fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, deltas: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect(), include);
        let mut out = String::new();
        for d in deltas {
            let r = m.push(d);
            out.push_str(&r.text);
            if r.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.flush());
        (out, false)
    }

    #[test]
    fn stop_string_split_across_deltas() {
        assert_eq!(
            run(&["STOP"], false, &["hello S", "T", "OP and more"]),
            ("hello ".into(), true)
        );
        assert_eq!(
            run(&["STOP"], true, &["hello S", "T", "OP and more"]),
            ("hello STOP".into(), true)
        );
    }

    #[test]
    fn held_text_is_released_when_it_cannot_start_a_stop() {
        let mut m = StopMatcher::new(vec!["\n\n".into()], false);
        assert_eq!(m.push("a\n").text, "a");
        // One byte is held back: the last character could start "\n\n".
        assert_eq!(m.push("b").text, "\n");
        assert_eq!(m.push("\n").text, "b");
        let r = m.push("\nc");
        assert_eq!(
            r,
            Released {
                text: String::new(),
                stopped: true
            }
        );
        assert_eq!(m.text(), "a\nb");
    }

    #[test]
    fn earliest_stop_wins_and_multibyte_is_safe() {
        assert_eq!(run(&["é!", "b"], false, &["aé", "!b"]), ("a".into(), true));
        assert_eq!(run(&["zz"], false, &["€", "€"]), ("€€".into(), false));
    }
}
