//! An incremental server-sent-events decoder: bytes in as they arrive, the `data` of each
//! complete event out.
//!
//! Follows the WHATWG event-stream rules that OpenAI-style servers rely on: lines end in
//! `\n`, `\r\n` or `\r`; a blank line ends an event; `data:` lines (one optional space after
//! the colon) are joined with `\n`; comment lines (`:` first, e.g. sse-starlette's pings)
//! and other fields are ignored. Events split across network reads are held until their
//! blank line arrives. Cost: each byte is scanned once; the buffer holds at most one
//! incomplete line.

#[derive(Default)]
pub struct SseDecoder {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// `data` lines of the event being read.
    data: Option<String>,
    /// The last byte was `\r`, so a following `\n` belongs to the same line end.
    after_cr: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; returns the data of every event they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(done) = self.end_line(&line) {
                        events.push(done);
                    }
                }
                _ => self.line.push(b),
            }
        }
        events
    }

    /// Handles one complete line; returns an event's data when the line is blank.
    fn end_line(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            return self.data.take();
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(0) => return None, // comment
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream =
            b": ping\r\n\r\ndata: {\"a\":1}\n\ndata:x\ndata: y\r\n\r\nevent: e\ndata: [DONE]\n\n";
        let want = vec!["{\"a\":1}", "x\ny", "[DONE]"];
        for cut in 0..stream.len() {
            let mut d = SseDecoder::new();
            let mut got = d.push(&stream[..cut]);
            got.extend(d.push(&stream[cut..]));
            assert_eq!(got, want, "cut at {cut}");
        }
        let mut d = SseDecoder::new();
        let got: Vec<String> = stream.iter().flat_map(|b| d.push(&[*b])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_unfinished_event_is_held() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: {\"partial\":").is_empty());
        assert!(d.push(b" 1}\n").is_empty());
        assert_eq!(d.push(b"\n"), vec!["{\"partial\": 1}"]);
    }
}
