//! Past the memory budget, persistent messages of durable queues wait on disk and are read
//! back as consumers catch up: nothing is lost, reordered or altered on the way.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use warren_broker::Config;

/// A broker with `memory_budget` bytes of memory budget, and a channel on it in confirm mode.
async fn budgeted(memory_budget: usize) -> (TestBroker, lapin::Connection, lapin::Channel) {
    let broker = TestBroker::start_with(Config {
        memory_budget,
        ..Config::default()
    })
    .await;
    let (conn, ch) = broker.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .unwrap();
    (broker, conn, ch)
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("{i:08}").into_bytes();
    b.resize(1024, b'a' + (i % 26) as u8);
    b
}

#[tokio::test]
async fn messages_past_the_memory_budget_are_paged_and_delivered_in_order() {
    // 64 KiB of budget against 3 MiB of messages: nearly all of them are paged out.
    let (_broker, _conn, ch) = budgeted(64 * 1024).await;
    ch.queue_declare(
        "paged".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let total = 3000;
    let mut confirms = Vec::with_capacity(total);
    for i in 0..total {
        let confirm = ch
            .basic_publish(
                "".into(),
                "paged".into(),
                BasicPublishOptions::default(),
                &body(i),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(format!("m{i}").into()),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }

    // A basic.get in the middle of the backlog works on paged messages too.
    let got = ch
        .basic_get("paged".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, body(0));
    assert_eq!(got.message_count, (total - 1) as u32);
    got.delivery.ack(BasicAckOptions::default()).await.unwrap();

    ch.basic_qos(200, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "paged".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 1..total {
        let d = within(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, body(i), "message {i}");
        assert_eq!(
            d.properties.message_id().as_ref().map(|s| s.as_str()),
            Some(format!("m{i}").as_str())
        );
        assert_eq!(d.properties.delivery_mode(), &Some(2));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn requeued_messages_of_a_paged_queue_come_back_intact() {
    let (broker, _conn, ch) = budgeted(16 * 1024).await;
    ch.queue_declare(
        "requeue".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for i in 0..200 {
        publish_and_confirm(
            &ch,
            "",
            "requeue",
            &body(i),
            BasicProperties::default().with_delivery_mode(2),
            false,
        )
        .await;
    }
    // Take 50 without acking, then give them back: they return first, marked redelivered.
    let consumer_ch = broker.channel().await;
    consumer_ch
        .1
        .basic_qos(50, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consumer_ch
        .1
        .basic_consume(
            "requeue".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..50 {
        let d = within(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, body(i));
    }
    consumer_ch.1.close(200, "bye".into()).await.unwrap();
    for i in 0..200 {
        let got = ch
            .basic_get("requeue".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("a message");
        assert_eq!(got.delivery.data, body(i), "message {i}");
        assert_eq!(got.delivery.redelivered, i < 50, "message {i}");
    }
}

/// Files (recursively) under `dir`.
fn files_under(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                files_under(&p)
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test]
async fn transient_messages_past_the_budget_are_paged_to_disk_and_come_back_in_order() {
    let (broker, _conn, ch) = budgeted(64 * 1024).await;
    // A non-durable queue: no store, so only the page file can hold its backlog.
    declare_queue(&ch, "transient").await;
    let total = 2000;
    for i in 0..total {
        publish_and_confirm(
            &ch,
            "",
            "transient",
            &body(i),
            BasicProperties::default(),
            false,
        )
        .await;
    }
    let paging = broker.data_dir().join("paging");
    assert!(
        files_under(&paging) > 0,
        "nothing was paged out under {paging:?}"
    );

    ch.basic_qos(100, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "transient".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..total {
        let d = within(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, body(i), "message {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Deleting the queue removes its page file.
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    ch.queue_delete("transient".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(files_under(&paging), 0);
}

#[tokio::test]
async fn messages_a_waiting_consumer_takes_at_once_are_not_paged_out() {
    // A budget far below one message: only what is still queued after a batch would be paged.
    let (broker, _conn, ch) = budgeted(1).await;
    declare_queue(&ch, "keeps-up").await;
    let (_consumer_conn, consumer_ch) = broker.channel().await;
    let mut consumer = consumer_ch
        .basic_consume(
            "keeps-up".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..100 {
        publish_and_confirm(
            &ch,
            "",
            "keeps-up",
            &body(i),
            BasicProperties::default(),
            false,
        )
        .await;
    }
    for i in 0..100 {
        let d = within(consumer.next()).await.unwrap().unwrap();
        assert_eq!(d.data, body(i), "message {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let paging = broker.data_dir().join("paging");
    assert_eq!(
        files_under(&paging),
        0,
        "something was paged under {paging:?}"
    );
}
