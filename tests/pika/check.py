"""A second client's opinion: pika drives Warren through the core flow.

Run by tests/pika.rs against an in-process broker: python3 check.py AMQP_URL.
Exits non-zero with a message on the first behaviour that differs from RabbitMQ's.
"""
import sys

import pika


def expect(cond, what):
    if not cond:
        sys.exit(f"pika check failed: {what}")


def main(url):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    props = conn._impl.server_properties
    expect(props.get("product") == b"Warren" or props.get("product") == "Warren",
           f"server product property: {props.get('product')!r}")
    ch = conn.channel()
    ch.confirm_delivery()

    # topic routing, server-named exclusive queue, large bodies split over frames
    ch.exchange_declare("pika.topic", "topic")
    q = ch.queue_declare("", exclusive=True).method.queue
    expect(q.startswith("amq.gen-"), f"server-named queue {q!r}")
    ch.queue_bind(q, "pika.topic", "a.#")
    sent = pika.BasicProperties(
        content_type="text/plain", content_encoding="utf-8",
        headers={"k": "v", "n": 5, "l": [1, "x"], "t": {"nested": True}},
        delivery_mode=2, priority=3, correlation_id="c1", reply_to="r",
        expiration="60000", message_id="m1", timestamp=1700000000, type="t",
        user_id="guest", app_id="app", cluster_id="cl")
    bodies = [b"", b"x", bytes(range(256)) * 1200]
    for body in bodies:
        ch.basic_publish("pika.topic", "a.b.c", body, sent, mandatory=True)

    # mandatory + unroutable: pika raises UnroutableError after the return and the ack
    try:
        ch.basic_publish("pika.topic", "nowhere", b"x", mandatory=True)
        expect(False, "unroutable mandatory publish was not returned")
    except pika.exceptions.UnroutableError:
        pass

    got = []
    for method, p, body in ch.consume(q, inactivity_timeout=10):
        expect(method is not None, "timed out waiting for deliveries")
        got.append(body)
        for field in ("content_type", "content_encoding", "headers", "delivery_mode",
                      "priority", "correlation_id", "reply_to", "expiration",
                      "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"):
            expect(getattr(p, field) == getattr(sent, field),
                   f"property {field}: {getattr(p, field)!r} != {getattr(sent, field)!r}")
        ch.basic_ack(method.delivery_tag)
        if len(got) == len(bodies):
            break
    ch.cancel()
    expect(got == bodies, "bodies differ or arrive out of order")

    # basic.get, nack with requeue, redelivered flag, get-empty
    ch2 = conn.channel()
    ch2.basic_qos(prefetch_count=10)
    ch2.queue_declare("pika.q")
    ch2.basic_publish("", "pika.q", b"hello")
    method, _, body = ch2.basic_get("pika.q")
    expect(body == b"hello" and method.message_count == 0, "basic.get")
    ch2.basic_nack(method.delivery_tag, requeue=True)
    method, _, body = ch2.basic_get("pika.q")
    expect(method.redelivered, "requeued message not marked redelivered")
    ch2.basic_ack(method.delivery_tag)
    expect(ch2.basic_get("pika.q") == (None, None, None), "get-empty")
    expect(ch2.queue_delete("pika.q").method.message_count == 0, "queue.delete count")

    # a channel error closes only that channel, with RabbitMQ's code and text
    try:
        ch2.queue_declare("pika.missing", passive=True)
        expect(False, "passive declare of a missing queue succeeded")
    except pika.exceptions.ChannelClosedByBroker as e:
        expect(e.reply_code == 404, f"reply code {e.reply_code}")
        expect(e.reply_text == "NOT_FOUND - no queue 'pika.missing' in vhost '/'",
               f"reply text {e.reply_text!r}")
    expect(ch.is_open, "an error on one channel closed another")

    # unacked messages come back redelivered when their channel closes
    ch3 = conn.channel()
    ch3.queue_declare("pika.redeliver")
    for i in range(3):
        ch3.basic_publish("", "pika.redeliver", str(i).encode())
    seen = []
    for method, _, body in ch3.consume("pika.redeliver", inactivity_timeout=10):
        expect(method is not None, "timed out waiting for deliveries")
        seen.append(body)
        if len(seen) == 3:
            break
    ch3.close()
    ch4 = conn.channel()
    again = []
    for method, _, body in ch4.consume("pika.redeliver", inactivity_timeout=10):
        expect(method is not None, "timed out waiting for redeliveries")
        expect(method.redelivered, "redelivery not flagged")
        again.append(body)
        ch4.basic_ack(method.delivery_tag)
        if len(again) == 3:
            break
    expect(again == [b"0", b"1", b"2"], f"redelivery order {again!r}")
    ch4.cancel()
    ch4.queue_delete("pika.redeliver")

    # transactions: a publish shows only after commit, a rollback drops it
    tx = conn.channel()
    tx.tx_select()
    tx.queue_declare("pika.tx")
    tx.basic_publish("", "pika.tx", b"rolled back")
    tx.tx_rollback()
    tx.basic_publish("", "pika.tx", b"committed")
    expect(tx.queue_declare("pika.tx", passive=True).method.message_count == 0,
           "uncommitted publish visible")
    tx.tx_commit()
    method, _, body = tx.basic_get("pika.tx", auto_ack=True)
    expect(body == b"committed", f"after commit: {body!r}")
    expect(tx.basic_get("pika.tx") == (None, None, None), "rolled-back publish delivered")
    tx.queue_delete("pika.tx")
    tx.close()

    # direct reply-to: an RPC round trip without a reply queue
    client = conn.channel()
    server = conn.channel()
    server.queue_declare("pika.rpc")
    replies = []
    client.basic_consume("amq.rabbitmq.reply-to",
                         lambda c, m, p, body: replies.append((p.correlation_id, body)),
                         auto_ack=True)
    client.basic_publish("", "pika.rpc", b"ping", pika.BasicProperties(
        reply_to="amq.rabbitmq.reply-to", correlation_id="rpc-1"))
    method, props, body = server.basic_get("pika.rpc", auto_ack=True)
    expect(props.reply_to.startswith("amq.rabbitmq.reply-to."),
           f"reply_to not rewritten: {props.reply_to!r}")
    server.basic_publish("", props.reply_to, b"pong",
                         pika.BasicProperties(correlation_id=props.correlation_id))
    conn.process_data_events(time_limit=0)
    for _ in range(100):
        if replies:
            break
        conn.process_data_events(time_limit=0.1)
    expect(replies == [("rpc-1", b"pong")], f"direct reply-to replies {replies!r}")
    server.queue_delete("pika.rpc")
    conn.close()
    print("pika check passed")


if __name__ == "__main__":
    main(sys.argv[1])
