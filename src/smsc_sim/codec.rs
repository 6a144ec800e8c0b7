//! Framing for the simulator: rusmpp's `CommandCodec` per frame, with
//! undecodable PDUs surfaced as [`Frame::Invalid`] instead of an error.
//!
//! `Framed` stops yielding after the first decoder error, which would turn
//! one bad PDU into a dropped session; SMPP wants a generic_nack instead, so
//! the length prefix is handled here and each complete frame is decoded by a
//! fresh `CommandCodec`.

use rusmpp::tokio_codec::{CommandCodec, EncodeError};
use rusmpp::Command;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Smallest valid PDU: the 16-octet header.
const HEADER_LEN: usize = 16;

/// One inbound PDU.
#[derive(Debug)]
pub(super) enum Frame {
    /// A PDU rusmpp could decode.
    Command(Box<Command>),
    /// A well-framed PDU whose body rusmpp rejected.
    Invalid {
        command_id: u32,
        sequence_number: u32,
    },
}

/// Error that ends a session: I/O failure or a length prefix that makes
/// further framing impossible.
#[derive(Debug)]
pub(super) enum FrameError {
    Io(std::io::Error),
    BadLength(usize),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

impl From<EncodeError> for FrameError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::Io(e) => FrameError::Io(e),
            other => FrameError::Io(std::io::Error::other(other.to_string())),
        }
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "I/O error: {e}"),
            FrameError::BadLength(len) => write!(f, "invalid command_length {len}"),
        }
    }
}

/// Codec used by every simulator session.
#[derive(Debug)]
pub(super) struct SimCodec {
    max_length: usize,
}

impl SimCodec {
    pub(super) fn new(max_length: usize) -> Self {
        Self { max_length }
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .unwrap_or(0)
}

impl Decoder for SimCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = usize::try_from(be_u32(src, 0)).unwrap_or(usize::MAX);
        if !(HEADER_LEN..=self.max_length).contains(&len) {
            return Err(FrameError::BadLength(len));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        let command_id = be_u32(&frame, 4);
        let sequence_number = be_u32(&frame, 12);
        let mut codec = CommandCodec::new().with_max_length(self.max_length);
        Ok(Some(match codec.decode(&mut frame) {
            Ok(Some(command)) => Frame::Command(Box::new(command)),
            Ok(None) | Err(_) => Frame::Invalid {
                command_id,
                sequence_number,
            },
        }))
    }
}

impl Encoder<Command> for SimCodec {
    type Error = FrameError;

    fn encode(&mut self, item: Command, dst: &mut BytesMut) -> Result<(), FrameError> {
        CommandCodec::new().encode(item, dst)?;
        Ok(())
    }
}
