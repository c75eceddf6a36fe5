"""Deployment files: the Dockerfile (linted by hadolint, plus the rules that matter to us),
.dockerignore, and the Hugging Face Spaces front matter of the README."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

import app
from pipeline.config import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is not installed: pip install -r requirements-dev.txt")
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_rules_that_matter():
    rows = instructions()
    words = [w for w, _ in rows]
    base = next(arg for w, arg in rows if w == "FROM")
    assert re.fullmatch(r"python:3\.11[\w.]*-slim[\w.-]*", base), base  # slim, pinned to 3.11
    user = [arg for w, arg in rows if w == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")  # runs as non-root
    assert words.index("USER") < words.index("CMD")
    health = " ".join(arg for w, arg in rows if w == "HEALTHCHECK")
    assert "127.0.0.1" in health and "GRADIO_SERVER_PORT" in health
    assert any(w == "VOLUME" and "/app/data" in arg for w, arg in rows)
    env = " ".join(arg for w, arg in rows if w == "ENV")
    assert "GRADIO_SERVER_NAME=0.0.0.0" in env and "MEDCAP_DATA_DIR=/app/data" in env
    assert any(w == "EXPOSE" and "7860" in arg for w, arg in rows)
    # No secret is baked into the image.
    for w, arg in rows:
        if w in ("ENV", "ARG"):
            assert not re.search(r"(SECRET|TOKEN|PASSWORD|AWS_ACCESS|API_KEY|APP_AUTH)", arg)


def test_dockerfile_copies_every_module_the_app_imports():
    copied = " ".join(arg for w, arg in instructions() if w == "COPY")
    local = {p.stem for p in REPO.glob("*.py")} | {
        p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests"
    }
    tree = ast.parse((REPO / "app.py").read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    for name in sorted(imported & local):
        assert name in copied, f"the Dockerfile does not copy {name}"
    assert "app.py" in copied and "ingest/" in copied  # the demo ingest runs on first start


def test_dockerignore_keeps_secrets_data_and_tooling_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "data", ".env", "test-artifacts"} <= ignored


def front_matter() -> dict:
    text = (REPO / "README.md").read_text()
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "README.md must start with the Spaces front matter"
    return yaml.safe_load(match.group(1))


def test_readme_carries_the_spaces_front_matter():
    meta = front_matter()
    assert meta["sdk"] == "gradio"
    assert meta["app_file"] == "app.py" and (REPO / meta["app_file"]).exists()
    assert str(meta["python_version"]) == "3.11"
    assert meta["title"] and meta["emoji"] and meta["colorFrom"] and meta["colorTo"]
    assert len(meta.get("short_description", "")) <= 60


def test_spaces_sdk_version_matches_the_required_gradio():
    sdk = Version(str(front_matter()["sdk_version"]))
    lines = (REPO / "requirements.txt").read_text().splitlines()
    gradio = next(
        Requirement(line) for line in lines if re.match(r"gradio\s*[<>=!~]", line.strip())
    )
    assert gradio.specifier.contains(sdk), f"sdk_version {sdk} is outside {gradio}"
    installed = Version(version("gradio"))
    # The Space runs the version the tests ran: bump sdk_version with the tested Gradio.
    assert (sdk.major, sdk.minor) == (installed.major, installed.minor), (sdk, installed)


def test_on_a_space_the_app_listens_where_spaces_expects():
    settings = Settings(share=True)
    assert app.on_space(settings, {}) == settings  # not a Space: unchanged
    space = app.on_space(settings, {"SPACE_ID": "someone/medcap"})
    assert space.server_name == "0.0.0.0" and space.server_port == 7860
    assert space.share is False  # Spaces serve the page publicly already
    chosen = app.on_space(settings, {"SPACE_ID": "x/y", "GRADIO_SERVER_NAME": "::"})
    assert chosen.server_name == "::"
