"""gRPC over HTTP/3 (gRFC G2) as the aioquic scripts speak it: the 5-byte message framing,
the status fields and the HTTP/3 error codes, written here from the gRPC and HTTP/3 specs.
aioquic carries HTTP/3; it knows nothing of gRPC. Shared by h3_grpc_client.py and
h3_grpc_server.py.
"""

import struct
from urllib.parse import unquote_to_bytes

# RFC 9114, section 8.1.
H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C

# gRPC status codes the scripts name.
OK = 0
CANCELLED = 1
DEADLINE_EXCEEDED = 4
UNIMPLEMENTED = 12
RESOURCE_EXHAUSTED = 8

CONTENT_TYPE = b"application/grpc"


def frame(message: bytes) -> bytes:
    """One uncompressed message with its prefix: a zero flag byte, then the length (big
    endian, 4 bytes)."""
    return struct.pack(">BI", 0, len(message)) + message


class Deframer:
    """Messages out of DATA payloads, whatever their boundaries."""

    def __init__(self):
        self.buffer = bytearray()

    def feed(self, data: bytes):
        self.buffer += data

    def next(self):
        """The next whole message, or None until more has come."""
        if len(self.buffer) < 5:
            return None
        flag, length = struct.unpack(">BI", self.buffer[:5])
        if flag != 0:
            raise AssertionError(f"a compressed message (flag {flag}); none was asked for")
        if len(self.buffer) < 5 + length:
            return None
        message = bytes(self.buffer[5 : 5 + length])
        del self.buffer[: 5 + length]
        return message

    def empty(self) -> bool:
        return not self.buffer


def encode_status_message(text: str) -> bytes:
    """grpc-message's encoding: UTF-8, then percent-encoding of every byte outside
    printable ASCII, and of '%' itself."""
    out = bytearray()
    for byte in text.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def decode_status_message(value: bytes) -> str:
    return unquote_to_bytes(value).decode("utf-8", errors="replace")


def status_fields(code: int, message: str = "") -> list:
    fields = [(b"grpc-status", str(code).encode())]
    if message:
        fields.append((b"grpc-message", encode_status_message(message)))
    return fields


def fields_dict(headers) -> dict:
    """A header list as a dict; the scripts send and expect no repeated names."""
    out = {}
    for name, value in headers:
        if name in out:
            raise AssertionError(f"{name!r} twice in {headers!r}")
        out[name] = value
    return out
