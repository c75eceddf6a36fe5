"""Secrets (AWS keys, session token, Bedrock API key, OpenAI key) never reach logs, error
sentences or anything the page shows, even with every logger at DEBUG."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from pipeline.aws import AwsClients, redact
from pipeline.backends import make_captioner, make_embedder
from pipeline.config import Settings
from pipeline.errors import BackendError
from tests.bedrock_stubs import aws_error
from tests.test_aws import no_aws  # noqa: F401  (fixture)

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAZZZZZZZZZZZZZZZZ",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-5f1c0d7e",
    "AWS_SESSION_TOKEN": "fake-session-token-9a8b7c6d",
    "OPENAI_API_KEY": "sk-fake-openai-key-1234",
}
BEARER = "fake-bedrock-api-key-abcdef"


def captured(caplog) -> str:
    return caplog.text + "\n".join(str(r.args) for r in caplog.records)


@pytest.mark.parametrize("bearer", [False, True])
def test_no_secret_in_logs_or_sentences(no_aws, caplog, bearer):  # noqa: F811
    for name, value in SECRETS.items():
        no_aws.setenv(name, value)
    if bearer:
        no_aws.setenv("AWS_BEARER_TOKEN_BEDROCK", BEARER)
    caplog.set_level(logging.DEBUG)
    settings = Settings.from_mapping(
        {
            "AWS_REGION": "us-east-1",
            "EMBEDDER": "titan",
            "CAPTIONER": "claude",
            "OPENAI_API_KEY": SECRETS["OPENAI_API_KEY"],
            "MILVUS_TOKEN": "milvus-fake-token",
        }
    )
    clients = AwsClients.from_settings(settings, max_attempts=1)
    # Real signing with the credentials from the environment, then a refusal at the socket.
    clients.bedrock.meta.events.register(
        "before-send.bedrock-runtime",
        lambda request, **kw: aws_error(403, "AccessDeniedException", "User is not authorized"),
    )
    sentences = []
    with pytest.raises(BackendError) as err:
        make_embedder(settings, clients).embed([Image.new("L", (32, 32))])
    sentences.append(err.value.sentence)
    captioner = make_captioner(settings, clients)
    with pytest.raises(BackendError) as err:
        list(captioner.classic(Image.new("L", (32, 32))))
    sentences.append(err.value.sentence)
    sentences.append(captioner.name)
    sentences.append(repr(settings))
    logs = captured(caplog)
    assert "Sending http request" in logs  # botocore did log the request, headers and all
    assert "Authorization" in logs
    for secret in [*SECRETS.values(), BEARER, "milvus-fake-token"]:
        assert secret not in logs, f"a secret leaked into the log: {secret[:8]}..."
        for sentence in sentences:
            assert secret not in sentence
    if bearer:
        assert "Bearer ***" in logs


def test_redact_masks_key_ids_and_bearer_tokens():
    text = "key AKIAABCDEFGHIJKLMNOP and header {'Authorization': 'Bearer abc.def-ghi'}"
    cleaned = redact(text, ("extra-secret",))
    assert "AKIAABCDEFGHIJKLMNOP" not in cleaned and "abc.def-ghi" not in cleaned
    assert redact("an extra-secret here", ("extra-secret",)) == "an *** here"
