//! The protobuf wire format, read from a borrowed slice: keys, varints and length-delimited
//! values, which are all Kubernetes' messages use.
//!
//! The input is whatever a client sent, so every read checks what is left first: a length is
//! compared with the remaining bytes before anything is sliced, nothing is allocated from a
//! length on the wire, and a value is only ever a subslice of the input.

use std::fmt;

/// The largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// A varint of a 64-bit number takes at most 10 bytes.
const MAX_VARINT_BYTES: usize = 10;

/// Why bytes are not well-formed protobuf.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("the input ends inside a varint")]
    TruncatedVarint,
    #[error("a varint is longer than the 10 bytes a 64-bit number takes")]
    VarintTooLong,
    #[error("a length of {length} bytes runs past the {remaining} bytes left")]
    LengthBeyondInput { length: u64, remaining: usize },
    #[error("field number {0} is outside 1 to 536870911")]
    InvalidFieldNumber(u64),
    #[error("wire type {0} does not exist")]
    UnknownWireType(u8),
}

/// How a field's value is laid out on the wire (the low 3 bits of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u8) -> Option<WireType> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }
}

impl fmt::Display for WireType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireType::Varint => "0 (varint)",
            WireType::Fixed64 => "1 (64-bit)",
            WireType::Len => "2 (length-delimited)",
            WireType::StartGroup => "3 (start group)",
            WireType::EndGroup => "4 (end group)",
            WireType::Fixed32 => "5 (32-bit)",
        })
    }
}

/// Reads one message's bytes front to back.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    pub(super) fn key(&mut self) -> Result<Option<(u32, WireType)>, WireError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        // Masked to 3 bits, so the cast keeps every bit.
        let bits = (key & 0b111) as u8;
        let wire_type = WireType::from_bits(bits).ok_or(WireError::UnknownWireType(bits))?;
        let number = key >> 3;
        match u32::try_from(number) {
            Ok(number) if number != 0 && u64::from(number) <= MAX_FIELD_NUMBER => {
                Ok(Some((number, wire_type)))
            }
            _ => Err(WireError::InvalidFieldNumber(number)),
        }
    }

    /// A varint. Like Go's decoder, bits past the 64th in a 10th byte are dropped.
    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
        let bytes: &'a [u8] = self.rest;
        let mut value: u64 = 0;
        for (index, &byte) in bytes.iter().take(MAX_VARINT_BYTES).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.rest = bytes.get(index + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        if bytes.len() >= MAX_VARINT_BYTES {
            Err(WireError::VarintTooLong)
        } else {
            Err(WireError::TruncatedVarint)
        }
    }

    /// A length-delimited value: a varint length, then that many bytes.
    pub(super) fn len_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let length = self.varint()?;
        let remaining = self.rest.len();
        let length_in_input = usize::try_from(length)
            .ok()
            .filter(|&length| length <= remaining);
        let Some(length_in_input) = length_in_input else {
            return Err(WireError::LengthBeyondInput { length, remaining });
        };
        let rest: &'a [u8] = self.rest;
        let (value, rest) = rest.split_at(length_in_input);
        self.rest = rest;
        Ok(value)
    }
}
