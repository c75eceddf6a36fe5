"""OpenAICaptioner against a small OpenAI-compatible SSE server started on loopback."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from pipeline import prompts
from pipeline.backends import make_captioner
from pipeline.captioners import OpenAICaptioner
from pipeline.config import Settings
from pipeline.errors import BackendError, MedcapError
from pipeline.store import Neighbour


class Server:
    """An OpenAI-style /v1/chat/completions that streams what the test tells it to."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.reply: list[str] = ["A ", "chest ", "radiograph."]
        self.finish = "stop"
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                outer.requests.append((dict(self.headers), json.loads(self.rfile.read(length))))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                if outer.status != 200:
                    body = json.dumps({"error": {"message": "nope"}}).encode()
                    self.send_response(outer.status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b": keep-alive comment\n\n")
                for piece in outer.reply:
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                end = {"choices": [{"index": 0, "delta": {}, "finish_reason": outer.finish}]}
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def image() -> Image.Image:
    return Image.new("L", (80, 60), 128)


def test_streams_with_image_and_prompt(server):
    settings = Settings.from_mapping(
        {
            "CAPTIONER": "openai",
            "OPENAI_BASE_URL": server.url,
            "OPENAI_MODEL": "llava:13b",
            "OPENAI_API_KEY": "sk-test-key",
            "MAX_TOKENS": "77",
        }
    )
    captioner = make_captioner(settings)
    assert isinstance(captioner, OpenAICaptioner) and captioner.classic_unavailable is None
    assert captioner.name == f"openai-compatible (llava:13b at {server.url})"
    neighbours = [Neighbour("a", "Reference caption.", b"", "", {}, 0.8)]
    assert list(captioner.rag(image(), neighbours)) == ["A ", "chest ", "radiograph."]
    headers, body = server.requests[0]
    assert headers["Authorization"] == "Bearer sk-test-key"
    assert body["model"] == "llava:13b" and body["stream"] is True and body["max_tokens"] == 77
    assert body["messages"][0] == {"role": "system", "content": prompts.SYSTEM}
    parts = body["messages"][1]["content"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG" and sent.size == (80, 60)
    assert parts[1] == {"type": "text", "text": prompts.rag(neighbours)}


def test_without_key_sends_no_authorization(server):
    captioner = OpenAICaptioner(server.url, "llava")
    assert "".join(captioner.classic(image())) == "A chest radiograph."
    headers, body = server.requests[0]
    assert "Authorization" not in headers
    assert body["messages"][1]["content"][1]["text"] == prompts.classic()


def test_length_finish_is_a_note(server):
    server.finish = "length"
    got = []
    with pytest.raises(MedcapError, match="MAX_TOKENS"):
        for piece in OpenAICaptioner(server.url, "llava", max_tokens=5).classic(image()):
            got.append(piece)
    assert got == server.reply


@pytest.mark.parametrize(("status", "words"), [(401, "OPENAI_API_KEY"), (404, "OPENAI_MODEL")])
def test_http_errors_name_the_setting(server, status, words):
    server.status = status
    with pytest.raises(BackendError, match=words) as err:
        list(OpenAICaptioner(server.url, "llava", api_key="sk-secret-123").classic(image()))
    assert "sk-secret-123" not in err.value.sentence


def test_unreachable_endpoint(server):
    url = server.url
    server.close()
    with pytest.raises(BackendError, match=r"could not be reached.*OPENAI_BASE_URL"):
        list(OpenAICaptioner(url, "llava").classic(image()))


def test_missing_settings_get_a_sentence():
    with pytest.raises(BackendError, match="OPENAI_BASE_URL"):
        make_captioner(Settings.from_mapping({"CAPTIONER": "openai"}))
