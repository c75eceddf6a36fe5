"""The one place that makes boto3 clients: region, timeouts, retries, and a fast credentials check.

One `AwsClients` per process, shared by threads (boto3 clients are thread-safe; sessions are
not, so clients are made once under a lock). Tests hand in clients wired to botocore's Stubber.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from pipeline.errors import BackendError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 120.0  # a caption streams for a while; a silent socket this long is dead
MAX_ATTEMPTS = 6  # standard mode backs off exponentially (with jitter) between attempts
CHECK_SECONDS = 1.0  # `auto` may hold up start-up at most this long
BEARER_ENV = "AWS_BEARER_TOKEN_BEDROCK"  # Bedrock API keys; botocore reads it itself
SECRET_ENV = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ACCESS_KEY_ID",
    BEARER_ENV,
    "OPENAI_API_KEY",
    "MILVUS_TOKEN",
)
# Loggers that print request headers or signing material at DEBUG (Authorization, tokens).
CHATTY_LOGGERS = (
    "botocore.endpoint",
    "botocore.auth",
    "botocore.hooks",
    "botocore.parsers",
    "botocore.awsrequest",
    "botocore.httpsession",
    "botocore.retryhandler",
    "botocore.credentials",
    "urllib3.connectionpool",
    "httpx",
    "httpcore",
)
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_BEARER = re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Text with every known secret (environment, given, key ids, bearer tokens) masked."""
    values = [os.environ.get(name, "") for name in SECRET_ENV] + list(secrets)
    for value in sorted({v for v in values if len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, "***")
    return _BEARER.sub(r"\1***", _KEY_ID.sub("***", text))


class RedactSecrets(logging.Filter):
    """Masks secrets in records of the loggers that print headers and signing material."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__("medcap-redact")
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def guard_logs(secrets: tuple[str, ...] = ()) -> None:
    """Install the redacting filter once on each chatty library logger."""
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets(secrets))


def client_config(region: str, workers: int = 8, max_attempts: int = MAX_ATTEMPTS):
    """botocore Config: region, connect/read timeouts, standard retries, a pool for the workers."""
    from botocore.config import Config

    return Config(
        region_name=region or None,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        max_pool_connections=max(10, workers + 2),
        user_agent_extra="medcap",
    )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore exception (ThrottlingException...), or its class name."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
    return type(exc).__name__


class AwsClients:
    """boto3 clients for Bedrock Runtime and S3, made once per process and shared by threads."""

    def __init__(
        self,
        region: str = "",
        workers: int = 8,
        *,
        bedrock: Any = None,
        s3: Any = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.workers = workers
        self.max_attempts = max_attempts
        self._region = region
        self._clients: dict[str, Any] = {}
        if bedrock is not None:
            self._clients["bedrock-runtime"] = bedrock
        if s3 is not None:
            self._clients["s3"] = s3
        self._session = None
        self._available: bool | None = None
        self._lock = threading.Lock()
        guard_logs()

    @classmethod
    def from_settings(cls, settings, **kwargs) -> AwsClients:
        return cls(settings.aws_region, settings.workers, **kwargs)

    def _boto_session(self):
        # Called with the lock held. boto3 is imported here, not at module import.
        if self._session is None:
            import boto3

            self._session = boto3.Session(region_name=self._region or None)
        return self._session

    @property
    def region(self) -> str:
        """AWS_REGION / AWS_DEFAULT_REGION, else the profile's region, else empty."""
        if self._region:
            return self._region
        with self._lock:
            return self._boto_session().region_name or ""

    def client(self, service: str):
        """The process's one client for a service, made on first use."""
        with self._lock:
            if service not in self._clients:
                region = self._region or self._boto_session().region_name or ""
                if not region:
                    raise BackendError(
                        "No AWS region is set: set AWS_REGION (for example us-east-1) "
                        "to use Bedrock or S3."
                    )
                config = client_config(region, self.workers, self.max_attempts)
                self._clients[service] = self._boto_session().client(service, config=config)
            return self._clients[service]

    @property
    def bedrock(self):
        return self.client("bedrock-runtime")

    @property
    def s3(self):
        return self.client("s3")

    def available(self, timeout: float = CHECK_SECONDS) -> bool:
        """Whether a region and credentials (or a Bedrock API key) are set; bounded by timeout.

        botocore's credential chain may probe the EC2 metadata endpoint, so the lookup runs in a
        thread with a deadline; past it, `auto` stays offline.
        """
        if self._available is None:
            self._available = self._check(timeout)
        return self._available

    def _check(self, timeout: float) -> bool:
        if "bedrock-runtime" in self._clients:
            return True  # handed a client: the caller has configured it
        if not self.region:
            log.info("auto: no AWS region set, staying offline")
            return False
        if os.environ.get(BEARER_ENV):
            log.info("auto: Bedrock API key found (%s)", BEARER_ENV)
            return True
        found: list[bool] = []

        def lookup() -> None:
            try:
                with self._lock:
                    session = self._boto_session()._session
                    # botocore's minimum (whole seconds, one try); the deadline below bounds
                    # the rest of the chain (IMDS token, role, credentials; containers; SSO).
                    session.set_config_variable("metadata_service_timeout", 1)
                    session.set_config_variable("metadata_service_num_attempts", 1)
                found.append(session.get_credentials() is not None)
            except Exception as exc:  # a broken profile means "not configured" here
                log.info("auto: AWS credentials lookup failed (%s)", redact(str(exc)))
                found.append(False)

        worker = threading.Thread(target=lookup, name="aws-credentials-check", daemon=True)
        worker.start()
        worker.join(timeout)
        if not found:
            log.warning("auto: AWS credentials lookup took over %.1f s, staying offline", timeout)
            return False
        log.info("auto: AWS credentials %s", "found" if found[0] else "not found")
        return found[0]
