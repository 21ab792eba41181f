//! A text column built straight into Arrow's string layout, with a cheaper copy of short
//! values. Arrow's `StringBuilder` copies each value with a call to the C library's
//! `memmove`: for the ids, categories, stores and channels of a large CSV ingest (values of
//! 3 to 13 bytes, five per row) those calls were about 7 % of the ingest's CPU time. A value
//! of at most [`SHORT`] bytes that lies inside a larger text (a CSV block's) with room after
//! it is taken as a [`ShortText`], [`SHORT`] bytes copied at once, and appended by one such
//! copy cut to its length.

use std::sync::Arc;

use arrow::array::{ArrayRef, NullBufferBuilder, StringArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};

/// Values up to this many bytes are copied in one fixed-size move.
pub const SHORT: usize = 16;

/// A value of at most [`SHORT`] bytes as its length and the [`SHORT`] bytes of text from its
/// start (the value, then whatever followed it): small enough to be gathered in another
/// order from a block's cells without reaching back into the block's text.
#[derive(Clone, Copy)]
pub struct ShortText {
    len: u8,
    window: [u8; SHORT],
}

impl ShortText {
    /// `value`'s window when it is at most [`SHORT`] bytes and lies in `text` with room for
    /// the window after its start; `None` otherwise (a value outside `text` included).
    pub fn of(value: &str, text: &[u8]) -> Option<ShortText> {
        let at = (value.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        if value.len() > SHORT || at > text.len() || text.len() - at < SHORT {
            return None;
        }
        // `value`'s address lies in `text`, so `value` is `text[at..at + value.len()]`.
        let window = text[at..at + SHORT].try_into().ok()?;
        Some(ShortText {
            len: value.len() as u8,
            window,
        })
    }
}

/// Text values appended in order, then made one Arrow string array.
pub struct TextBuilder {
    /// The values' bytes back to back (a [`SHORT`] copy writes past the end, then is cut).
    values: Vec<u8>,
    /// Where each value ends in `values`, after a leading 0.
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl TextBuilder {
    /// A builder with room for `rows` values of `bytes` bytes in all (and one [`SHORT`] copy
    /// past them).
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            values: Vec::with_capacity(bytes + SHORT),
            offsets,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append_value(&mut self, value: &str) {
        self.values.extend_from_slice(value.as_bytes());
        self.end_value();
    }

    /// Appends a short value by its window: one fixed-size copy, cut to its length.
    pub fn append_short(&mut self, short: &ShortText) {
        let end = self.values.len() + usize::from(short.len);
        self.values.extend_from_slice(&short.window);
        self.values.truncate(end);
        self.end_value();
    }

    pub fn append_null(&mut self) {
        self.offsets.push(self.current_offset());
        self.nulls.append_null();
    }

    pub fn append_option(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.append_value(value),
            None => self.append_null(),
        }
    }

    /// The values appended, as one array; the builder is left empty.
    pub fn finish(&mut self) -> ArrayRef {
        let values = std::mem::take(&mut self.values);
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let array = StringArray::try_new(offsets, values.into(), self.nulls.finish())
            .expect("values appended as text, each ending at an offset");
        Arc::new(array)
    }

    fn end_value(&mut self) {
        self.offsets.push(self.current_offset());
        self.nulls.append_non_null();
    }

    /// The end of the values so far as an Arrow offset. Arrow's own builder stops at the
    /// same limit (2 GiB of text in one array).
    fn current_offset(&self) -> i32 {
        i32::try_from(self.values.len()).expect("a text column's array holds at most 2 GiB")
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn values_read_back_as_appended_whichever_copy_took_them() {
        let text_str = String::from("store,online,a-much-longer-value-than-sixteen-bytes,x");
        let text = text_str.as_bytes();
        let short = |value: &str| ShortText::of(value, text);
        // Inside the text with room after it; at its very end, longer than SHORT, or outside
        // it: no window.
        assert!(short(&text_str[text.len() - 1..]).is_none());
        assert!(short(&text_str[13..51]).is_none());
        assert!(short("online").is_none());
        let mut builder = TextBuilder::with_capacity(2, 4);
        builder.append_short(&short(&text_str[0..5]).unwrap());
        builder.append_null();
        builder.append_short(&short(&text_str[6..12]).unwrap());
        builder.append_short(&short(&text_str[5..5]).unwrap());
        builder.append_value(&text_str[13..51]);
        builder.append_option(Some("Ünïcode"));
        let array = builder.finish();
        let strings = array.as_string::<i32>();
        let read: Vec<Option<&str>> = strings.iter().collect();
        assert_eq!(
            read,
            vec![
                Some("store"),
                None,
                Some("online"),
                Some(""),
                Some("a-much-longer-value-than-sixteen-bytes"),
                Some("Ünïcode"),
            ]
        );
        assert_eq!(strings.null_count(), 1);
        assert!(builder.is_empty());
        assert_eq!(builder.finish().len(), 0);
    }
}
