"""A gRPC-over-HTTP/3 client on Python's aioquic (QUIC and HTTP/3 written by nobody here),
against quicrpc's server: the Echo service of proto/testing/echo.proto, messages from
protobuf classes generated at start-up (echo_client.stubs), gRPC's framing, statuses and
cancellation written in h3_grpc.py from the specs.

All cases run on one connection, one after another; after each error or cancellation the
same connection must serve a following call. Prints `PASS <case>` per case. At a
`CHECK <name>` line it waits, the connection still open, for a line on standard input: the
test checks the server's side meanwhile and writes `ok`; anything else (or the end of the
input) stops the script. Any failure raises, so the exit status is non-zero.

    python3 tests/python/h3_grpc_client.py --target localhost:PORT --ca ca.pem --limit BYTES

`--limit` is the server's receive limit for one message (bytes, without the prefix).
`--case NAME` (repeatable) runs only those cases, in that order; see CASES.
"""

import argparse
import asyncio
import os
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StopSendingReceived, StreamReset

import h3_grpc
from echo_client import stubs
from h3_grpc import Deframer, fields_dict, frame

# Seconds: the bound on each wait for the server.
STEP = 10
# Seconds: the bound on each wait for the test at a CHECK.
CHECK_WAIT = 60
SERVICE = "/quicrpc.testing.Echo/"


class Call:
    """One request stream: what is sent on it, and its response read in order."""

    def __init__(self, client, stream_id, reply_type):
        self.client = client
        self.stream_id = stream_id
        self.reply_type = reply_type
        self.events = asyncio.Queue()
        self.head = None
        self.trailers = None
        self.deframer = Deframer()
        self.ended = False
        # Set to the code of the server's STOP_SENDING, if it sends one.
        self.stopped = client._loop.create_future()

    def send(self, data: bytes, end=False):
        """`data` as one DATA frame (an empty one with `end` only ends the request)."""
        self.client.h3.send_data(self.stream_id, data, end)
        self.client.transmit()

    def send_message(self, message, end=False):
        self.send(frame(message.SerializeToString()), end)

    def finish(self):
        self.send(b"", end=True)

    def reset(self, code=h3_grpc.H3_REQUEST_CANCELLED):
        """Abandons the request (RESET_STREAM); the response may still be read."""
        self.client._quic.reset_stream(self.stream_id, code)
        self.client.transmit()

    def stop(self, code=h3_grpc.H3_REQUEST_CANCELLED):
        """Abandons the response (STOP_SENDING)."""
        self.client._quic.stop_stream(self.stream_id, code)
        self.client.transmit()

    async def _receive(self):
        try:
            event = await asyncio.wait_for(self.events.get(), STEP)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"nothing more from the server within {STEP} s on stream {self.stream_id}"
            ) from None
        if isinstance(event, HeadersReceived):
            if self.head is None:
                self.head = fields_dict(event.headers)
            elif self.trailers is None:
                self.trailers = fields_dict(event.headers)
            else:
                raise AssertionError(f"a third field section: {event.headers!r}")
        elif isinstance(event, DataReceived):
            # (aioquic reports a FIN that comes after the trailers as empty data.)
            if event.data and (self.head is None or self.trailers is not None):
                raise AssertionError("DATA outside the response body")
            self.deframer.feed(event.data)
        elif isinstance(event, StreamReset):
            raise AssertionError(f"the server reset the response ({event.error_code:#x})")
        elif isinstance(event, ConnectionTerminated):
            raise AssertionError(f"the connection closed: {event}")
        if getattr(event, "stream_ended", False):
            self.ended = True

    async def reply(self):
        """The next reply, or None once the response has ended."""
        while True:
            message = self.deframer.next()
            if message is not None:
                return self.reply_type.FromString(message)
            if self.ended:
                assert self.deframer.empty(), "the response ended inside a message"
                return None
            await self._receive()

    async def expect_reply(self):
        """The next reply, which must come."""
        reply = await self.reply()
        if reply is None:
            code, message = await self.status()
            raise AssertionError(f"no reply; the call ended with {code} {message!r}")
        return reply

    async def status(self):
        """Reads the response to its end and returns (grpc-status, grpc-message): from the
        trailers, or from the head of a trailers-only response. No reply may be left."""
        while not self.ended:
            await self._receive()
        assert self.deframer.next() is None, "a reply was left unread"
        assert self.deframer.empty(), "the response ended inside a message"
        assert self.head.get(b":status") == b"200", self.head
        assert self.head.get(b"content-type", b"").startswith(h3_grpc.CONTENT_TYPE), self.head
        fields = self.trailers if self.trailers is not None else self.head
        code = int(fields[b"grpc-status"])
        message = h3_grpc.decode_status_message(fields.get(b"grpc-message", b""))
        return code, message


class GrpcClient(QuicConnectionProtocol):
    """An aioquic connection speaking HTTP/3, its events sorted to the calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.calls = {}
        self.authority = b""
        self.pb = None
        self.limit = None

    def start(self, method, reply_type=None, metadata=()):
        """Sends a request's head for `method` of the Echo service, with `metadata`."""
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", (SERVICE + method).encode()),
            (b"content-type", h3_grpc.CONTENT_TYPE),
            (b"te", b"trailers"),
        ] + list(metadata)
        self.h3.send_headers(stream_id, headers)
        call = Call(self, stream_id, reply_type or self.pb.EchoReply)
        self.calls[stream_id] = call
        self.transmit()
        return call

    def quic_event_received(self, event):
        if isinstance(event, StopSendingReceived) and event.stream_id in self.calls:
            stopped = self.calls[event.stream_id].stopped
            if not stopped.done():
                stopped.set_result(event.error_code)
        if isinstance(event, StreamReset) and event.stream_id in self.calls:
            self.calls[event.stream_id].events.put_nowait(event)
        if isinstance(event, ConnectionTerminated):
            for call in self.calls.values():
                call.events.put_nowait(event)
        for h3_event in self.h3.handle_event(event):
            call = self.calls.get(getattr(h3_event, "stream_id", None))
            if call is not None:
                call.events.put_nowait(h3_event)


async def checkpoint(name):
    """Stops at `CHECK name` until the test has checked the server and answers `ok`."""
    print(f"CHECK {name}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), CHECK_WAIT)
    except asyncio.TimeoutError:
        print(f"no answer to CHECK {name} within {CHECK_WAIT} s", file=sys.stderr, flush=True)
        os._exit(1)  # the reading thread cannot be stopped; leave without it
    if line.strip() != "ok":
        raise SystemExit(f"the test did not accept CHECK {name}: {line!r}")


def passed(case):
    print(f"PASS {case}", flush=True)


async def unary(client, text):
    """A unary call that must succeed and echo `text`."""
    call = client.start("Unary")
    call.send_message(client.pb.EchoRequest(message=text), end=True)
    reply = await call.expect_reply()
    assert reply.message == text, reply
    assert await call.reply() is None
    assert await call.status() == (h3_grpc.OK, ""), (call.head, call.trailers)
    assert call.trailers is not None, "a success has trailers, apart from the head"


async def case_unary(client):
    await unary(client, "hello over aioquic")
    passed("unary")


async def case_client_streaming(client):
    """Four messages, in DATA frames whose boundaries are not the messages': one alone, two
    in one frame, one split across two frames."""
    pb = client.pb
    call = client.start("ClientStream")
    call.send_message(pb.EchoRequest(message="a"))
    call.send(
        frame(pb.EchoRequest(message="bb").SerializeToString())
        + frame(pb.EchoRequest(message="ccc").SerializeToString())
    )
    last = frame(pb.EchoRequest(message="dddd", response_size=7).SerializeToString())
    call.send(last[:3])
    call.send(last[3:], end=True)
    reply = await call.expect_reply()
    assert reply.message == "abbcccdddd", reply
    assert reply.index == 4, reply
    assert reply.payload == b"\xab" * 7, reply
    assert await call.status() == (h3_grpc.OK, "")
    passed("client_streaming")


async def case_bidi_streaming(client):
    """Each request sent only after the reply to the one before it has come."""
    call = client.start("Bidi")
    for index, text in enumerate(["one", "two", "three", "four"]):
        call.send_message(client.pb.EchoRequest(message=text, response_size=index))
        reply = await call.expect_reply()
        assert (reply.message, reply.index) == (text, index), reply
        assert reply.payload == b"\xab" * index, reply
    call.finish()
    assert await call.reply() is None
    assert await call.status() == (h3_grpc.OK, "")
    passed("bidi_streaming")


async def case_cancel_bidi(client):
    """A bidirectional call cancelled as RFC 9114 (4.1.1) has a client cancel: RESET_STREAM
    and STOP_SENDING, both H3_REQUEST_CANCELLED, after a first exchange."""
    call = client.start("Bidi")
    call.send_message(client.pb.EchoRequest(message="first"))
    assert (await call.expect_reply()).message == "first"
    call.reset()
    call.stop()
    await checkpoint("bidi_cancelled")
    await unary(client, "after the cancel")
    passed("cancel_bidi")


async def case_stop_bidi(client):
    """Only STOP_SENDING (H3_REQUEST_CANCELLED): the request stays open, so nothing but the
    stopped response tells the server the call is over."""
    call = client.start("Bidi")
    call.send_message(client.pb.EchoRequest(message="first"))
    assert (await call.expect_reply()).message == "first"
    call.stop()
    await checkpoint("bidi_stopped")
    call.reset()
    await unary(client, "after the stop")
    passed("stop_bidi")


async def case_reset_bidi(client):
    """A bidirectional call whose request alone is reset (H3_REQUEST_CANCELLED) after a
    first exchange, its response still read: the call was cancelled, so the status must be
    CANCELLED, not the OK of a request that ended."""
    call = client.start("Bidi")
    call.send_message(client.pb.EchoRequest(message="first"))
    assert (await call.expect_reply()).message == "first"
    call.reset()
    assert await call.reply() is None, "no reply to a reset request"
    code, message = await call.status()
    assert code == h3_grpc.CANCELLED, (code, message)
    await unary(client, "after the reset")
    passed("reset_bidi")


async def case_reset_upload(client):
    """A client stream whose request is reset (H3_REQUEST_CANCELLED) after two messages, once
    the server has its head: the server must not take the two for the whole upload; the
    status must be CANCELLED."""
    pb = client.pb
    call = client.start("ClientStream")
    call.send_message(pb.EchoRequest(message="a"))
    call.send_message(pb.EchoRequest(message="b"))
    await checkpoint("upload_started")
    call.reset()
    reply = await call.reply()
    assert reply is None, f"the reset upload was answered as a whole one: {reply}"
    code, message = await call.status()
    assert code == h3_grpc.CANCELLED, (code, message, call.head, call.trailers)
    await unary(client, "after the reset")
    passed("reset_upload")


async def case_deadline_mid_stream(client):
    """A server stream whose grpc-timeout passes after its head and first replies: the status
    must come in a trailer section (no pseudo-header there, RFC 9114 4.3), and the connection
    carries on."""
    call = client.start("ServerStream", metadata=[(b"grpc-timeout", b"500m")])
    call.send_message(
        client.pb.EchoRequest(message="slow", response_count=100, delay_ms=20), end=True
    )
    assert (await call.expect_reply()).index == 0
    replies = 1
    while await call.reply() is not None:
        replies += 1
    code, message = await call.status()
    assert code == h3_grpc.DEADLINE_EXCEEDED, (code, message, replies)
    assert replies < 100, replies
    assert call.trailers is not None, "the head came first, so the status is in trailers"
    await unary(client, "after the deadline")
    passed("deadline_mid_stream")


def request_of_size(pb, size):
    """An EchoRequest whose encoding is exactly `size` bytes (its payload fills it)."""
    for payload in range(size, -1, -1):
        request = pb.EchoRequest(payload=b"\x07" * payload)
        if request.ByteSize() == size:
            return request
    raise AssertionError(f"no request of {size} bytes")


async def case_limits(client):
    """Messages at and over the server's receive limit (client.limit)."""
    pb, limit = client.pb, client.limit
    # Exactly at the limit: served.
    call = client.start("Unary")
    call.send_message(request_of_size(pb, limit), end=True)
    reply = await call.reply()
    code, message = await call.status()
    assert (code, reply is not None) == (h3_grpc.OK, True), (code, message)
    passed("message_at_limit")

    # One byte over: RESOURCE_EXHAUSTED, and the connection carries on.
    call = client.start("Unary")
    call.send_message(request_of_size(pb, limit + 1), end=True)
    reply = await call.reply()
    assert reply is None, "a message over the limit was served"
    code, message = await call.status()
    assert code == h3_grpc.RESOURCE_EXHAUSTED, (code, message)
    await unary(client, "after the large message")
    passed("message_over_limit")

    # Only a prefix announcing a message over the limit, and no more: the server must
    # answer from the prefix, and stop the request with H3_NO_ERROR (RFC 9114, 4.1).
    call = client.start("Unary")
    call.send(b"\x00" + (limit + 1).to_bytes(4, "big") + b"\x07" * 16)
    code, message = await call.status()
    assert code == h3_grpc.RESOURCE_EXHAUSTED, (code, message)
    stopped = await asyncio.wait_for(call.stopped, STEP)
    assert stopped == h3_grpc.H3_NO_ERROR, f"{stopped:#x}"
    await unary(client, "after the announced message")
    passed("prefix_over_limit")


CASES = {
    "unary": case_unary,
    "client_streaming": case_client_streaming,
    "bidi_streaming": case_bidi_streaming,
    "cancel_bidi": case_cancel_bidi,
    "stop_bidi": case_stop_bidi,
    "limits": case_limits,  # message_at_limit, message_over_limit, prefix_over_limit
    "deadline_mid_stream": case_deadline_mid_stream,
    "reset_bidi": case_reset_bidi,
    "reset_upload": case_reset_upload,
}
DEFAULT = ["unary", "client_streaming", "bidi_streaming", "cancel_bidi", "stop_bidi", "limits"]


async def run(args):
    pb, _ = stubs()
    host, port = args.target.rsplit(":", 1)
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    configuration.load_verify_locations(cafile=args.ca)
    configuration.server_name = host
    # Loopback only: the test server listens on 127.0.0.1.
    async with connect(
        "127.0.0.1", int(port), configuration=configuration, create_protocol=GrpcClient
    ) as client:
        client.authority = args.target.encode()
        client.pb = pb
        client.limit = args.limit
        for case in args.case or DEFAULT:
            await CASES[case](client)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--limit", required=True, type=int)
    parser.add_argument(
        "--case", action="append", choices=sorted(CASES), help=f"default: {' '.join(DEFAULT)}"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
