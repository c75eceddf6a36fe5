"""Real boto3 clients whose calls end at botocore's Stubber or at real HTTP responses and
real event-stream frames handed in by a `before-send` handler: request validation, signing,
retries and parsing all run as they would against AWS. Nothing leaves the process."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import struct
import threading
import time
from collections.abc import Callable, Iterable

import boto3
import numpy as np
from botocore.awsrequest import AWSResponse
from PIL import Image

from pipeline.aws import AwsClients, client_config

REGION = "us-east-1"


def bedrock_client(max_attempts: int = 3, workers: int = 8):
    """A real bedrock-runtime client with fake static credentials."""
    session = boto3.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="test-secret-not-real",
        region_name=REGION,
    )
    return session.client(
        "bedrock-runtime", config=client_config(REGION, workers, max_attempts=max_attempts)
    )


# --- the event-stream wire format (application/vnd.amazon.eventstream) -----------------------


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # type 7 = string, with a 2-byte length
    return (
        struct.pack(">B", len(raw_name))
        + raw_name
        + b"\x07"
        + struct.pack(">H", len(raw_value))
        + raw_value
    )


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One binary event-stream message: prelude, prelude CRC, headers, payload, message CRC."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event(kind: str, body: dict) -> bytes:
    return frame(
        {":message-type": "event", ":event-type": kind, ":content-type": "application/json"},
        json.dumps(body).encode(),
    )


def exception(kind: str, message: str) -> bytes:
    return frame(
        {
            ":message-type": "exception",
            ":exception-type": kind,
            ":content-type": "application/json",
        },
        json.dumps({"message": message}).encode(),
    )


def converse_frames(
    pieces: Iterable[str], stop: str = "end_turn", error: tuple[str, str] | None = None
) -> list[bytes]:
    """The frames ConverseStream sends for a text answer; `error` ends it with an exception."""
    frames = [event("messageStart", {"role": "assistant"})]
    frames += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in pieces
    ]
    if error:
        return [*frames, exception(*error)]
    frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
    frames.append(event("messageStop", {"stopReason": stop}))
    usage = {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 12}}))
    return frames


class RawStream:
    """The socket side of a response: chunks handed to botocore one by one, optionally slowly."""

    def __init__(self, chunks: list[bytes], delay: float = 0.0) -> None:
        self.chunks, self.delay = chunks, delay

    def stream(self, *args, **kwargs):
        for chunk in self.chunks:
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    def read(self, *args, **kwargs) -> bytes:
        return b"".join(self.chunks)

    def close(self) -> None:
        pass


def http(status: int, body: bytes | list[bytes], headers: dict | None = None, delay: float = 0.0):
    chunks = body if isinstance(body, list) else [body]
    return AWSResponse(
        "https://bedrock-runtime.invalid", status, headers or {}, RawStream(chunks, delay)
    )


def aws_error(status: int, code: str, message: str = "stubbed") -> AWSResponse:
    """An error response as Bedrock Runtime (restJson1) sends it."""
    return http(
        status,
        json.dumps({"message": message}).encode(),
        {
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/",
            "content-type": "application/json",
        },
    )


def fake_vector(image_b64: str, dim: int) -> list[float]:
    """A deterministic embedding from the image's pixels: similar images get similar vectors."""
    im = Image.open(io.BytesIO(base64.b64decode(image_b64))).convert("L").resize((16, 16))
    pixels = np.asarray(im, dtype=np.float32).ravel() / 255.0 - 0.5
    seed = int(hashlib.sha256(b"proj").hexdigest()[:8], 16)
    projection = np.random.default_rng(seed).standard_normal((pixels.size, dim))
    return (pixels @ projection).tolist()


class BedrockHttp:
    """A before-send handler answering InvokeModel (Titan) and ConverseStream with real bytes.

    `plan(n)` may return an AWSResponse to answer call n (1-based) some other way, e.g. a 429.
    """

    def __init__(
        self,
        client,
        dim: int = 1024,
        captions: Callable[[dict], list[str]] | None = None,
        delay: float = 0.0,
        plan: Callable[[int], AWSResponse | None] | None = None,
    ) -> None:
        self.dim, self.captions, self.delay, self.plan = dim, captions, delay, plan
        self.calls: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-send.bedrock-runtime", self)

    def __call__(self, request, **kwargs):
        operation = request.url.rsplit("/", 1)[-1]
        body = json.loads(request.body) if request.body else {}
        with self._lock:
            self.calls.append((operation, body))
            n = len(self.calls)
        planned = self.plan(n) if self.plan else None
        if planned is not None:
            return planned
        if operation == "invoke":
            vector = fake_vector(
                body["inputImage"], body["embeddingConfig"]["outputEmbeddingLength"]
            )
            payload = json.dumps({"embedding": vector, "inputTextTokenCount": None}).encode()
            return http(200, payload, {"content-type": "application/json"})
        if operation == "converse-stream":
            pieces = self.captions(body) if self.captions else ["A caption."]
            # The callback gives text pieces, or whole frames (to end with an exception).
            chunks = pieces if pieces and isinstance(pieces[0], bytes) else converse_frames(pieces)
            return http(
                200, chunks, {"content-type": "application/vnd.amazon.eventstream"}, self.delay
            )
        raise AssertionError(f"unexpected Bedrock call {request.url}")


def stubbed_clients(client, **kwargs) -> AwsClients:
    """AwsClients around a stubbed bedrock-runtime client."""
    return AwsClients(REGION, bedrock=client, **kwargs)
