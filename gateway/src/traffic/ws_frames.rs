//! WebSocket frame limits, applied as each frame's header arrives.
//!
//! The codec (actix-http's, on both sides of the relay) checks a frame's
//! length only once the whole frame is buffered: a peer that declares a
//! frame of 2^40 bytes and then streams payload would have the gateway
//! buffer all of it before saying no. Here each frame header is read as it
//! comes, and a frame over `max_frame_bytes`, or a message whose fragments
//! together declare more than `max_message_bytes`, is refused before any of
//! its payload is read. What a socket holds is then bounded by the limits
//! (one frame at most, and what the transport has in flight), whatever the
//! peer sends.
//!
//! - [`Guarded`]: the client's bytes, checked as they stream past (no copy),
//!   ahead of actix-ws's message stream;
//! - [`GuardedCodec`]: the upstream's codec, checking the header at the
//!   front of the read buffer before the frame is decoded.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{Decoder, Encoder};
use actix_web::error::PayloadError;
use actix_web::web::{Bytes, BytesMut};
use actix_ws::ProtocolError;
use futures_util::Stream;

use crate::traffic::upstream::client::{UpstreamSocket, WsCodec, WsFrame, WsIo};

/// The longest frame header: 2 bytes, a 64-bit length, a mask.
const MAX_HEADER: usize = 14;

/// The limits every frame and message is held to, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    pub max_frame: u64,
    pub max_message: u64,
}

/// What a frame header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Bytes of the header itself (mask included).
    header_len: usize,
    /// The payload length it declares.
    len: u64,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Text or binary: the first (or only) frame of a message.
    Starts,
    /// A continuation of the message being sent.
    Continues,
    /// Ping, pong, close (or an opcode the codec will refuse).
    Control,
}

/// The header at the start of `src`, once all of it is there.
fn header(src: &[u8]) -> Option<Header> {
    let (first, second) = (*src.first()?, *src.get(1)?);
    let masked = second & 0x80 != 0;
    let (len, at) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*src.get(2)?, *src.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = src.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let header_len = at + if masked { 4 } else { 0 };
    if src.len() < header_len {
        return None;
    }
    let kind = match first & 0x0f {
        0x0 => Kind::Continues,
        0x1 | 0x2 => Kind::Starts,
        _ => Kind::Control,
    };
    Some(Header {
        header_len,
        len,
        kind,
    })
}

/// The limits over one direction's sequence of frames.
#[derive(Debug)]
struct Sizes {
    limits: FrameLimits,
    /// What the message being sent has declared so far.
    message: u64,
}

impl Sizes {
    fn new(limits: FrameLimits) -> Self {
        Self { limits, message: 0 }
    }

    /// Whether the frame this header opens may be read.
    fn admit(&mut self, h: &Header) -> bool {
        if h.len > self.limits.max_frame {
            return false;
        }
        self.message = match h.kind {
            Kind::Control => return true,
            Kind::Starts => h.len,
            Kind::Continues => self.message.saturating_add(h.len),
        };
        self.message <= self.limits.max_message
    }
}

/// A byte stream (the client's side of an upgraded connection) whose frame
/// headers are checked as they pass; a frame over the limits ends it with
/// [`PayloadError::Overflow`] (see [`is_overflow`]).
pub struct Guarded<S> {
    inner: S,
    sizes: Sizes,
    /// A header split across chunks, so far.
    partial: [u8; MAX_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    skip: u64,
    refused: bool,
}

impl<S> Guarded<S> {
    pub fn new(inner: S, limits: FrameLimits) -> Self {
        Self {
            inner,
            sizes: Sizes::new(limits),
            partial: [0; MAX_HEADER],
            have: 0,
            skip: 0,
            refused: false,
        }
    }

    /// Follow the frames through `data`; `false` at a header over the limits.
    fn scan(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).map_or(data.len(), |s| s.min(data.len()));
                self.skip -= n as u64;
                data = &data[n..];
                continue;
            }
            let take = (MAX_HEADER - self.have).min(data.len());
            self.partial[self.have..self.have + take].copy_from_slice(&data[..take]);
            match header(&self.partial[..self.have + take]) {
                None => {
                    self.have += take;
                    data = &data[take..];
                }
                Some(h) => {
                    data = &data[h.header_len - self.have..];
                    self.have = 0;
                    if !self.sizes.admit(&h) {
                        return false;
                    }
                    self.skip = h.len;
                }
            }
        }
        true
    }
}

impl<S> Stream for Guarded<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if this.scan(&chunk) {
                    Poll::Ready(Some(Ok(chunk)))
                } else {
                    this.refused = true;
                    Poll::Ready(Some(Err(PayloadError::Overflow)))
                }
            }
            other => other,
        }
    }
}

/// Whether a protocol error from actix-ws's message stream is [`Guarded`]
/// refusing a frame (actix-ws wraps the payload's error in an I/O error).
pub fn is_overflow(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::Overflow => true,
        ProtocolError::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PayloadError>())
            .is_some_and(|p| matches!(p, PayloadError::Overflow)),
        _ => false,
    }
}

/// The upstream's WebSocket codec with the limits checked on each frame's
/// header, before the frame is buffered: a frame over them is
/// [`ProtocolError::Overflow`].
pub struct GuardedCodec {
    inner: WsCodec,
    sizes: Sizes,
    /// The frame at the front of the buffer has been admitted.
    admitted: bool,
}

impl GuardedCodec {
    pub fn new(inner: WsCodec, limits: FrameLimits) -> Self {
        Self {
            inner,
            sizes: Sizes::new(limits),
            admitted: false,
        }
    }
}

/// An upstream's WebSocket with its frames held to the limits.
pub type GuardedSocket = actix_codec::Framed<WsIo, GuardedCodec>;

/// Hold an opened upstream socket's frames to `limits` (what it has read
/// already stays in its buffer, and is checked like the rest).
pub fn guard(socket: UpstreamSocket, limits: FrameLimits) -> GuardedSocket {
    socket.into_map_codec(|codec| GuardedCodec::new(codec, limits))
}

impl Decoder for GuardedCodec {
    type Item = WsFrame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        // The codec consumes whole frames: the buffer starts at a header.
        if !self.admitted {
            let Some(h) = header(src) else {
                return Ok(None);
            };
            if !self.sizes.admit(&h) {
                return Err(ProtocolError::Overflow);
            }
            self.admitted = true;
        }
        let frame = self.inner.decode(src)?;
        if frame.is_some() {
            self.admitted = false;
        }
        Ok(frame)
    }
}

impl Encoder<actix_ws::Message> for GuardedCodec {
    type Error = ProtocolError;

    fn encode(&mut self, item: actix_ws::Message, dst: &mut BytesMut) -> Result<(), Self::Error> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LIMITS: FrameLimits = FrameLimits {
        max_frame: 100,
        max_message: 250,
    };

    /// A client frame header (masked) declaring `len` bytes.
    fn client_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
        let mut h = vec![opcode | if fin { 0x80 } else { 0 }];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=0xffff => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h.extend_from_slice(&[1, 2, 3, 4]);
        h
    }

    #[test]
    fn headers_are_read_whole_or_not_at_all() {
        let h = client_header(0x2, true, 1 << 40);
        for cut in 0..h.len() {
            assert_eq!(header(&h[..cut]), None, "{cut}");
        }
        assert_eq!(
            header(&h),
            Some(Header {
                header_len: 14,
                len: 1 << 40,
                kind: Kind::Starts
            })
        );
        // The server's frames are not masked.
        assert_eq!(header(&[0x89, 5]).unwrap().header_len, 2);
        assert_eq!(header(&[0x00, 126, 1, 0]).unwrap().len, 256);
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_at_its_header() {
        let mut g = Guarded::new(
            futures_util::stream::empty::<Result<Bytes, PayloadError>>(),
            LIMITS,
        );
        // Frames within the limits pass, split anywhere.
        let mut ok = client_header(0x1, true, 100);
        ok.extend(vec![0u8; 100]);
        ok.extend(client_header(0x9, true, 3));
        ok.extend([1, 2, 3]);
        for b in ok.chunks(7) {
            assert!(g.scan(b));
        }
        // The first header byte of an oversized frame is not enough; its
        // last one is, and no payload is needed.
        let big = client_header(0x2, true, 1 << 40);
        assert!(g.scan(&big[..5]));
        assert!(!g.scan(&big[5..]));
    }

    #[test]
    fn fragments_count_toward_one_message() {
        let mut s = Sizes::new(LIMITS);
        let frame = |opcode, len| header(&client_header(opcode, false, len)).unwrap();
        assert!(s.admit(&frame(0x2, 100)));
        assert!(s.admit(&frame(0x9, 50)), "a ping between fragments");
        assert!(s.admit(&frame(0x0, 100)));
        assert!(!s.admit(&frame(0x0, 100)), "250 bytes declared and more");
        // A new message starts the count again.
        assert!(s.admit(&frame(0x1, 100)));
    }

    #[test]
    fn the_upstream_codec_refuses_before_the_payload_arrives() {
        let mut c = GuardedCodec::new(WsCodec::new().max_size(1 << 20).client_mode(), LIMITS);
        let mut buf = BytesMut::from(&[0x82u8, 127][..]);
        assert!(c.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(matches!(c.decode(&mut buf), Err(ProtocolError::Overflow)));
        let mut c = GuardedCodec::new(WsCodec::new().client_mode(), LIMITS);
        let mut buf = BytesMut::from(&[0x82u8, 3, 1, 2, 3, 0x81, 1][..]);
        assert!(matches!(
            c.decode(&mut buf).unwrap(),
            Some(WsFrame::Binary(_))
        ));
        assert!(
            c.decode(&mut buf).unwrap().is_none(),
            "waits for its payload"
        );
        buf.extend_from_slice(b"x");
        assert!(matches!(
            c.decode(&mut buf).unwrap(),
            Some(WsFrame::Text(_))
        ));
    }

    #[test]
    fn the_wrapped_error_is_told_apart() {
        let wrapped = ProtocolError::Io(std::io::Error::other(PayloadError::Overflow));
        assert!(is_overflow(&wrapped));
        assert!(is_overflow(&ProtocolError::Overflow));
        assert!(!is_overflow(&ProtocolError::Io(std::io::Error::other("x"))));
    }
}
