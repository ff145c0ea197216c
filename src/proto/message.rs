//! Reassembly of fragmented messages (RFC 6455 section 5.4).
//!
//! A message that arrives whole, in one frame and one read, never comes here:
//! the connection hands it out in place. Everything else (several fragments,
//! or one frame split across reads) is copied once into the assembler's
//! buffer, which the finished message then takes with it.

use super::compress::Decompressor;
use super::error::ProtocolError;

/// What a data message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Binary data (opcode 0x2).
    Binary,
}

/// Collects the payload of a message in progress, within a size limit.
/// The message's kind is kept by the caller (the connection), where it
/// packs with other small fields: every connection carries an assembler.
///
/// The buffer is boxed and made only when a message needs assembling: an
/// idle connection keeps 8 bytes here rather than a `Vec`'s 24.
#[derive(Debug, Default)]
pub struct Assembler {
    buf: Option<Box<AsmBuf>>,
}

/// What an assembler holds while it holds anything.
#[derive(Debug, Default)]
struct AsmBuf {
    data: Vec<u8>,
    /// permessage-deflate's decompressor (see the connection): kept here,
    /// beside the bytes it inflates into, so that a connection pays for
    /// it only while it has one.
    inflater: Option<Box<Decompressor>>,
}

impl Assembler {
    /// Checks that `more` bytes still fit within `max` bytes in total.
    ///
    /// Checked against the declared frame length before any of the payload is
    /// read, so an oversized message fails at its header. Overflow-safe: the
    /// sum is computed with `checked_add` and a sum past `u64::MAX` is too big.
    pub fn check_room(&self, more: u64, max: u64) -> Result<(), ProtocolError> {
        let have = self.buf.as_ref().map_or(0, |b| b.data.len()) as u64;
        match have.checked_add(more) {
            Some(total) if total <= max => Ok(()),
            total => Err(ProtocolError::MessageTooBig {
                len: total.unwrap_or(u64::MAX),
                max,
            }),
        }
    }

    /// Appends payload bytes (already unmasked).
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf
            .get_or_insert_with(Default::default)
            .data
            .extend_from_slice(bytes);
    }

    /// The payload so far and the decompressor, for inflating onto it.
    pub fn inflate_parts(&mut self) -> (&mut Vec<u8>, Option<&mut Decompressor>) {
        let b = self.buf.get_or_insert_with(Default::default);
        (&mut b.data, b.inflater.as_deref_mut())
    }

    /// Where the decompressor is kept.
    pub fn inflater(&mut self) -> &mut Option<Box<Decompressor>> {
        &mut self.buf.get_or_insert_with(Default::default).inflater
    }

    /// Ends the message, handing over its payload.
    pub fn finish(&mut self) -> Vec<u8> {
        let data = match self.buf.as_mut() {
            Some(b) => std::mem::take(&mut b.data),
            None => return Vec::new(),
        };
        self.drop_if_empty();
        data
    }

    /// Drops any message in progress and its memory.
    pub fn reset(&mut self) {
        if let Some(b) = self.buf.as_mut() {
            b.data = Vec::new();
        }
        self.drop_if_empty();
    }

    /// Frees the box once it holds neither bytes nor a decompressor.
    pub fn drop_if_empty(&mut self) {
        if self
            .buf
            .as_ref()
            .is_some_and(|b| b.inflater.is_none() && b.data.capacity() == 0)
        {
            self.buf = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_overflow_safe() {
        let mut a = Assembler::default();
        a.push(b"abc");
        assert_eq!(a.check_room(7, 10), Ok(()));
        assert_eq!(
            a.check_room(8, 10),
            Err(ProtocolError::MessageTooBig { len: 11, max: 10 })
        );
        assert_eq!(
            a.check_room(u64::MAX, u64::MAX),
            Err(ProtocolError::MessageTooBig {
                len: u64::MAX,
                max: u64::MAX
            })
        );
        assert_eq!(a.finish(), b"abc".to_vec());
        assert_eq!(a.check_room(10, 10), Ok(()));
    }
}
