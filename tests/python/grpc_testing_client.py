"""gRPC's interop cases from Python's grpcio, a client no one here wrote, against quicrpc's
grpc.testing TestService on its TCP side.

Generates stubs from proto/grpc/testing/*.proto with grpcio-tools at start-up. The files
are compiled from a temporary copy whose imports are flattened ("grpc/testing/x.proto" →
"x.proto"): generated under their own path they would be the Python package grpc.testing,
which the installed grpc package hides. Names, packages and field numbers are unchanged.
Runs the cases with the sizes and checks of gRPC's interop descriptions, as far as
grpcio's API reaches (it cannot see a message's compressed flag, nor compress one message
of a stream and not the next: server_compressed_* and client_compressed_streaming are not
run here). Prints `PASS <case>` per case; any failure raises.

    python3 tests/python/grpc_testing_client.py --target localhost:PORT --ca ca.pem
"""

import argparse
import importlib
import os
import queue
import shutil
import sys
import tempfile

import grpc
from grpc_tools import protoc

from echo_client import expect_error as expect_code

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "proto", "grpc", "testing")
FILES = ["empty.proto", "messages.proto", "test.proto"]
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
TIMEOUT = 10


def stubs():
    """Compiles the flattened copy of the protos into a temporary directory."""
    src = tempfile.mkdtemp(prefix="quicrpc-grpc-testing-proto-")
    out = tempfile.mkdtemp(prefix="quicrpc-grpc-testing-py-")
    for name in FILES:
        with open(os.path.join(PROTO_DIR, name), encoding="utf-8") as f:
            text = f.read().replace('import "grpc/testing/', 'import "')
        with open(os.path.join(src, name), "w", encoding="utf-8") as f:
            f.write(text)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = ["grpc_tools.protoc", f"-I{src}", f"-I{include}", f"--python_out={out}",
            f"--grpc_python_out={out}"] + FILES
    if protoc.main(args) != 0:
        raise SystemExit("grpc_tools.protoc failed")
    shutil.rmtree(src)
    sys.path.insert(0, out)
    return (
        importlib.import_module("empty_pb2"),
        importlib.import_module("messages_pb2"),
        importlib.import_module("test_pb2_grpc"),
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--ca", required=True)
    args = parser.parse_args()

    empty, msg, rpc = stubs()

    def zeros(n):
        return msg.Payload(body=bytes(n))

    def large(**fields):
        return msg.SimpleRequest(response_size=314159, payload=zeros(271828), **fields)

    def check_large(response, what):
        body = response.payload.body
        assert len(body) == 314159 and body == bytes(314159), f"{what}: {len(body)} bytes"

    def output(sizes, payload=0):
        return msg.StreamingOutputCallRequest(
            response_parameters=[msg.ResponseParameters(size=s) for s in sizes],
            payload=zeros(payload) if payload else None,
        )

    with open(args.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    with grpc.secure_channel(args.target, creds) as channel:
        stub = rpc.TestServiceStub(channel)

        assert stub.EmptyCall(empty.Empty(), timeout=TIMEOUT) == empty.Empty()
        print("PASS empty_unary")

        check_large(stub.UnaryCall(large(), timeout=TIMEOUT), "large_unary")
        print("PASS large_unary")

        expect_code(
            grpc.StatusCode.INVALID_ARGUMENT,
            lambda: stub.UnaryCall(large(expect_compressed=msg.BoolValue(value=True)),
                                   timeout=TIMEOUT),
        )
        check_large(
            stub.UnaryCall(large(expect_compressed=msg.BoolValue(value=True)),
                           compression=grpc.Compression.Gzip, timeout=TIMEOUT),
            "compressed",
        )
        check_large(
            stub.UnaryCall(large(expect_compressed=msg.BoolValue(value=False)),
                           timeout=TIMEOUT),
            "uncompressed",
        )
        print("PASS client_compressed_unary")

        sizes = [27182, 8, 1828, 45904]
        response = stub.StreamingInputCall(
            iter([msg.StreamingInputCallRequest(payload=zeros(n)) for n in sizes]),
            timeout=TIMEOUT,
        )
        assert response.aggregated_payload_size == 74922, response
        print("PASS client_streaming")

        out_sizes = [31415, 9, 2653, 58979]
        responses = list(stub.StreamingOutputCall(output(out_sizes), timeout=TIMEOUT))
        assert [len(r.payload.body) for r in responses] == out_sizes, len(responses)
        print("PASS server_streaming")

        # ping_pong: each request is sent only after the previous response has arrived.
        pending = queue.Queue()
        call = stub.FullDuplexCall(iter(pending.get, None), timeout=TIMEOUT)
        for size, payload in zip(out_sizes, sizes):
            pending.put(output([size], payload))
            response = next(call)
            assert len(response.payload.body) == size, len(response.payload.body)
        pending.put(None)
        assert list(call) == [], "exactly four responses"
        print("PASS ping_pong")

        assert list(stub.FullDuplexCall(iter([]), timeout=TIMEOUT)) == []
        print("PASS empty_stream")

        metadata = [("x-grpc-test-echo-initial", "test_initial_metadata_value"),
                    ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab")]

        def check_metadata(call, what):
            initial = dict(call.initial_metadata())
            trailing = dict(call.trailing_metadata())
            assert initial.get("x-grpc-test-echo-initial") == "test_initial_metadata_value", \
                f"{what}: {initial}"
            assert trailing.get("x-grpc-test-echo-trailing-bin") == b"\xab\xab\xab", \
                f"{what}: {trailing}"

        response, call = stub.UnaryCall.with_call(large(), metadata=metadata, timeout=TIMEOUT)
        check_large(response, "custom_metadata")
        check_metadata(call, "UnaryCall")
        call = stub.FullDuplexCall(iter([output([314159], 271828)]), metadata=metadata,
                                   timeout=TIMEOUT)
        assert [len(r.payload.body) for r in call] == [314159]
        check_metadata(call, "FullDuplexCall")
        print("PASS custom_metadata")

        for case, text in [("status_code_and_message", "test status message"),
                           ("special_status_message", SPECIAL_MESSAGE)]:
            status = msg.EchoStatus(code=2, message=text)
            error = expect_code(
                grpc.StatusCode.UNKNOWN,
                lambda: stub.UnaryCall(msg.SimpleRequest(response_status=status),
                                       timeout=TIMEOUT),
            )
            assert error.details() == text, repr(error.details())
            error = expect_code(
                grpc.StatusCode.UNKNOWN,
                lambda: list(stub.FullDuplexCall(
                    iter([msg.StreamingOutputCallRequest(response_status=status)]),
                    timeout=TIMEOUT)),
            )
            assert error.details() == text, repr(error.details())
            print(f"PASS {case}")

        expect_code(grpc.StatusCode.UNIMPLEMENTED,
                    lambda: stub.UnimplementedCall(empty.Empty(), timeout=TIMEOUT))
        print("PASS unimplemented_method")

        other = rpc.UnimplementedServiceStub(channel)
        expect_code(grpc.StatusCode.UNIMPLEMENTED,
                    lambda: other.UnimplementedCall(empty.Empty(), timeout=TIMEOUT))
        print("PASS unimplemented_service")

        never = queue.Queue()
        future = stub.StreamingInputCall.future(iter(never.get, None), timeout=TIMEOUT)
        future.cancel()
        assert future.cancelled(), "cancel_after_begin"
        assert future.code() == grpc.StatusCode.CANCELLED, future.code()
        never.put(None)
        print("PASS cancel_after_begin")

        pending = queue.Queue()
        call = stub.FullDuplexCall(iter(pending.get, None), timeout=TIMEOUT)
        pending.put(output([31415], 27182))
        assert len(next(call).payload.body) == 31415
        call.cancel()
        assert call.code() == grpc.StatusCode.CANCELLED, call.code()
        pending.put(None)
        print("PASS cancel_after_first_response")

        pending = queue.Queue()
        pending.put(output([], 27182))
        expect_code(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            lambda: list(stub.FullDuplexCall(iter(pending.get, None), timeout=0.001)),
        )
        pending.put(None)
        print("PASS timeout_on_sleeping_server")


if __name__ == "__main__":
    main()
