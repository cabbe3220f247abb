"""A gRPC server that no one here wrote: Python's grpcio serving Echo over TLS, for quicrpc's
channel (TCP fallback) to call.

Generates its stubs from proto/testing/echo.proto at start-up, listens on 127.0.0.1 on a
free port, prints `LISTENING <port>`, and serves until its standard input closes.

    python3 tests/python/echo_server.py --cert cert.pem --key key.pem
"""

import argparse
import sys
import time
from concurrent import futures

import grpc

from echo_client import stubs


def servicer(pb, rpc):
    class Echo(rpc.EchoServicer):
        def Unary(self, request, context):
            if request.fail_code:
                context.abort(_code(request.fail_code), request.fail_message)
            echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-echo-")]
            if echoed:
                context.send_initial_metadata(echoed)
            return pb.EchoReply(message=request.message, payload=b"\xab" * request.response_size)

        def ServerStream(self, request, context):
            for index in range(request.response_count):
                yield pb.EchoReply(message=request.message, index=index)

        def ClientStream(self, request_iterator, context):
            messages = [r.message for r in request_iterator]
            return pb.EchoReply(message="".join(messages), index=len(messages))

        def Bidi(self, request_iterator, context):
            for index, request in enumerate(request_iterator):
                yield pb.EchoReply(message=request.message, index=index)

        def Hang(self, request, context):
            while context.is_active():
                time.sleep(0.01)
            return pb.EchoReply()

    return Echo()


def _code(value):
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()

    pb, rpc = stubs()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rpc.add_EchoServicer_to_server(servicer(pb, rpc), server)
    with open(args.cert, "rb") as c, open(args.key, "rb") as k:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(f"LISTENING {port}", flush=True)
    sys.stdin.read()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
