#!/usr/bin/env python3
"""Memory per idle AMQP connection: opens N connections to a broker, each with one channel
open, holds them 5 s, and reads the broker's VmRSS before and with them.

    idle_connections.py HOST PORT COUNT BROKER_PID BROKER_NAME   # prints one JSON line

Each connection is one plain socket that does the AMQP 0-9-1 handshake itself (protocol
header, start-ok PLAIN guest/guest, tune-ok with heartbeat 0, connection.open on vhost '/',
channel.open 1), so a connection costs this process one file descriptor (pika needed about
four, which kept 10,000 connections out of reach). The client properties are those pika
sends, so the broker keeps what it keeps for a real client. Nothing is sent once a
connection is open: with heartbeats off, the connections are idle.
"""

import json
import resource
import socket
import struct
import sys
import time

FRAME_METHOD, FRAME_HEARTBEAT, FRAME_END = 1, 8, 0xCE
CONNECTION, CHANNEL = 10, 20
START, START_OK, TUNE, TUNE_OK, OPEN, OPEN_OK, CLOSE = 10, 11, 30, 31, 40, 41, 50
CHANNEL_OPEN, CHANNEL_OPEN_OK, CHANNEL_CLOSE = 10, 11, 40
TIMEOUT_S = 30


class HandshakeError(Exception):
    pass


def shortstr(s):
    b = s.encode()
    return struct.pack("!B", len(b)) + b


def longstr(b):
    return struct.pack("!I", len(b)) + b


def table(fields):
    out = b""
    for key, value in fields.items():
        out += shortstr(key)
        if isinstance(value, bool):
            out += b"t" + struct.pack("!B", value)
        elif isinstance(value, dict):
            out += b"F" + table(value)
        else:
            out += b"S" + longstr(value.encode())
    return longstr(out)


# What pika 1.3 sends as client properties.
CLIENT_PROPERTIES = table({
    "product": "Pika Python Client Library",
    "platform": "Python " + sys.version.split()[0],
    "capabilities": {
        "authentication_failure_close": True,
        "basic.nack": True,
        "connection.blocked": True,
        "consumer_cancel_notify": True,
        "publisher_confirms": True,
    },
    "information": "See http://pika.rtfd.org",
    "version": "1.3.2",
})


def method_frame(channel, class_id, method_id, args=b""):
    payload = struct.pack("!HH", class_id, method_id) + args
    return struct.pack("!BHI", FRAME_METHOD, channel, len(payload)) + payload + bytes([FRAME_END])


class Conn:
    """One socket and what has been read from it but not parsed yet."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT_S)
        # tune-ok and connection.open go out back to back: without this, Nagle holds the
        # second until the first is acked (40 ms of delayed ack per connection).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def frame(self):
        """The next whole frame: (type, channel, payload). Reads as often as it takes."""
        while True:
            if len(self.buf) >= 7:
                kind, channel, size = struct.unpack_from("!BHI", self.buf)
                if len(self.buf) >= 7 + size + 1:
                    payload = self.buf[7:7 + size]
                    if self.buf[7 + size] != FRAME_END:
                        raise HandshakeError("frame without its end octet")
                    self.buf = self.buf[7 + size + 1:]
                    return kind, channel, payload
            chunk = self.sock.recv(65536)
            if not chunk:
                raise HandshakeError("the broker closed the socket")
            self.buf += chunk

    def expect(self, channel, class_id, method_id):
        """Reads frames until a method; returns its arguments if it is the one expected."""
        while True:
            kind, ch, payload = self.frame()
            if kind == FRAME_HEARTBEAT:
                continue
            if kind != FRAME_METHOD or len(payload) < 4:
                raise HandshakeError(f"unexpected frame type {kind} on channel {ch}")
            got = struct.unpack_from("!HH", payload)
            if got == (class_id, method_id) and ch == channel:
                return payload[4:]
            if got in ((CONNECTION, CLOSE), (CHANNEL, CHANNEL_CLOSE)):
                code, = struct.unpack_from("!H", payload, 4)
                text = payload[7:7 + payload[6]].decode(errors="replace")
                raise HandshakeError(f"closed by the broker: {code} {text}")
            raise HandshakeError(f"expected {class_id}.{method_id} on channel {channel}, "
                                 f"got {got[0]}.{got[1]} on channel {ch}")

    def send(self, data):
        self.sock.sendall(data)


def open_connection(host, port):
    c = Conn(host, port)
    c.send(b"AMQP\x00\x00\x09\x01")
    c.expect(0, CONNECTION, START)
    c.send(method_frame(0, CONNECTION, START_OK, CLIENT_PROPERTIES + shortstr("PLAIN")
                        + longstr(b"\x00guest\x00guest") + shortstr("en_US")))
    tune = c.expect(0, CONNECTION, TUNE)
    channel_max, frame_max, _heartbeat = struct.unpack_from("!HIH", tune)
    c.send(method_frame(0, CONNECTION, TUNE_OK, struct.pack("!HIH", channel_max, frame_max, 0)))
    c.send(method_frame(0, CONNECTION, OPEN, shortstr("/") + shortstr("") + b"\x00"))
    c.expect(0, CONNECTION, OPEN_OK)
    c.send(method_frame(1, CHANNEL, CHANNEL_OPEN, shortstr("")))
    c.expect(1, CHANNEL, CHANNEL_OPEN_OK)
    if c.buf:
        raise HandshakeError("unexpected bytes after channel.open-ok")
    return c


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main():
    host, port, count, pid, broker = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
        int(sys.argv[4]), sys.argv[5]
    # One descriptor per connection, plus a few: raise the soft limit as far as needed (the
    # hard limit is the ceiling).
    need = count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            sys.exit(f"need {need} open files for {count} connections, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    # The broker may still be giving memory back from a previous step: wait until its RSS
    # holds still (within 1 % over 2 s, at most 60 s) before taking the baseline.
    settle_start, last = time.monotonic(), rss_kib(pid)
    while time.monotonic() - settle_start < 60:
        time.sleep(2)
        now = rss_kib(pid)
        if abs(now - last) <= last / 100:
            break
        last = now
    before = rss_kib(pid)
    start = time.monotonic()
    conns = []
    try:
        for i in range(count):
            try:
                conns.append(open_connection(host, port))
            except (OSError, HandshakeError) as e:
                sys.exit(f"connection {i + 1} of {count}: {e}")
        open_s = time.monotonic() - start
        time.sleep(5)
        after = rss_kib(pid)
    finally:
        # Closing the sockets is enough: both brokers treat it as the client going away.
        for c in conns:
            c.sock.close()
    time.sleep(3)
    print(json.dumps({
        "broker": broker, "connections": count, "rss_before_kib": before, "rss_kib": after,
        "kib_per_connection": (after - before) / count, "open_s": open_s,
        "rss_after_close_kib": rss_kib(pid),
    }))


if __name__ == "__main__":
    main()
