"""Settings from the environment and .env, with sentences for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import DEFAULT_CLAUDE_MODEL, Settings
from pipeline.errors import BackendError


def test_defaults_are_offline():
    s = Settings.from_mapping({})
    assert s.embedder == "auto" and s.captioner == "auto"
    assert s.store_uri == str(Path("data") / "milvus.db") and s.is_lite
    assert s.server_port == 7860 and s.server_name == "127.0.0.1"
    assert s.claude_model == DEFAULT_CLAUDE_MODEL
    assert "3-5" not in DEFAULT_CLAUDE_MODEL  # the legacy model is not the default


def test_environment_names_and_aliases():
    s = Settings.from_mapping(
        {
            "MILVUS_URI": "http://127.0.0.1:19530",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "GRADIO_SERVER_PORT": "9000",
            "GRADIO_SHARE": "true",
            "TOP_K": "7",
            "INFERENCE_PROFILE_ID": "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "MILVUS_COLLECTION": "mine",
        }
    )
    assert not s.is_lite and s.store_uri == "http://127.0.0.1:19530"
    assert s.aws_region == "eu-west-1" and s.server_port == 9000 and s.share
    assert s.top_k == 7 and s.collection == "mine"
    assert s.claude_model.startswith("eu.anthropic")
    assert Settings.from_mapping(
        {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "x"}
    ).aws_region == ("us-east-1")


def test_dotenv_is_read_and_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("TOP_K=3\nMAX_UPLOAD_MB=5\n")
    s = Settings.from_env(env={"TOP_K": "4"}, dotenv=env_file)
    assert s.top_k == 4 and s.max_upload_mb == 5


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"EMBEDDER": "clip"}, "EMBEDDER must be"),
        ({"CAPTIONER": "gpt"}, "CAPTIONER must be"),
        ({"TITAN_DIM": "512"}, "TITAN_DIM"),
        ({"TOP_K": "0"}, "TOP_K"),
        ({"TOP_K": "many"}, "TOP_K"),
        ({"APP_AUTH": "nopassword"}, "APP_AUTH"),
    ],
)
def test_bad_values_get_a_sentence(env, words):
    with pytest.raises(BackendError, match=words):
        Settings.from_mapping(env)


def test_secrets_are_not_in_repr():
    s = Settings.from_mapping({"MILVUS_TOKEN": "tok-secret", "APP_AUTH": "u:pw-secret"})
    assert "tok-secret" not in repr(s) and "pw-secret" not in repr(s)
    assert s.auth_pairs() == [("u", "pw-secret")]
