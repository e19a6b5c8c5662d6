//! Splits the server's byte stream into complete responses.
//!
//! A response is one line, unless the line ends with a literal announcement
//! (`{N}` or `{N+}`, also in `~{N}`), in which case N raw bytes and another
//! line follow. The framer scans each line once and, inside a literal, only
//! compares lengths, so a 20 MB literal costs O(n) however it is chunked.
//! It never interprets literal bytes as protocol.
//!
//! Invariant: bytes are consumed only as whole frames; a frame is handed out
//! exactly once, as a slice that is valid until the next [`ResponseFramer::push`].

use super::error::ImapError;

/// Limits that protect the client's memory against a hostile server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingLimits {
    /// The largest literal accepted (a message body is one literal).
    pub max_literal: u64,
    /// The longest line (excluding literals) accepted.
    pub max_line: usize,
}

impl Default for FramingLimits {
    fn default() -> Self {
        Self {
            max_literal: 1 << 30,
            max_line: 16 << 20,
        }
    }
}

/// Where the framer is inside the current (incomplete) frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Inside a line that starts at `line_start`; `searched` bytes from there
    /// on are known to hold no LF.
    Line { line_start: usize, searched: usize },
    /// Inside a literal that ends at `end` (exclusive, an index into `buf`).
    Literal { end: usize, length: u64 },
}

/// Incremental response framer.
#[derive(Debug)]
pub struct ResponseFramer {
    buf: Vec<u8>,
    /// Start of the current frame in `buf`; everything before is consumed.
    frame_start: usize,
    position: Position,
    limits: FramingLimits,
}

impl ResponseFramer {
    /// A framer with the given limits.
    pub fn new(limits: FramingLimits) -> Self {
        Self {
            buf: Vec::new(),
            frame_start: 0,
            position: Position::Line {
                line_start: 0,
                searched: 0,
            },
            limits,
        }
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes of an unfinished frame are buffered.
    pub fn has_partial(&self) -> bool {
        self.buf.len() > self.frame_start
    }

    /// Describes what the framer still waits for, for error messages.
    pub fn waiting_for(&self) -> String {
        match self.position {
            Position::Literal { end, length } => {
                let have = length - (end.saturating_sub(self.buf.len()) as u64);
                format!("the rest of a {length}-byte literal ({have} bytes received)")
            }
            Position::Line { .. } if self.has_partial() => "the end of a response line".into(),
            Position::Line { .. } => "a response".into(),
        }
    }

    /// Returns the next complete frame, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, ImapError> {
        loop {
            match self.position {
                Position::Literal { end, .. } => {
                    if self.buf.len() < end {
                        return Ok(None);
                    }
                    self.position = Position::Line {
                        line_start: end,
                        searched: 0,
                    };
                }
                Position::Line {
                    line_start,
                    searched,
                } => {
                    let from = line_start + searched;
                    let Some(lf) = self.buf[from..].iter().position(|&b| b == b'\n') else {
                        let searched = self.buf.len() - line_start;
                        if searched > self.limits.max_line {
                            return Err(ImapError::LineTooLong {
                                limit: self.limits.max_line,
                            });
                        }
                        self.position = Position::Line {
                            line_start,
                            searched,
                        };
                        return Ok(None);
                    };
                    let line_end = from + lf + 1;
                    if line_end - line_start > self.limits.max_line {
                        return Err(ImapError::LineTooLong {
                            limit: self.limits.max_line,
                        });
                    }
                    match literal_announcement(&self.buf[line_start..line_end]) {
                        Some(length) => self.enter_literal(line_end, length)?,
                        None => return Ok(Some(self.finish_frame(line_end))),
                    }
                }
            }
        }
    }

    fn enter_literal(&mut self, line_end: usize, length: u64) -> Result<(), ImapError> {
        if length > self.limits.max_literal {
            return Err(ImapError::LiteralTooLarge {
                announced: length,
                limit: self.limits.max_literal,
            });
        }
        // The limit above bounds this conversion on every platform we build for.
        let len = usize::try_from(length).map_err(|_| ImapError::LiteralTooLarge {
            announced: length,
            limit: self.limits.max_literal,
        })?;
        let end = line_end + len;
        // Reserve up front (bounded) so a large literal is not copied on every
        // doubling of the buffer.
        let missing = end.saturating_sub(self.buf.len());
        self.buf.reserve(missing.min(64 << 20));
        self.position = Position::Literal { end, length };
        Ok(())
    }

    fn finish_frame(&mut self, end: usize) -> &[u8] {
        let start = self.frame_start;
        self.frame_start = end;
        self.position = Position::Line {
            line_start: end,
            searched: 0,
        };
        &self.buf[start..end]
    }

    /// Drops consumed bytes, shifting the unfinished frame to the front, and
    /// gives back memory a huge literal left behind.
    fn compact(&mut self) {
        let shift = self.frame_start;
        if shift == 0 {
            return;
        }
        self.buf.drain(..shift);
        if self.buf.capacity() > 16 << 20 && self.buf.len() < self.buf.capacity() / 4 {
            self.buf.shrink_to((self.buf.len() * 2).max(1 << 20));
        }
        self.frame_start = 0;
        self.position = match self.position {
            Position::Line {
                line_start,
                searched,
            } => Position::Line {
                line_start: line_start - shift,
                searched,
            },
            Position::Literal { end, length } => Position::Literal {
                end: end - shift,
                length,
            },
        };
    }
}

/// If `line` (ending in LF) ends with `{N}` or `{N+}` before its line ending,
/// returns N.
pub(crate) fn literal_announcement(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut framer = ResponseFramer::new(FramingLimits::default());
        let mut out = Vec::new();
        for chunk in chunks {
            framer.push(chunk);
            while let Some(frame) = framer.next_frame().expect("valid input") {
                out.push(frame.to_vec());
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_literals() {
        let input = b"* OK ready\r\n* 1 FETCH (BODY[] {5}\r\nab\r\nc UID 3)\r\nA1 OK done\r\n";
        let got = frames(&[input]);
        assert_eq!(
            got,
            vec![
                b"* OK ready\r\n".to_vec(),
                b"* 1 FETCH (BODY[] {5}\r\nab\r\nc UID 3)\r\n".to_vec(),
                b"A1 OK done\r\n".to_vec(),
            ]
        );
    }

    #[test]
    fn same_frames_whatever_the_chunking() {
        let input: &[u8] =
            b"* LIST () \"/\" {3}\r\na{b\r\n* 2 FETCH (BINARY[] ~{4}\r\n\0\r\n\0 X {0}\r\n)\r\nA OK x\r\n";
        let whole = frames(&[input]);
        assert_eq!(whole.len(), 3);
        for size in 1..input.len() {
            let chunks: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(frames(&chunks), whole, "chunk size {size}");
        }
    }

    #[test]
    fn literal_bytes_are_never_read_as_lines() {
        // The literal contains what looks like a tagged completion.
        let input = b"* 1 FETCH (BODY[] {14}\r\nA1 OK fake\r\n\r\n)\r\n";
        assert_eq!(frames(&[input]), vec![input.to_vec()]);
    }

    #[test]
    fn incomplete_frames_wait() {
        let mut framer = ResponseFramer::new(FramingLimits::default());
        framer.push(b"* 1 FETCH (BODY[] {10}\r\n12345");
        assert_eq!(framer.next_frame().unwrap(), None);
        assert!(
            framer.waiting_for().contains("5 bytes received"),
            "{}",
            framer.waiting_for()
        );
        framer.push(b"67890)\r\n");
        assert!(framer.next_frame().unwrap().is_some());
        assert!(!framer.has_partial());
    }

    #[test]
    fn oversized_literal_is_refused_before_buffering() {
        let mut framer = ResponseFramer::new(FramingLimits {
            max_literal: 10,
            max_line: 100,
        });
        framer.push(b"* 1 FETCH (BODY[] {4294967296}\r\n");
        assert!(matches!(
            framer.next_frame(),
            Err(ImapError::LiteralTooLarge {
                announced: 4_294_967_296,
                limit: 10
            })
        ));
    }

    #[test]
    fn overlong_line_is_refused() {
        let mut framer = ResponseFramer::new(FramingLimits {
            max_literal: 10,
            max_line: 8,
        });
        framer.push(b"* OK this is long");
        assert!(matches!(
            framer.next_frame(),
            Err(ImapError::LineTooLong { limit: 8 })
        ));
    }

    #[test]
    fn large_literal_in_small_chunks_is_linear() {
        let size = 20 << 20;
        let mut framer = ResponseFramer::new(FramingLimits::default());
        let head = format!("* 1 FETCH (BODY[] {{{size}}}\r\n");
        framer.push(head.as_bytes());
        let chunk = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        while sent < size {
            assert_eq!(framer.next_frame().unwrap(), None);
            let n = chunk.len().min(size - sent);
            framer.push(&chunk[..n]);
            sent += n;
        }
        framer.push(b")\r\n");
        let frame = framer.next_frame().unwrap().expect("complete");
        assert_eq!(frame.len(), head.len() + size + 3);
    }

    #[test]
    fn announcements_are_recognised_only_at_line_end() {
        assert_eq!(literal_announcement(b"x {5}\r\n"), Some(5));
        assert_eq!(literal_announcement(b"x {5+}\r\n"), Some(5));
        assert_eq!(literal_announcement(b"x ~{12}\n"), Some(12));
        assert_eq!(literal_announcement(b"x {5} y\r\n"), None);
        assert_eq!(literal_announcement(b"x {}\r\n"), None);
        assert_eq!(literal_announcement(b"x {a}\r\n"), None);
        assert_eq!(literal_announcement(b"x {99999999999999999999}\r\n"), None);
    }
}
