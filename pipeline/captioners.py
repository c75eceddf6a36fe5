"""The Captioner protocol and its implementations: extractive consensus (offline) and models."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Protocol

from PIL import Image

from pipeline import prompts
from pipeline.aws import AwsClients, error_code, redact
from pipeline.errors import BackendError, MedcapError
from pipeline.images import encode
from pipeline.store import Neighbour

log = logging.getLogger(__name__)

NO_NEIGHBOURS = (
    "There are no images in the collection to compare with yet: "
    "add some with `python -m ingest` and try again."
)
CLASSIC_NEEDS_MODEL = (
    "The classic caption needs a vision model, which is not configured: "
    "set CAPTIONER=claude (with AWS credentials) or CAPTIONER=openai to enable it."
)


class Captioner(Protocol):
    """Writes captions as a stream of text pieces."""

    name: str
    # None when classic captions work; otherwise the sentence the classic panel shows instead.
    classic_unavailable: str | None

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        """Caption the image with the neighbours' captions as reference."""
        ...

    def classic(self, image: Image.Image) -> Iterator[str]:
        """Caption the image on its own."""
        ...


_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens, the unit of agreement between captions."""
    return _WORD.findall(text.lower())


def overlap_f1(a: Counter, b: Counter) -> float:
    """Unigram F1 between two bags of words (ROUGE-1 F without stemming)."""
    common = sum((a & b).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(b.values())
    return 2 * precision * recall / (precision + recall)


LCS_MAX_TOKENS = 64  # ROUGE-L on longer captions costs more than it tells
NEAR_DUPLICATE = 0.9  # captions agreeing this much (ROUGE-L F1) count as one


def lcs_f1(a: Sequence[str], b: Sequence[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence), without stemming."""
    a, b = a[:LCS_MAX_TOKENS], b[:LCS_MAX_TOKENS]
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    lcs = prev[-1]
    if not lcs:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def consensus(neighbours: Sequence[Neighbour]) -> Neighbour | None:
    """The caption the neighbours agree on most: ROUGE-L agreement weighted by similarity.

    Near-duplicate captions are merged first (their similarities add up, the closest one
    speaks for them), then each candidate's support is its own weight plus every other
    candidate's weight times their agreement: a minimum-Bayes-risk choice under ROUGE-L.
    """
    if not neighbours:
        return None
    toks = [tokens(n.caption) for n in neighbours]
    weights = [max(n.score, 0.0) for n in neighbours]
    agree: dict[tuple[int, int], float] = {}

    def f(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in agree:
            agree[key] = lcs_f1(toks[i], toks[j])
        return agree[key]

    heads: list[int] = []  # one representative per group of near-duplicates, closest first
    mass: dict[int, float] = {}
    for i in sorted(range(len(neighbours)), key=lambda i: -neighbours[i].score):
        head = next((h for h in heads if f(h, i) >= NEAR_DUPLICATE), None)
        if head is None:
            heads.append(i)
            mass[i] = weights[i]
        else:
            mass[head] += weights[i]

    def support(i: int) -> float:
        # A caption's own weight counts once, so with two distinct neighbours the closer wins.
        return mass[i] + sum(mass[j] * f(i, j) for j in heads if j != i)

    return neighbours[max(heads, key=support)]


class ExtractiveCaptioner:
    """Offline: the consensus caption among the neighbours. It cannot see the image itself."""

    name = "extractive"
    classic_unavailable = CLASSIC_NEEDS_MODEL

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        best = consensus(neighbours)
        yield best.caption if best else NO_NEIGHBOURS

    def classic(self, image: Image.Image) -> Iterator[str]:
        yield CLASSIC_NEEDS_MODEL


CLAUDE_MAX_EDGE = 1568  # Claude scales anything larger down anyway; don't pay to send it
CLAUDE_MAX_BYTES = 3_750_000  # Bedrock Converse's limit per image
_BUSY = {
    "throttlingexception",
    "servicequotaexceededexception",
    "serviceunavailableexception",
    "modelnotreadyexception",
    "toomanyrequestsexception",
}
_FAILED = {"modelstreamerrorexception", "modelerrorexception", "internalserverexception"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"}


def stop_note(reason: str | None, max_tokens: int) -> str:
    """The short note a panel shows when the model stopped for a reason other than finishing."""
    if reason in ("max_tokens", "length"):
        return (
            f"The caption was cut short at the MAX_TOKENS limit ({max_tokens} tokens): "
            "raise MAX_TOKENS for longer captions."
        )
    if reason in ("content_filtered", "content_filter"):
        return "The model's content filter stopped this caption."
    if reason == "guardrail_intervened":
        return "A Bedrock guardrail stopped this caption."
    return ""


class ClaudeCaptioner:
    """Claude on Amazon Bedrock through Converse (whole answers) or ConverseStream (the page)."""

    classic_unavailable: str | None = None

    def __init__(
        self,
        clients: AwsClients,
        model_id: str,
        max_tokens: int = 300,
        temperature: float = 0.2,
        stream: bool = True,
    ) -> None:
        self.clients = clients
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.stream = stream
        self.name = f"claude ({model_id})"

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        return self._caption(image, prompts.rag(neighbours))

    def classic(self, image: Image.Image) -> Iterator[str]:
        return self._caption(image, prompts.classic())

    def request(self, image: Image.Image, prompt: str) -> dict:
        """The Converse request: the image's bytes in their true format, then the prompt."""
        data, fmt = encode(image, CLAUDE_MAX_EDGE, CLAUDE_MAX_BYTES)
        return {
            "modelId": self.model_id,
            "system": [{"text": prompts.SYSTEM}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"image": {"format": fmt, "source": {"bytes": data}}},
                        {"text": prompt},
                    ],
                }
            ],
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": self.temperature},
        }

    def _caption(self, image: Image.Image, prompt: str) -> Iterator[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        request = self.request(image, prompt)
        if not self.stream:
            try:
                response = self.clients.bedrock.converse(**request)
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc) from None
            blocks = response.get("output", {}).get("message", {}).get("content", [])
            text = "".join(b.get("text", "") for b in blocks)
            if text:
                yield text
            stop = response.get("stopReason")
        else:
            try:
                response = self.clients.bedrock.converse_stream(**request)
            except (ClientError, BotoCoreError) as exc:
                raise self._error(exc) from None
            events, stop = response["stream"], None
            try:
                for event in events:
                    if "contentBlockDelta" in event:
                        text = event["contentBlockDelta"].get("delta", {}).get("text")
                        if text:
                            yield text
                    elif "messageStop" in event:
                        stop = event["messageStop"].get("stopReason")
            except (ClientError, BotoCoreError) as exc:  # EventStreamError: mid-stream failure
                raise self._error(exc, midway=True) from None
            finally:
                events.close()  # also when the reader leaves early: stop paying for tokens
        note = stop_note(stop, self.max_tokens)
        if note:
            raise MedcapError(note)

    def _error(self, exc: Exception, midway: bool = False) -> BackendError:
        code = error_code(exc)
        log.warning("claude %s: %s", code, redact(str(exc)))
        where = "stopped part-way" if midway else "failed"
        region = self.clients.region or "no region set"
        if code.lower() in _BUSY:
            why = "Bedrock is busy or throttling this account: try again in a minute"
        elif code.lower() in _FAILED:
            why = "the model failed while writing: try again"
        elif code == "AccessDeniedException":
            why = (
                "access was denied: check that the IAM policy allows bedrock:InvokeModel and "
                "bedrock:InvokeModelWithResponseStream and that model access to "
                f"{self.model_id} is enabled in {region}"
            )
        elif code in ("ValidationException", "ResourceNotFoundException"):
            why = (
                f"Bedrock rejected the request: check that CLAUDE_MODEL_ID or "
                f"INFERENCE_PROFILE_ID ({self.model_id}) is a model or inference profile "
                f"available in {region} (AWS_REGION)"
            )
        elif code in ("NoCredentialsError", "UnrecognizedClientException", "ExpiredTokenException"):
            why = "the AWS credentials are missing, invalid or expired: check them"
        elif code in _UNREACHABLE:
            why = f"Bedrock in {region} did not answer: check the network and AWS_REGION"
        else:
            why = "check the server log for details"
        return BackendError(f"The Claude caption {where} ({code}): {why}.")


class OpenAICaptioner:
    """Any OpenAI-compatible chat-completions endpoint with image input, streamed over SSE."""

    classic_unavailable: str | None = None

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "",
        max_tokens: int = 300,
        temperature: float = 0.2,
        timeout: float = 180.0,
    ) -> None:
        import httpx

        url = httpx.URL(base_url.rstrip("/") + "/")
        self.base_url = url
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self._api_key = api_key
        self._timeout = httpx.Timeout(timeout, connect=5.0)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        # No user:password from the URL in the status line.
        self.where = str(url.copy_with(username=None, password=None)).rstrip("/")
        self.name = f"openai-compatible ({model} at {self.where})"

    def rag(self, image: Image.Image, neighbours: Sequence[Neighbour]) -> Iterator[str]:
        return self._caption(image, prompts.rag(neighbours))

    def classic(self, image: Image.Image) -> Iterator[str]:
        return self._caption(image, prompts.classic())

    def _http(self):
        import httpx

        with self._lock:
            if self._client is None:
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(
                    base_url=self.base_url, headers=headers, timeout=self._timeout
                )
            return self._client

    def request(self, image: Image.Image, prompt: str) -> dict:
        """The chat-completions body: system prompt, then the image as a data URL and the text."""
        data, fmt = encode(image, CLAUDE_MAX_EDGE, CLAUDE_MAX_BYTES)
        url = f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"
        return {
            "model": self.model,
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": [
                {"role": "system", "content": prompts.SYSTEM},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": prompt},
                    ],
                },
            ],
        }

    def _caption(self, image: Image.Image, prompt: str) -> Iterator[str]:
        import httpx

        body = self.request(image, prompt)
        finish = None
        try:
            with self._http().stream("POST", "chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._http_error(response.status_code, response.text)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event names
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        continue
                    if "error" in chunk:
                        raise self._http_error(500, json.dumps(chunk["error"]))
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
                        finish = choice.get("finish_reason") or finish
        except httpx.TimeoutException:
            raise BackendError(
                f"The vision model at {self.where} did not answer in time: it may still be "
                "loading the model; try again, or check OPENAI_BASE_URL."
            ) from None
        except httpx.HTTPError as exc:
            log.warning("openai-compatible endpoint: %s", redact(str(exc), (self._api_key,)))
            raise BackendError(
                f"The vision model at {self.where} could not be reached "
                f"({type(exc).__name__}): check that it is running and check OPENAI_BASE_URL."
            ) from None
        note = stop_note(finish, self.max_tokens)
        if note:
            raise MedcapError(note)

    def _http_error(self, status: int, text: str) -> BackendError:
        detail = redact(" ".join(text.split())[:160], (self._api_key,))
        log.warning("openai-compatible endpoint HTTP %d: %s", status, detail)
        if status in (401, 403):
            why = "it refused the request: check OPENAI_API_KEY"
        elif status == 404:
            why = f"it has no model {self.model}: check OPENAI_MODEL and OPENAI_BASE_URL"
        elif status == 429 or status >= 500:
            why = "it is busy or failed: try again in a minute"
        else:
            why = f"it rejected the request ({detail}); check that {self.model} accepts images"
        return BackendError(f"The vision model at {self.where} answered HTTP {status}: {why}.")
