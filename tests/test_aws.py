"""AWS configuration: `auto` stays offline without credentials and never waits long, picks
Bedrock with credentials and a region; clients get the region, timeouts and retry mode."""

from __future__ import annotations

import socket

import pytest

from pipeline.aws import AwsClients
from pipeline.backends import make_captioner, make_embedder
from pipeline.captioners import ClaudeCaptioner, ExtractiveCaptioner
from pipeline.config import DEFAULT_CLAUDE_MODEL, Settings
from pipeline.embedders import LocalEmbedder, TitanEmbedder
from pipeline.runtime import Runtime

AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEARER_TOKEN_BEDROCK",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """An environment with no AWS configuration at all (no files, no variables)."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return monkeypatch


def settings(**env: str) -> Settings:
    return Settings.from_mapping({"MEDCAP_DATA_DIR": "unused", **env})


def test_auto_stays_offline_without_credentials(no_aws):
    no_aws.setenv("AWS_REGION", "us-east-1")
    s = settings(AWS_REGION="us-east-1")
    assert isinstance(make_embedder(s), LocalEmbedder)
    assert isinstance(make_captioner(s), ExtractiveCaptioner)


def test_auto_stays_offline_without_a_region(no_aws):
    no_aws.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    assert not AwsClients().available()
    assert isinstance(make_captioner(settings()), ExtractiveCaptioner)


def test_auto_picks_bedrock_with_credentials_and_region(no_aws):
    no_aws.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    no_aws.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    s = Settings.from_env(dotenv=None)
    assert s.aws_region == "eu-central-1"
    clients = AwsClients.from_settings(s)
    embedder, captioner = make_embedder(s, clients), make_captioner(s, clients)
    assert isinstance(embedder, TitanEmbedder) and embedder.name == "titan-embed-image-v1-1024"
    assert isinstance(captioner, ClaudeCaptioner)
    assert captioner.name == f"claude ({DEFAULT_CLAUDE_MODEL})"
    assert embedder.clients is captioner.clients  # one set of clients for the process
    assert clients.bedrock is clients.bedrock  # one client, made once


def test_bedrock_api_key_counts_as_credentials(no_aws):
    no_aws.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-example")
    assert AwsClients("us-west-2").available()
    assert isinstance(make_captioner(settings(AWS_REGION="us-west-2")), ClaudeCaptioner)


def test_a_silent_metadata_endpoint_does_not_hold_up_auto(no_aws):
    """On a machine where the EC2 metadata endpoint never answers, auto gives up and stays
    offline instead of waiting on botocore's credential chain."""
    no_aws.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections into the backlog, never answers
        port = silent.getsockname()[1]
        no_aws.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{port}/")
        assert AwsClients("us-east-1").available(timeout=0.5) is False
        silent.settimeout(5)
        conn, _ = silent.accept()  # the chain really did try the endpoint
        conn.close()


def test_clients_get_region_timeouts_retries_and_a_pool(no_aws):
    no_aws.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    no_aws.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    no_aws.setenv("AWS_REGION", "ap-southeast-2")
    s = Settings.from_env(dotenv=None)
    clients = AwsClients.from_settings(s)
    for client in (clients.bedrock, clients.s3):
        config = client.meta.config
        assert client.meta.region_name == "ap-southeast-2"
        assert config.connect_timeout == 5 and config.read_timeout == 120
        assert config.retries["mode"] == "standard" and config.retries["total_max_attempts"] == 6
        assert config.max_pool_connections >= s.workers


def test_titan_without_a_region_says_which_setting(no_aws):
    from pipeline.errors import BackendError

    embedder = make_embedder(settings(EMBEDDER="titan"))
    with pytest.raises(BackendError, match="AWS_REGION"):
        embedder.clients.bedrock  # noqa: B018


def test_runtime_takes_its_clients(no_aws, tmp_path):
    from tests.bedrock_stubs import bedrock_client, stubbed_clients

    clients = stubbed_clients(bedrock_client())
    runtime = Runtime(
        settings(EMBEDDER="titan", CAPTIONER="auto", MEDCAP_DATA_DIR=str(tmp_path)), clients
    )
    assert runtime.embedder.clients is clients and isinstance(runtime.captioner, ClaudeCaptioner)
