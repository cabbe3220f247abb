"""A gRPC client that no one here wrote: Python's grpcio, against quicrpc's TCP side.

Generates its stubs from proto/testing/echo.proto with grpcio-tools at start-up (the same
.proto the Rust side is built from), connects over TLS trusting the given CA, and runs one
case per call kind plus a status, metadata, a deadline and a health check. Prints `PASS <case>` per case;
any failure raises, so the exit status is non-zero.

    python3 tests/python/echo_client.py --target localhost:PORT --ca ca.pem
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.join(HERE, "..", "..", "proto")


def stubs():
    """Compiles echo.proto (and the quicrpc options it imports) into a temporary package."""
    out = tempfile.mkdtemp(prefix="quicrpc-py-")
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        "testing/echo.proto",
        "quicrpc/options.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("grpc_tools.protoc failed")
    sys.path.insert(0, out)
    return (
        importlib.import_module("testing.echo_pb2"),
        importlib.import_module("testing.echo_pb2_grpc"),
    )


def expect_error(code, fn):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            raise AssertionError(f"expected {code}, got {e.code()}: {e.details()}")
        return e
    raise AssertionError(f"expected {code}, got a reply")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()

    pb, rpc = stubs()
    with open(args.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel(args.target, creds) as channel:
        stub = rpc.EchoStub(channel)

        reply = stub.Unary(pb.EchoRequest(message="hello from python"), timeout=10)
        assert reply.message == "hello from python", reply
        print("PASS unary")

        replies = list(
            stub.ServerStream(pb.EchoRequest(message="s", response_count=3), timeout=10)
        )
        assert [r.index for r in replies] == [0, 1, 2], replies
        print("PASS server_streaming")

        reply = stub.ClientStream(
            iter([pb.EchoRequest(message=m) for m in ["a", "b", "c"]]), timeout=10
        )
        assert reply.message == "abc" and reply.index == 3, reply
        print("PASS client_streaming")

        replies = list(
            stub.Bidi(iter([pb.EchoRequest(message=m) for m in ["x", "y", "z"]]), timeout=10)
        )
        assert [r.message for r in replies] == ["x", "y", "z"], replies
        print("PASS bidi_streaming")

        error = expect_error(
            grpc.StatusCode.NOT_FOUND,
            lambda: stub.Unary(
                pb.EchoRequest(fail_code=5, fail_message="no such agent"), timeout=10
            ),
        )
        assert error.details() == "no such agent", error.details()
        print("PASS status_with_message")

        reply, call = stub.Unary.with_call(
            pb.EchoRequest(message="m"),
            metadata=[("x-echo-colour", "blue"), ("x-echo-bin", b"\x00\x01\xff")],
            timeout=10,
        )
        initial = dict(call.initial_metadata())
        assert initial.get("x-echo-colour") == "blue", initial
        assert initial.get("x-echo-bin") == b"\x00\x01\xff", initial
        print("PASS metadata")

        expect_error(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            lambda: stub.Hang(pb.EchoRequest(message="wait"), timeout=0.2),
        )
        print("PASS deadline")

        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="quicrpc.testing.Echo"), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, reply
        print("PASS health")


if __name__ == "__main__":
    main()
