"""A gRPC-over-HTTP/3 server on Python's aioquic (QUIC and HTTP/3 written by nobody here):
the Echo service of proto/testing/echo.proto, for HTTP/3 clients to call. Messages come from
protobuf classes generated at start-up (echo_client.stubs); gRPC's framing and statuses are
written in h3_grpc.py from the specs.

Listens on 127.0.0.1 (ALPN h3 only) on --port, 0 for any free port, prints
`LISTENING <port>` as its first line, and serves until its standard input closes. It exits
with status 1 if a request made it fail (a traceback on standard error says which).

    python3 tests/python/h3_grpc_server.py --cert cert.pem --key key.pem [--port 0]

What it does, as echo.proto says: Unary (and Urgent, Lookup) echo the message, with request
metadata named x-echo-* copied into the response head; ServerStream (and Fetch) send
response_count replies, delay_ms apart; ClientStream answers once with the messages joined
and their count; Bidi answers each message as it comes. A non-zero fail_code ends the call
with that status and fail_message (after fail_after replies when streaming): trailers-only
if nothing was sent yet. Hang never answers. Any other method is UNIMPLEMENTED.

For clients' error mapping, request metadata makes it refuse a request instead:
`x-reset-code: 0x10b` resets the request stream with that HTTP/3 code (here
H3_REQUEST_REJECTED: not processed, may be retried) and stops it with the same code, as soon
as the request's head has come, before any response.
"""

import argparse
import asyncio
import sys
import traceback

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StopSendingReceived, StreamReset

import h3_grpc
from echo_client import stubs
from h3_grpc import Deframer, fields_dict, frame

SERVICE = b"/quicrpc.testing.Echo/"
UNARY = {"Unary", "Urgent", "Lookup"}
SERVER_STREAMING = {"ServerStream", "Fetch"}
FAILURES = []


class Request:
    """One request stream and the response to it."""

    def __init__(self, connection, stream_id, headers):
        self.connection = connection
        self.pb = connection.pb
        self.stream_id = stream_id
        self.fields = fields_dict(headers)
        path = self.fields.get(b":path", b"")
        self.method = path[len(SERVICE) :].decode() if path.startswith(SERVICE) else ""
        self.echoed = [(k, v) for k, v in headers if k.startswith(b"x-echo-")]
        reset_code = self.fields.get(b"x-reset-code")
        self.reset_code = int(reset_code, 0) if reset_code is not None else None
        self.deframer = Deframer()
        self.messages = []
        self.head_sent = False
        self.replies = 0
        # The request has ended (FIN or reset); the response is over (finished or reset).
        self.ended = False
        self.done = False
        self.task = None

    # Events from the client.

    def started(self):
        if self.reset_code is not None:
            self.reset()
        elif self.method not in UNARY | SERVER_STREAMING | {"ClientStream", "Bidi", "Hang"}:
            self.finish(h3_grpc.UNIMPLEMENTED, f"no method {self.method!r}")

    def data(self, data):
        self.deframer.feed(data)
        while (message := self.deframer.next()) is not None:
            request = self.pb.EchoRequest.FromString(message)
            self.messages.append(request)
            if self.method == "Bidi" and not self.done:
                self.bidi_reply(request)

    def request_ended(self):
        self.ended = True
        if self.done:
            return
        if self.method == "Bidi":
            self.finish(h3_grpc.OK)
            return
        if self.method == "ClientStream":
            failing = [m for m in self.messages if m.fail_code]
            if failing:
                self.finish(failing[0].fail_code, failing[0].fail_message)
                return
            size = self.messages[-1].response_size if self.messages else 0
            self.reply(
                self.pb.EchoReply(
                    message="".join(m.message for m in self.messages),
                    payload=b"\xab" * size,
                    index=len(self.messages),
                )
            )
            self.finish(h3_grpc.OK)
            return
        if len(self.messages) != 1:
            self.finish(h3_grpc.UNIMPLEMENTED, f"{len(self.messages)} messages for a unary request")
            return
        (request,) = self.messages
        if self.method in UNARY:
            if request.fail_code:
                self.finish(request.fail_code, request.fail_message)
                return
            self.reply(self.reply_to(request, 0))
            self.finish(h3_grpc.OK)
        elif self.method in SERVER_STREAMING:
            self.task = asyncio.ensure_future(self.stream_replies(request))
            self.task.add_done_callback(self.connection.task_done)
        # Hang: nothing, ever.

    def cancelled(self):
        """The client reset the request or stopped the response."""
        self.ended = True
        self.done = True
        if self.task is not None:
            self.task.cancel()

    # The response.

    def reply_to(self, request, index):
        return self.pb.EchoReply(
            message=request.message, payload=b"\xab" * request.response_size, index=index
        )

    def bidi_reply(self, request):
        if request.fail_code:
            self.finish(request.fail_code, request.fail_message)
        else:
            self.reply(self.reply_to(request, self.replies))

    async def stream_replies(self, request):
        for index in range(request.response_count):
            if request.fail_code and index == request.fail_after:
                break
            if request.delay_ms:
                await asyncio.sleep(request.delay_ms / 1000)
            if self.done:
                return
            self.reply(self.reply_to(request, index))
        if request.fail_code:
            self.finish(request.fail_code, request.fail_message)
        else:
            self.finish(h3_grpc.OK)

    def head(self):
        return [(b":status", b"200"), (b"content-type", h3_grpc.CONTENT_TYPE)] + self.echoed

    def reply(self, message):
        if self.done:
            return
        if not self.head_sent:
            self.connection.h3.send_headers(self.stream_id, self.head())
            self.head_sent = True
        self.connection.h3.send_data(self.stream_id, frame(message.SerializeToString()), False)
        self.replies += 1
        self.connection.transmit()

    def finish(self, code, message=""):
        """Ends the response with a status: in trailers, or trailers-only."""
        if self.done:
            return
        fields = h3_grpc.status_fields(code, message)
        if not self.head_sent:
            fields = self.head() + fields
        self.connection.h3.send_headers(self.stream_id, fields, end_stream=True)
        self.done = True
        if not self.ended:
            # Answered before the request's end: no more of it is needed (RFC 9114, 4.1).
            self.connection._quic.stop_stream(self.stream_id, h3_grpc.H3_NO_ERROR)
        self.connection.transmit()

    def reset(self):
        """Resets the response with the code asked for, and stops the request."""
        self.connection._quic.reset_stream(self.stream_id, self.reset_code)
        if not self.ended:
            self.connection._quic.stop_stream(self.stream_id, self.reset_code)
        self.done = True
        self.connection.transmit()


class GrpcServer(QuicConnectionProtocol):
    """One HTTP/3 connection: its events sorted to the requests."""

    def __init__(self, pb, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pb = pb
        self.h3 = H3Connection(self._quic)
        self.requests = {}

    def quic_event_received(self, event):
        try:
            self.handle(event)
        except Exception:
            self.fail(getattr(event, "stream_id", None))

    def handle(self, event):
        if isinstance(event, (StreamReset, StopSendingReceived)):
            request = self.requests.get(event.stream_id)
            if request is not None:
                request.cancelled()
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, HeadersReceived) and h3_event.stream_id not in self.requests:
                request = Request(self, h3_event.stream_id, h3_event.headers)
                self.requests[h3_event.stream_id] = request
                request.started()
            elif isinstance(h3_event, DataReceived):
                request = self.requests.get(h3_event.stream_id)
                if request is not None and not request.done:
                    request.data(h3_event.data)
            request = self.requests.get(getattr(h3_event, "stream_id", None))
            if request is not None and getattr(h3_event, "stream_ended", False):
                request.request_ended()

    def task_done(self, task):
        if not task.cancelled() and task.exception() is not None:
            try:
                raise task.exception()
            except Exception:
                self.fail(None)

    def fail(self, stream_id):
        """Records a failure of this script (it will exit with an error) and resets the
        request that caused it, if one did."""
        traceback.print_exc()
        FAILURES.append(stream_id)
        if stream_id is not None and stream_id % 4 == 0:
            self._quic.reset_stream(stream_id, h3_grpc.H3_INTERNAL_ERROR)
            self.transmit()


async def serve(args):
    pb, _ = stubs()
    configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    configuration.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    transport, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(
            configuration=configuration,
            create_protocol=lambda *a, **kw: GrpcServer(pb, *a, **kw),
        ),
        local_addr=("127.0.0.1", args.port),
    )
    print(f"LISTENING {transport.get_extra_info('sockname')[1]}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--port", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))
    if FAILURES:
        sys.exit(f"{len(FAILURES)} request(s) failed in the server")


if __name__ == "__main__":
    main()
