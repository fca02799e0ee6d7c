//! The writer task: owns the socket's write half, writes the buffers the connection task fills
//! (several per wake-up when it is behind), and sends a heartbeat whenever it has been idle for
//! half the negotiated interval.

use super::codec;
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

/// How many filled buffers may wait for the socket; past that the connection task stops
/// taking deliveries and keeps its buffer growing only up to its high-water mark.
pub const QUEUED_BUFFERS: usize = 8;

pub async fn run(
    mut socket: OwnedWriteHalf,
    mut rx: mpsc::Receiver<BytesMut>,
    heartbeat: Duration,
) {
    let mut batch = Vec::with_capacity(QUEUED_BUFFERS);
    let idle = heartbeat / 2;
    loop {
        let received = if heartbeat.is_zero() {
            rx.recv_many(&mut batch, QUEUED_BUFFERS).await
        } else {
            match tokio::time::timeout(idle, rx.recv_many(&mut batch, QUEUED_BUFFERS)).await {
                Ok(n) => n,
                Err(_elapsed) => {
                    let mut hb = BytesMut::with_capacity(8);
                    codec::encode_heartbeat(&mut hb);
                    if socket.write_all(&hb).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
        };
        if received == 0 {
            break;
        }
        for buf in batch.drain(..) {
            if socket.write_all(&buf).await.is_err() {
                return;
            }
        }
    }
    let _ = socket.shutdown().await;
}
