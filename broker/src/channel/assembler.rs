//! Assembles a publish from its frames: basic.publish, then a content header, then body frames
//! until `body_size` bytes have arrived. A pure state machine; the channel feeds it frames and
//! routes what it completes.

use crate::connection::frame::{ContentHeader, Publish, ShortStr};
use crate::error::{AmqpError, AmqpResult};
use bytes::{Bytes, BytesMut};

/// A fully received message, ready to route.
#[derive(Debug)]
pub struct Complete {
    pub publish: Publish,
    pub header: ContentHeader,
    pub body: Bytes,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    AwaitingHeader(Publish),
    AwaitingBody {
        publish: Publish,
        header: ContentHeader,
        body: Body,
    },
}

/// The body received so far. A body that fits one frame is kept zero-copy: a slice of the
/// connection's read buffer. A longer one is copied, frame by frame as it arrives, into one
/// buffer of its full size: holding on to the frames instead would keep the read buffer
/// they share from being reused, so that every large message would cost a fresh read buffer
/// (and the page faults of touching it) on top of the copy that joins them anyway.
#[derive(Debug)]
enum Body {
    Empty,
    One(Bytes),
    Many(BytesMut),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Empty => 0,
            Body::One(b) => b.len(),
            Body::Many(b) => b.len(),
        }
    }

    /// Adds a chunk; returns true when it started a body that spans several frames.
    fn push(&mut self, chunk: Bytes, total: usize) -> bool {
        let mut started = false;
        *self = match std::mem::replace(self, Body::Empty) {
            Body::Empty if chunk.len() == total => Body::One(chunk),
            Body::Empty => {
                started = true;
                let mut joined = BytesMut::with_capacity(total);
                joined.extend_from_slice(&chunk);
                Body::Many(joined)
            }
            // Not reached (a one-frame body is complete), but joining is still right.
            Body::One(first) => {
                let mut joined = BytesMut::with_capacity(total);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&chunk);
                Body::Many(joined)
            }
            Body::Many(mut joined) => {
                joined.extend_from_slice(&chunk);
                Body::Many(joined)
            }
        };
        started
    }

    fn freeze(self) -> Bytes {
        match self {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        }
    }
}

/// For a body that spans frames: the method and header frames are slices of the read buffer
/// too, so the few bytes the message keeps of them are copied, so that it does not pin that
/// buffer.
fn detach(publish: &mut Publish, header: &mut ContentHeader) {
    publish.exchange = detached(&publish.exchange);
    publish.routing_key = detached(&publish.routing_key);
    header.properties = Bytes::copy_from_slice(&header.properties);
}

/// A copy of `s` that shares no buffer with it.
fn detached(s: &ShortStr) -> ShortStr {
    // The copy is as long as the original, so it fits; keeping the original is the fallback.
    ShortStr::from_string(s.as_str()).unwrap_or_else(|| s.clone())
}

#[derive(Debug, Default)]
pub struct Assembler {
    state: State,
}

/// The class of the basic content header (spec: class 60).
const BASIC_CLASS: u16 = 60;

impl Assembler {
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The error for a method frame arriving while content is expected.
    /// rabbitmq-compat: it names the publish whose content was interrupted (class 60, method 40).
    pub fn method_while_busy(&self) -> AmqpError {
        let err = match self.state {
            State::AwaitingHeader(_) => AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            ),
            _ => AmqpError::unexpected_frame(
                "expected content body, got non content body frame instead",
            ),
        };
        err.during(BASIC_CLASS, 40)
    }

    pub fn start(&mut self, publish: Publish) {
        self.state = State::AwaitingHeader(publish);
    }

    /// Drops a partly received message (the channel is closing).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    pub fn header(
        &mut self,
        header: ContentHeader,
        max_message_size: u64,
    ) -> AmqpResult<Option<Complete>> {
        let publish = match std::mem::take(&mut self.state) {
            State::AwaitingHeader(p) => p,
            State::Idle => {
                return Err(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                ))
            }
            State::AwaitingBody { .. } => {
                return Err(AmqpError::unexpected_frame(
                    "expected content body, got non content body frame instead",
                ))
            }
        };
        if header.class_id != BASIC_CLASS {
            return Err(AmqpError::unexpected_frame(format_args!(
                "expected content header for class 60, got one for class {} instead",
                header.class_id
            )));
        }
        if header.body_size > max_message_size {
            // rabbitmq-compat: raised while handling basic.publish, so the close names it.
            return Err(AmqpError::precondition_failed(format_args!(
                "message size {} is larger than configured max size {}",
                header.body_size, max_message_size
            ))
            .during(60, 40));
        }
        if header.body_size == 0 {
            return Ok(Some(Complete {
                publish,
                header,
                body: Bytes::new(),
            }));
        }
        self.state = State::AwaitingBody {
            publish,
            header,
            body: Body::Empty,
        };
        Ok(None)
    }

    /// Room for the next `size` bytes of the body expected, split off the body's own buffer
    /// for a frame's payload to be read into directly (then handed back to `body_read`).
    /// None unless a body is expected and `size` bytes fit in what is left of it.
    pub fn body_sink(&mut self, size: usize) -> Option<BytesMut> {
        let (publish, header, body) = self.awaiting_body()?;
        let total = usize::try_from(header.body_size).ok()?;
        if body.len() + size > total {
            return None;
        }
        if matches!(body, Body::Empty) {
            *body = Body::Many(BytesMut::with_capacity(total));
            detach(publish, header);
        }
        match body {
            Body::Many(joined) => Some(joined.split_off(joined.len())),
            _ => None,
        }
    }

    /// The room `body_sink` gave, now holding a frame's payload.
    pub fn body_read(&mut self, filled: BytesMut) -> AmqpResult<Option<Complete>> {
        if let Some((_, _, Body::Many(joined))) = self.awaiting_body() {
            let before = joined.len();
            let added = filled.len();
            // Adjacent to `joined` in the same allocation, so this copies nothing.
            joined.unsplit(filled);
            debug_assert_eq!(joined.len(), before + added);
            return self.complete_if_whole();
        }
        // A body was not expected after all: the usual path gives the usual error.
        self.body(filled.freeze())
    }

    /// The message being assembled, while its body is expected.
    fn awaiting_body(&mut self) -> Option<(&mut Publish, &mut ContentHeader, &mut Body)> {
        match &mut self.state {
            State::AwaitingBody {
                publish,
                header,
                body,
            } => Some((publish, header, body)),
            _ => None,
        }
    }

    /// The message, once every byte of its body is in.
    fn complete_if_whole(&mut self) -> AmqpResult<Option<Complete>> {
        let whole = self
            .awaiting_body()
            .is_some_and(|(_, header, body)| body.len() as u64 == header.body_size);
        if !whole {
            return Ok(None);
        }
        let State::AwaitingBody {
            publish,
            header,
            body,
        } = std::mem::take(&mut self.state)
        else {
            return Ok(None);
        };
        Ok(Some(Complete {
            publish,
            header,
            body: body.freeze(),
        }))
    }

    pub fn body(&mut self, chunk: Bytes) -> AmqpResult<Option<Complete>> {
        let Some((publish, header, body)) = self.awaiting_body() else {
            // rabbitmq-compat: rabbit_command_assembler's texts.
            let err = if self.is_idle() {
                AmqpError::unexpected_frame("expected method frame, got non method frame instead")
            } else {
                // Named after the publish whose header was expected, as for a method frame.
                AmqpError::unexpected_frame(
                    "expected content header for class 60, got non content header frame instead",
                )
                .during(BASIC_CLASS, 40)
            };
            self.state = State::Idle;
            return Err(err);
        };
        // body_size was checked against max_message_size, so it fits in usize.
        let total = usize::try_from(header.body_size).unwrap_or(usize::MAX);
        if body.len() + chunk.len() > total {
            self.state = State::Idle;
            return Err(AmqpError::frame_error(format_args!(
                "content body larger than the {total} bytes its header announced"
            )));
        }
        if body.push(chunk, total) {
            detach(publish, header);
        }
        self.complete_if_whole()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::frame::{PropertySummary, ShortStr};
    use crate::error::ReplyCode;

    fn publish() -> Publish {
        Publish {
            exchange: ShortStr::default(),
            routing_key: ShortStr::from_static("q"),
            mandatory: false,
            immediate: false,
        }
    }

    fn header(class_id: u16, body_size: u64) -> ContentHeader {
        ContentHeader {
            class_id,
            body_size,
            properties: Bytes::from_static(&[0, 0]),
            summary: PropertySummary::default(),
        }
    }

    #[test]
    fn body_split_over_frames_is_joined() {
        let mut a = Assembler::default();
        a.start(publish());
        assert!(a.header(header(60, 6), 100).ok().flatten().is_none());
        assert!(a.body(Bytes::from_static(b"abc")).ok().flatten().is_none());
        let done = a.body(Bytes::from_static(b"def")).ok().flatten();
        assert_eq!(done.map(|c| c.body), Some(Bytes::from_static(b"abcdef")));
        assert!(a.is_idle());
    }

    #[test]
    fn a_body_of_several_frames_keeps_no_slice_of_the_frames() {
        // One buffer standing for the connection's read buffer: the publish's strings, the
        // properties and the body frames are all slices of it.
        let read = Bytes::from_static(b"exchangekeyPPabcdef");
        let within = |b: &[u8]| read.as_ptr_range().contains(&b.as_ptr());
        let mut a = Assembler::default();
        a.start(Publish {
            exchange: ShortStr::from_bytes(read.slice(0..8)).unwrap(),
            routing_key: ShortStr::from_bytes(read.slice(8..11)).unwrap(),
            mandatory: false,
            immediate: false,
        });
        let mut h = header(60, 6);
        h.properties = read.slice(11..13);
        assert!(a.header(h, 100).ok().flatten().is_none());
        assert!(a.body(read.slice(13..16)).ok().flatten().is_none());
        let done = a.body(read.slice(16..19)).ok().flatten().unwrap();
        assert_eq!(done.body, Bytes::from_static(b"abcdef"));
        assert_eq!(done.publish.exchange.as_str(), "exchange");
        assert_eq!(done.publish.routing_key.as_str(), "key");
        assert_eq!(done.header.properties, Bytes::from_static(b"PP"));
        for kept in [
            &done.body[..],
            done.publish.exchange.as_bytes(),
            done.publish.routing_key.as_bytes(),
            &done.header.properties[..],
        ] {
            assert!(!within(kept), "{kept:?} still points into the frames");
        }

        // A body of one frame stays zero-copy.
        a.start(publish());
        assert!(a.header(header(60, 3), 100).ok().flatten().is_none());
        let done = a.body(read.slice(13..16)).ok().flatten().unwrap();
        assert!(within(&done.body));
    }

    #[test]
    fn payloads_read_into_the_sink_join_without_copying() {
        let mut a = Assembler::default();
        a.start(publish());
        assert!(a.header(header(60, 10), 100).ok().flatten().is_none());
        let mut sink = a.body_sink(6).unwrap();
        let start = sink.as_ptr();
        sink.extend_from_slice(b"abcdef");
        assert!(a.body_read(sink).ok().flatten().is_none());
        // More than what is left of the body gets no room.
        assert!(a.body_sink(5).is_none());
        let mut sink = a.body_sink(4).unwrap();
        assert_eq!(
            sink.as_ptr(),
            start.wrapping_add(6),
            "right after the first payload"
        );
        sink.extend_from_slice(b"ghij");
        let done = a.body_read(sink).ok().flatten().unwrap();
        assert_eq!(done.body, Bytes::from_static(b"abcdefghij"));
        assert_eq!(done.body.as_ptr(), start);
        assert!(a.is_idle());
        // Nothing is expected now.
        assert!(a.body_sink(1).is_none());
    }

    #[test]
    fn empty_body_completes_at_header() {
        let mut a = Assembler::default();
        a.start(publish());
        let done = a.header(header(60, 0), 100).ok().flatten();
        assert_eq!(done.map(|c| c.body.len()), Some(0));
    }

    #[test]
    fn out_of_order_frames_are_unexpected() {
        let mut a = Assembler::default();
        let code = |r: AmqpResult<Option<Complete>>| r.err().map(|e| e.code);
        assert_eq!(
            code(a.header(header(60, 1), 100)),
            Some(ReplyCode::UnexpectedFrame)
        );
        assert_eq!(
            code(a.body(Bytes::from_static(b"x"))),
            Some(ReplyCode::UnexpectedFrame)
        );
        a.start(publish());
        assert_eq!(
            code(a.body(Bytes::from_static(b"x"))),
            Some(ReplyCode::UnexpectedFrame)
        );
        a.start(publish());
        assert_eq!(
            code(a.header(header(50, 1), 100)),
            Some(ReplyCode::UnexpectedFrame)
        );
    }

    #[test]
    fn oversize_message_and_overlong_body_are_refused() {
        let mut a = Assembler::default();
        a.start(publish());
        let e = a.header(header(60, 101), 100).err();
        assert_eq!(e.map(|e| e.code), Some(ReplyCode::PreconditionFailed));
        a.start(publish());
        assert!(a.header(header(60, 2), 100).is_ok());
        let e = a.body(Bytes::from_static(b"abc")).err();
        assert_eq!(e.map(|e| e.code), Some(ReplyCode::FrameError));
    }
}
