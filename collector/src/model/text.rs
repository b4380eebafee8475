//! [`Text`]: the text fields of a span row, as ranges of one buffer per request.
//!
//! A span row carries up to seven texts (name, attributes, events, links, status message,
//! trace state, `http.route`). As `String`s each non-empty one was an allocation on the thread
//! that decoded the request and a free on the flusher that wrote the part — three or four per
//! span, and with the allocator's per-thread pages, frees from another thread left memory held
//! until the decoding thread collected it. Design: the receiver writes every text of a request
//! into one buffer ([`TextBuf`]) and each row holds a range of it behind a shared pointer, so a
//! request's texts are one allocation, freed once when its last row goes. A text built alone
//! (rows read back from a part, tests) owns a buffer of its own.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A string: a range of a buffer that may be shared with other texts. Empty texts hold no
/// buffer. Compares, hashes and prints as the `str` it derefs to.
#[derive(Clone, Default)]
pub struct Text {
    buf: Option<Arc<String>>,
    start: u32,
    /// [`WHOLE`] for a buffer of its own, whatever its length.
    end: u32,
}

/// The `end` of a text that is its whole buffer; shared buffers end below it ([`TextBuf::take`]).
const WHOLE: u32 = u32::MAX;

impl Text {
    pub fn as_str(&self) -> &str {
        match &self.buf {
            Some(buf) if self.end == WHOLE => buf,
            Some(buf) => &buf[self.start as usize..self.end as usize],
            None => "",
        }
    }

    /// The text's bytes. Unlike `as_str`, slicing bytes checks no character boundaries, so
    /// only the text's first bytes are read when a caller reads only those (the flush's views
    /// of long texts read their first four bytes, and the text lies in memory written seconds
    /// ago by another core: reading its last byte as well was a second cache miss).
    pub fn bytes(&self) -> &[u8] {
        match &self.buf {
            Some(buf) if self.end == WHOLE => buf.as_bytes(),
            Some(buf) => &buf.as_bytes()[self.start as usize..self.end as usize],
            None => b"",
        }
    }

    /// The buffer this text is a range of and where in it the text starts; `None` when empty.
    /// For the flush, which writes string columns as views into these buffers.
    pub fn buffer(&self) -> Option<(&Arc<String>, usize)> {
        let buf = self.buf.as_ref()?;
        Some((buf, if self.end == WHOLE { 0 } else { self.start as usize }))
    }

    /// Memory this text accounts for: its own buffer whole, or its length of a shared one
    /// (the texts of a request's rows add up to their buffer).
    pub fn memory_bytes(&self) -> usize {
        match &self.buf {
            Some(buf) if self.end == WHOLE => buf.capacity() + size_of::<String>() + 2 * size_of::<usize>(),
            Some(_) => (self.end - self.start) as usize,
            None => 0,
        }
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        if s.is_empty() {
            return Text::default();
        }
        Text { buf: Some(Arc::new(s)), start: 0, end: WHOLE }
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::from(s.to_string())
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// The buffer a request's texts are written into: [`TextBuf::push`] (or writing to
/// [`TextBuf::text`] and then [`TextBuf::take`]) gives a [`Pending`] range, and
/// [`TextBuf::seal`] turns the ranges into [`Text`]s sharing the buffer.
#[derive(Debug, Default)]
pub struct TextBuf {
    text: String,
    mark: usize,
}

/// A range of a [`TextBuf`] not yet sealed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    start: u32,
    end: u32,
}

impl TextBuf {
    pub fn with_capacity(bytes: usize) -> TextBuf {
        TextBuf { text: String::with_capacity(bytes), mark: 0 }
    }

    /// The buffer, to append one text to; [`TextBuf::take`] then ends it.
    pub fn text(&mut self) -> &mut String {
        &mut self.text
    }

    /// The text appended since the last [`TextBuf::take`] or [`TextBuf::push`]; `None` when
    /// the buffer has grown past what a range can address (4 GiB).
    pub fn take(&mut self) -> Option<Pending> {
        let start = u32::try_from(self.mark).ok()?;
        let end = u32::try_from(self.text.len()).ok().filter(|&end| end < WHOLE)?;
        self.mark = self.text.len();
        Some(Pending { start, end })
    }

    pub fn push(&mut self, s: &str) -> Option<Pending> {
        self.text.push_str(s);
        self.take()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The buffer, shared by the texts [`Sealed::text`] makes of its ranges, shrunk to its
    /// length (the head counts texts by length). The `slo-gate` binary runs on the system
    /// allocator, whose `realloc` shrinks a block in place (glibc splits the chunk, or
    /// `mremap`s a mapped one), so this costs no copy; copying the buffer into an exact
    /// allocation was 1.6% of the server's CPU under the ingest benchmark.
    pub fn seal(self) -> Sealed {
        if self.text.is_empty() {
            return Sealed { buf: None };
        }
        let mut text = self.text;
        text.shrink_to_fit();
        Sealed { buf: Some(Arc::new(text)) }
    }
}

/// A sealed [`TextBuf`].
#[derive(Debug)]
pub struct Sealed {
    buf: Option<Arc<String>>,
}

impl Sealed {
    /// The text of a range this buffer gave; empty for an empty range.
    pub fn text(&self, range: Pending) -> Text {
        match &self.buf {
            Some(buf) if range.start < range.end => {
                Text { buf: Some(Arc::clone(buf)), start: range.start, end: range.end }
            }
            _ => Text::default(),
        }
    }
}

/// Texts sharing one buffer (of one row read back from a part, say): one allocation for all.
pub fn texts_of<const N: usize>(values: [&str; N]) -> [Text; N] {
    let mut buf = TextBuf::with_capacity(values.iter().map(|v| v.len()).sum());
    let ranges = values.map(|v| buf.push(v));
    let sealed = buf.seal();
    std::array::from_fn(|i| match ranges[i] {
        Some(range) => sealed.text(range),
        // Past what a range addresses: a buffer of its own.
        None => Text::from(values[i]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_one_buffer_read_back_their_ranges() {
        let mut buf = TextBuf::default();
        let a = buf.push("GET /cart").unwrap();
        let empty = buf.push("").unwrap();
        buf.text().push_str("[{\"key\":");
        buf.text().push_str("\"k\"}]");
        let b = buf.take().unwrap();
        let c = buf.push("é😀").unwrap();
        let sealed = buf.seal();
        let (a, empty, b, c) = (sealed.text(a), sealed.text(empty), sealed.text(b), sealed.text(c));
        drop(sealed);
        assert_eq!(a, "GET /cart");
        assert_eq!(b, "[{\"key\":\"k\"}]");
        assert_eq!(c.as_str(), "é😀");
        assert_eq!(empty, "");
        assert_eq!(empty.memory_bytes(), 0);
        assert_eq!(a.memory_bytes() + b.memory_bytes() + c.memory_bytes(), 9 + 13 + 6, "shared: lengths");
        let total = 9 + 13 + 6;
        let Some(shared) = &a.buf else { panic!("a has the buffer") };
        assert_eq!(Arc::strong_count(shared), 3);
        assert_eq!(shared.len(), total);
        drop((b, c));
        assert_eq!(a, Text::from("GET /cart"), "equal by content, whatever the buffer");
        assert!(a.memory_bytes() < total);
    }

    #[test]
    fn texts_of_one_row_share_a_buffer() {
        let [a, empty, b] = texts_of(["name", "", "[]"]);
        assert_eq!((a.as_str(), empty.as_str(), b.as_str()), ("name", "", "[]"));
        assert!(Arc::ptr_eq(a.buf.as_ref().unwrap(), b.buf.as_ref().unwrap()));
        assert!(empty.buf.is_none());
    }

    #[test]
    fn a_text_of_its_own_counts_its_whole_buffer() {
        let t = Text::from(String::with_capacity(100) + "x");
        assert_eq!(t, "x");
        assert!(t.memory_bytes() >= 100);
        assert_eq!(Text::from(""), Text::default());
        assert_eq!(Text::from(String::new()).memory_bytes(), 0);
        assert_eq!(format!("{:?} {}", Text::from("a\"b"), Text::from("c")), "\"a\\\"b\" c");
    }
}
