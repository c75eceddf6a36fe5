"""Access and limits on the served page: login, upload size, no file outside the cache, no
secret anywhere a person or a script could see it."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import httpx
import pytest
from gradio_client import Client, handle_file

from ingest.demo import item
from pipeline.config import Settings
from pipeline.runtime import Runtime
from tests.serving import demo_runtime
from tests.serving import served as serve_page

SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "fakeSecretKey0123456789abcdefSECRET",
    "AWS_SESSION_TOKEN": "fakeSessionTokenSECRET42",
    "AWS_BEARER_TOKEN_BEDROCK": "fakeBearerSECRET43",
    "MILVUS_TOKEN": "fakeMilvusTokenSECRET44",
    "OPENAI_API_KEY": "sk-fakeOpenAISECRET45",
}
PASSWORD = "pw-SECRET46"


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_dir):
    data = tmp_path_factory.mktemp("secdata")
    (data / "models").symlink_to(model_dir)
    (data / ".env").write_text(f"AWS_SECRET_ACCESS_KEY={SECRETS['AWS_SECRET_ACCESS_KEY']}\n")
    mp = pytest.MonkeyPatch()
    for name, value in SECRETS.items():
        mp.setenv(name, value)
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    runtime = demo_runtime(data, env={"APP_AUTH": f"alice:{PASSWORD}", "MAX_UPLOAD_MB": "1"})
    with serve_page(runtime) as url:
        yield Page(url, runtime.settings, runtime), handler
    logging.getLogger().removeHandler(handler)
    mp.undo()


@dataclass
class Page:
    url: str
    settings: Settings
    runtime: Runtime


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def login(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30)
    r = client.post("login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return client


def test_unauthenticated_api_call_is_refused(served):
    s, _ = served
    with pytest.raises(Exception):  # noqa: B017  (gradio_client raises its own types)
        Client(s.url, verbose=False)
    r = httpx.post(f"{s.url}gradio_api/call/caption", json={"data": [None, 3]}, timeout=30)
    assert r.status_code in (401, 403)
    r = httpx.post(f"{s.url}login", data={"username": "alice", "password": "wrong"})
    assert r.status_code == 400


def test_authenticated_client_gets_captions(served, tmp_path):
    s, _ = served
    path = tmp_path / "q.png"
    path.write_bytes(item(100_005).image)
    client = Client(s.url, auth=("alice", PASSWORD), verbose=False)
    gallery, _, rag, _, _ = client.predict(handle_file(str(path)), 3, api_name="/caption")
    assert len(gallery) == 3 and rag
    client.close()


def test_upload_over_the_limit_is_refused(served, tmp_path):
    s, _ = served
    http = login(s.url)
    big = io.BytesIO(b"\0" * (2 * 1024 * 1024))
    r = http.post("gradio_api/upload", files={"files": ("big.png", big, "image/png")})
    assert r.status_code == 413
    assert "1mb" in r.text.lower() or "maximum" in r.text.lower()


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "app.py", "../app.py", "../../etc/passwd", "MILVUS", ".env", "DOTENV"],
)
def test_no_file_outside_the_upload_cache_can_be_fetched(served, target):
    s, _ = served
    http = login(s.url)
    data = s.settings.data_dir
    target = {"MILVUS": str(data / "milvus.db"), "DOTENV": str(data / ".env")}.get(target, target)
    for route in (f"gradio_api/file={target}", f"file={target}"):
        r = http.get(route)
        assert r.status_code in (403, 404), (route, r.status_code)
        assert "root:" not in r.text and "SECRET" not in r.text


def test_secrets_appear_nowhere(served, tmp_path, capfd):
    s, logs = served
    http = login(s.url)
    seen = [http.get("").text, http.get("config").text, http.get("gradio_api/info").text]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    client = Client(s.url, auth=("alice", PASSWORD), verbose=False)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(bad)), 3, api_name="/caption")
    seen.append(str(err.value))
    client.close()
    seen += logs.lines
    out, errs = capfd.readouterr()
    seen += [out, errs, repr(s.settings), s.runtime.notes()]
    everything = "\n".join(seen)
    for value in [*SECRETS.values(), PASSWORD]:
        assert value not in everything
