//! What comes in on the socket: frames decoded from the read buffer (large body payloads read
//! straight into their message, see `read_buf.rs`) and handed to channel 0 or their channel,
//! with the acks and confirms they leave to flush.

use super::codec::{DecodeError, FrameDecoder};
use super::frame::{ChannelId, Frame};
use super::read_buf::ReadBuf;
use super::Connection;
use crate::channel::{Channel, ChannelState, Outcome};
use crate::error::{AmqpError, AmqpResult, Scope};
use amq_protocol::protocol::{channel as amqp_channel, connection, AMQPClass};
use bytes::BytesMut;
use tokio_util::codec::Decoder;
use tracing::{debug, info};

/// Body frames with a payload from this size on are read straight into their message's buffer
/// (see `read_buf.rs`).
const BODY_READ_MIN: usize = 32 * 1024;

impl Connection {
    /// Decodes and handles every complete frame in the read buffer.
    pub(super) async fn handle_input(
        &mut self,
        input: &mut ReadBuf,
        decoder: &mut FrameDecoder,
    ) -> AmqpResult<()> {
        self.refresh_access()?;
        loop {
            let frame = if input.reading_body() {
                // Nothing to decode until the payload and its frame end are in.
                match input.take_body()? {
                    Some((channel, filled)) => Frame::BodyRead(channel, filled),
                    None => break,
                }
            } else {
                if let Some((channel, size)) =
                    decoder.large_body_start(input.bytes(), BODY_READ_MIN)
                {
                    if let Some(sink) = self.body_sink(channel, size) {
                        input.start_body(channel, size, sink);
                        continue;
                    }
                }
                match decoder.decode(input.bytes()) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(DecodeError::Protocol(e)) => return Err(e),
                    Err(DecodeError::Io(e)) => {
                        return Err(AmqpError::internal_error(format_args!("read failed: {e}")))
                    }
                }
            };
            self.on_frame(frame).await?;
            if self.done {
                return Ok(());
            }
        }
        self.flush_confirms();
        Ok(())
    }

    /// Room in the message being published on `channel` for the next `size` bytes of its
    /// body, when that channel is open and expects them.
    pub(super) fn body_sink(&mut self, channel: ChannelId, size: usize) -> Option<BytesMut> {
        if self.closing_since.is_some() {
            return None;
        }
        let ch = self.channels.get_mut(&channel)?;
        if ch.state == ChannelState::Closing {
            return None;
        }
        ch.assembler.body_sink(size)
    }

    /// Picks up changed permissions (a management API write) before handling more input: the
    /// user's current permissions apply from the next method on. A user who lost access to
    /// the vhost is disconnected with 320.
    pub(super) fn refresh_access(&mut self) -> AmqpResult<()> {
        let version = self.broker.access_version();
        if version == self.access_version {
            return Ok(());
        }
        self.access_version = version;
        let access = self
            .broker
            .users
            .load()
            .access(&self.ctx.user, &self.ctx.vhost.name);
        match access {
            Some(access) => {
                self.ctx.access = access;
                for ch in self.channels.values_mut() {
                    ch.forget_permissions();
                }
                Ok(())
            }
            None => Err(AmqpError::new(
                crate::error::ReplyCode::ConnectionForced,
                format_args!(
                    "user '{}' no longer has access to vhost '{}'",
                    self.ctx.user, self.ctx.vhost.name
                ),
            )),
        }
    }

    /// Sends every channel's held-back acks to their queues (once per batch of frames).
    pub(super) async fn flush_acks(&mut self) {
        if self.ctx.acks_pending {
            self.ctx.acks_pending = false;
            for ch in self.channels.values_mut() {
                ch.flush_acks().await;
            }
        }
    }

    pub(super) fn flush_confirms(&mut self) {
        if self.ctx.confirms_pending {
            self.ctx.confirms_pending = false;
            for ch in self.channels.values_mut() {
                ch.flush_confirms(&mut self.ctx);
            }
        }
    }

    pub(super) async fn on_frame(&mut self, frame: Frame) -> AmqpResult<()> {
        if self.closing_since.is_some() {
            // After connection.close only close-ok (or a crossing close) counts.
            if let Frame::Method(0, m) = &frame {
                match **m {
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => self.done = true,
                    AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                        self.send_close_ok();
                        self.done = true;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        let channel = frame.channel();
        if channel == 0 {
            return self.on_channel_zero(frame);
        }
        if let Frame::Heartbeat(_) = frame {
            return Err(AmqpError::unexpected_frame(format_args!(
                "heartbeat frame on channel {channel}; heartbeats belong on channel 0"
            )));
        }
        if channel > self.channel_max {
            return Err(AmqpError::channel_error(format_args!(
                "channel {channel} exceeds channel_max {}",
                self.channel_max
            )));
        }
        let Connection { ctx, channels, .. } = self;
        let Some(ch) = channels.get_mut(&channel) else {
            return match frame {
                Frame::Method(_, m)
                    if matches!(*m, AMQPClass::Channel(amqp_channel::AMQPMethod::Open(_))) =>
                {
                    ctx.channels_opened += 1;
                    channels.insert(
                        channel,
                        Box::new(Channel::new(channel, ctx.channels_opened)),
                    );
                    ctx.out.method(
                        channel,
                        AMQPClass::Channel(amqp_channel::AMQPMethod::OpenOk(
                            amqp_channel::OpenOk {},
                        )),
                    );
                    Ok(())
                }
                Frame::Method(_, m) => Err(AmqpError::channel_error("expected 'channel.open'")
                    .during(m.get_amqp_class_id(), m.get_amqp_method_id())),
                // rabbitmq-compat: content is checked by the frame assembler before the channel
                // state is, so it is 505 on any channel without a publish in progress.
                _ => Err(AmqpError::unexpected_frame(
                    "expected method frame, got non method frame instead",
                )),
            };
        };
        if ch.state == ChannelState::Closing {
            // We sent channel.close: everything but close/close-ok is dropped.
            if let Frame::Method(_, m) = &frame {
                match **m {
                    AMQPClass::Channel(amqp_channel::AMQPMethod::CloseOk(_)) => {
                        channels.remove(&channel);
                    }
                    AMQPClass::Channel(amqp_channel::AMQPMethod::Close(_)) => {
                        ctx.out.method(
                            channel,
                            AMQPClass::Channel(amqp_channel::AMQPMethod::CloseOk(
                                amqp_channel::CloseOk {},
                            )),
                        );
                        channels.remove(&channel);
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        match ch.handle(ctx, frame).await {
            Ok(Outcome::Keep) => Ok(()),
            Ok(Outcome::Remove) => {
                channels.remove(&channel);
                Ok(())
            }
            Err(e) if e.scope() == Scope::Channel => {
                info!(channel, code = e.code.code(), text = %e.text, "closing channel");
                ctx.out.channel_close(channel, &e);
                ch.state = ChannelState::Closing;
                ch.release().await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn on_channel_zero(&mut self, frame: Frame) -> AmqpResult<()> {
        match frame {
            Frame::Heartbeat(_) => Ok(()),
            Frame::Method(_, m) => match *m {
                AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                    debug!(code = c.reply_code, text = %c.reply_text, "client closed the connection");
                    self.send_close_ok();
                    self.done = true;
                    Ok(())
                }
                AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Err(
                    AmqpError::command_invalid("connection.close-ok without a connection.close")
                        .during(10, 51),
                ),
                // Answered so that clients using it keep working; secrets are not used yet.
                AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                    self.ctx.out.method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                            connection::UpdateSecretOk {},
                        )),
                    );
                    Ok(())
                }
                other => Err(AmqpError::command_invalid(format_args!(
                    "unexpected method on channel 0 (class {}, method {})",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ))
                .during(other.get_amqp_class_id(), other.get_amqp_method_id())),
            },
            _ => Err(AmqpError::unexpected_frame(
                "content frames are not allowed on channel 0",
            )),
        }
    }
}
