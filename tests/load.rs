//! Load: many publishers and consumers on several queues at once. Every message is delivered
//! exactly once (with manual acks and prefetch), none is lost, and nothing is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const QUEUES: usize = 4;
const PUBLISHERS: usize = 10;
const CONSUMERS: usize = 10;
const PER_PUBLISHER: usize = 10_000;
const TOTAL: usize = PUBLISHERS * PER_PUBLISHER;
const PREFETCH: u16 = 100;

fn queue_name(i: usize) -> String {
    format!("load-{i}")
}

/// Publisher `p` sends ids p*PER_PUBLISHER.. spread over the queues, with confirms on.
async fn publisher(broker_url: String, p: usize) {
    let conn = lapin::Connection::connect(&broker_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut body = vec![0u8; 64];
    let mut last = None;
    for n in 0..PER_PUBLISHER {
        let id = (p * PER_PUBLISHER + n) as u64;
        body[..8].copy_from_slice(&id.to_be_bytes());
        let confirm = ch
            .basic_publish(
                "".into(),
                queue_name(n % QUEUES).as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .unwrap();
        last = Some(confirm);
    }
    // Confirms arrive in order: once the last is acked, every one before it is too.
    assert_eq!(
        within(last.unwrap()).await.unwrap(),
        Confirmation::Ack(None)
    );
    let returned = ch.wait_for_confirms().await.unwrap();
    assert!(returned.is_empty());
    conn.close(200, "done".into()).await.unwrap();
}

/// Consumer connection `c` reads two queues, one channel each, with prefetch, acking one by
/// one (even `c`) or in batches with `multiple` (odd `c`), until every message has arrived
/// somewhere. Returns the ids it received.
async fn consumer(
    broker_url: String,
    c: usize,
    received: Arc<AtomicUsize>,
    all_in: CancellationToken,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Vec<u64> {
    let conn = lapin::Connection::connect(&broker_url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let batch_acks = c % 2 == 1;
    let mut loops = Vec::new();
    for q in [c % QUEUES, (c + 1) % QUEUES] {
        let ch = conn.create_channel().await.unwrap();
        ch.basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .unwrap();
        let consumer = ch
            .basic_consume(
                queue_name(q).as_str().into(),
                format!("c{c}-q{q}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        loops.push(consume_loop(
            ch,
            consumer,
            batch_acks,
            received.clone(),
            all_in.clone(),
        ));
    }
    ready.send(()).await.unwrap();
    let second = loops.pop().unwrap();
    let first = loops.pop().unwrap();
    let (mut ids, more) = futures_lite::future::zip(first, second).await;
    ids.extend(more);
    conn.close(200, "done".into()).await.unwrap();
    ids
}

async fn consume_loop(
    ch: lapin::Channel,
    mut consumer: lapin::Consumer,
    batch_acks: bool,
    received: Arc<AtomicUsize>,
    all_in: CancellationToken,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(TOTAL / CONSUMERS);
    let mut unacked_in_batch = 0;
    let mut last_tag = 0;
    loop {
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = all_in.cancelled() => break,
        };
        let d = delivery.expect("consumer ended").expect("delivery error");
        assert!(!d.redelivered, "nothing should be redelivered");
        ids.push(u64::from_be_bytes(d.data[..8].try_into().unwrap()));
        if batch_acks {
            unacked_in_batch += 1;
            last_tag = d.delivery_tag;
            if unacked_in_batch == 25 {
                ch.basic_ack(last_tag, BasicAckOptions { multiple: true })
                    .await
                    .unwrap();
                unacked_in_batch = 0;
            }
        } else {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        if received.fetch_add(1, Ordering::AcqRel) + 1 == TOTAL {
            all_in.cancel();
        }
    }
    if unacked_in_batch > 0 {
        ch.basic_ack(last_tag, BasicAckOptions { multiple: true })
            .await
            .unwrap();
    }
    // Closing returns anything still unacked to its queue, which the final check would see.
    ch.close(200, "done".into()).await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_connections_deliver_100k_messages_over_4_queues_exactly_once() {
    let broker = TestBroker::start().await;
    let (_conn, ch) = broker.channel().await;
    for q in 0..QUEUES {
        ch.queue_declare(
            queue_name(q).as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let received = Arc::new(AtomicUsize::new(0));
    let all_in = CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CONSUMERS);
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            tokio::spawn(consumer(
                broker.url(),
                c,
                received.clone(),
                all_in.clone(),
                ready_tx.clone(),
            ))
        })
        .collect();
    for _ in 0..CONSUMERS {
        within(ready_rx.recv()).await.unwrap();
    }
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publisher(broker.url(), p)))
        .collect();

    let work = async {
        for p in publishers {
            p.await.unwrap();
        }
        let mut per_consumer = Vec::new();
        for c in consumers {
            per_consumer.push(c.await.unwrap());
        }
        per_consumer
    };
    let per_consumer = tokio::time::timeout(std::time::Duration::from_secs(120), work)
        .await
        .expect("load test timed out");

    let mut seen = vec![0u8; TOTAL];
    for ids in &per_consumer {
        assert!(!ids.is_empty(), "every consumer took part");
        for &id in ids {
            seen[id as usize] += 1;
        }
    }
    let missing = seen.iter().filter(|&&n| n == 0).count();
    let duplicated = seen.iter().filter(|&&n| n > 1).count();
    assert_eq!((missing, duplicated), (0, 0), "missing / duplicated ids");
    assert_eq!(received.load(Ordering::Acquire), TOTAL);

    // Everything was acked: nothing came back to the queues when the consumers closed.
    for q in 0..QUEUES {
        let declared = ch
            .queue_declare(
                queue_name(q).as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        assert_eq!(declared.message_count(), 0, "queue {q} not empty");
        assert_eq!(declared.consumer_count(), 0);
    }
}
