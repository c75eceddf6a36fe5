"""Held-out quality: a stable split, retrieval precision@k by label, caption scores by source.

`python -m pipeline.evaluate` runs it on the configured collection, the demo set, a folder with
captions or a Parquet file, and writes Markdown, JSON and PNG reports under `reports/`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

# Columns that name a case, an article or a patient: rows sharing one stay on one side.
GROUP_COLUMNS = ("case_id", "pmc_id", "patient_id", "study_id", "series_id", "article_id",
                 "group")  # fmt: skip
# Metadata that is never a label worth measuring retrieval on.
NOT_LABELS = {"dataset", "license", "licence", "format", "width", "height", "source", "id",
              "image_id", "filename", "file", "path", "caption", "index", "synthetic",
              "size_mm"}  # fmt: skip
MAX_LABEL_VALUES = 50


def held_out(key: str, fraction: float = 0.2, salt: str = "medcap") -> bool:
    """Stable split by hash: the same key is always on the same side, on any machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def find_group(metas: Sequence[dict], explicit: str = "") -> str:
    """The group column to split by: the one asked for, else the first known one present."""
    if explicit:
        return explicit
    return next((c for c in GROUP_COLUMNS if any(m.get(c) for m in metas)), "")


def split(ids: Sequence[str], metas: Sequence[dict], group: str, fraction: float) -> np.ndarray:
    """Held-out mask: by the group column's value when there is one, else by row id."""
    keys = [str(m.get(group) or i) if group else i for i, m in zip(ids, metas, strict=True)]
    return np.array([held_out(k, fraction) for k in keys], dtype=bool)


def find_labels(metas: Sequence[dict], group: str = "") -> list[str]:
    """Metadata columns that look like labels: text with a few distinct values."""
    values: dict[str, set] = {}
    for m in metas:
        for k, v in m.items():
            if isinstance(v, str) and v:
                values.setdefault(k, set()).add(v)
    limit = min(MAX_LABEL_VALUES, max(2, len(metas) // 5))
    return sorted(
        k
        for k, vs in values.items()
        if k.lower() not in NOT_LABELS and k != group and 2 <= len(vs) <= limit
    )


# ------------------------------------------------------------------------------- retrieval


def top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine search of unit vectors in chunks: (indices, similarities), best first."""
    k = min(k, corpus.shape[0])
    idx = np.zeros((len(queries), k), dtype=np.int64)
    sims = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        s = queries[start : start + chunk] @ corpus.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < s.shape[1] else np.argsort(-s)
        order = np.take_along_axis(s, part, axis=1).argsort(axis=1)[:, ::-1]
        best = np.take_along_axis(part, order, axis=1)
        idx[start : start + chunk] = best
        sims[start : start + chunk] = np.take_along_axis(s, best, axis=1)
    return idx, sims


@dataclass(frozen=True)
class Precision:
    """Precision@1 and @k of a label over held-out queries, overall and per label value."""

    label: str
    queries: int
    at1: float
    atk: float
    k: int
    by_value: dict[str, tuple[int, float, float]] = field(default_factory=dict)


def precision_at_k(
    queries: np.ndarray,
    query_labels: Sequence[str],
    corpus: np.ndarray,
    corpus_labels: Sequence[str],
    k: int = 5,
    label: str = "label",
) -> Precision:
    """Exact cosine search of unit vectors; share of the top 1 and top k with the query's label."""
    if len(queries) == 0 or len(corpus) == 0:
        return Precision(label, 0, float("nan"), float("nan"), k)
    top, _ = top_k(np.asarray(queries), np.asarray(corpus), k)
    k = top.shape[1]
    qlab = np.asarray(query_labels)
    hits = np.asarray(corpus_labels)[top] == qlab[:, None]
    by_value = {}
    for v in sorted(set(qlab.tolist())):
        mine = hits[qlab == v]
        by_value[str(v)] = (len(mine), float(mine[:, 0].mean()), float(mine.mean()))
    return Precision(label, len(queries), float(hits[:, 0].mean()), float(hits.mean()), k, by_value)


# -------------------------------------------------------------------------------- captions

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PUNCT = re.compile(r"[^\w\s]|_")


def normalise(text: str) -> str:
    """ImageCLEFmedical's caption normalisation: lowercase, numbers to "number", no punctuation."""
    text = _NUMBER.sub(" number ", text.lower())
    return " ".join(_PUNCT.sub("", text).split())


@dataclass(frozen=True)
class CaptionScores:
    """One caption source's scores against the held-out captions, each in [0, 1]."""

    source: str
    n: int
    bleu1: float
    bleu4: float
    rouge1: float
    rougeL: float


def caption_scores(source: str, hypotheses: Sequence[str], references: Sequence[str]):
    """Corpus BLEU-1/4 (sacrebleu) and mean ROUGE-1/L F1 (rouge-score) after normalisation."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    hyps = [normalise(h) for h in hypotheses]
    refs = [normalise(r) for r in references]
    if not hyps:
        nan = float("nan")
        return CaptionScores(source, 0, nan, nan, nan, nan)
    # Text is already normalised and space-separated: sacrebleu must not re-tokenise it.
    bleu1 = BLEU(max_ngram_order=1, tokenize="none").corpus_score(hyps, [refs]).score / 100
    bleu4 = BLEU(max_ngram_order=4, tokenize="none").corpus_score(hyps, [refs]).score / 100
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    pairs = [scorer.score(r, h) for h, r in zip(hyps, refs, strict=True)]
    rouge1 = float(np.mean([p["rouge1"].fmeasure for p in pairs]))
    rouge_l = float(np.mean([p["rougeL"].fmeasure for p in pairs]))
    return CaptionScores(source, len(hyps), bleu1, bleu4, rouge1, rouge_l)


# --------------------------------------------------------------------------- cost estimate

# Claude Sonnet on Bedrock, on-demand, USD per million tokens (override with --price-in/-out).
PRICE_IN_PER_M = 3.0
PRICE_OUT_PER_M = 15.0
PROMPT_OVERHEAD_TOKENS = 200  # instructions and framing around the image and references
MAX_IMAGE_PIXELS_SENT = 1_150_000  # Claude downsizes larger images to about this


@dataclass(frozen=True)
class CostEstimate:
    """An upper bound on what the generative sources will spend."""

    queries: int
    calls: int
    input_tokens: int
    output_tokens: int
    usd: float

    def sentence(self) -> str:
        return (
            f"{self.queries} queries x 2 captions (RAG and classic) = {self.calls} model calls, "
            f"about {self.input_tokens:,} input and at most {self.output_tokens:,} output tokens: "
            f"at most ${self.usd:.2f}"
        )


def image_tokens(width: int, height: int) -> int:
    """Claude's published rule of thumb: about width x height / 750 tokens per image."""
    pixels = min(width * height, MAX_IMAGE_PIXELS_SENT)
    return math.ceil(pixels / 750)


def estimate_cost(
    image_sizes: Sequence[tuple[int, int]],
    reference_chars: Sequence[int],
    max_tokens: int,
    price_in: float = PRICE_IN_PER_M,
    price_out: float = PRICE_OUT_PER_M,
) -> CostEstimate:
    """Cost of one RAG call (image + references) and one classic call (image) per query."""
    n = len(image_sizes)
    images = sum(image_tokens(w, h) for w, h in image_sizes)
    references = sum(math.ceil(c / 4) for c in reference_chars)  # about 4 characters a token
    tokens_in = 2 * images + 2 * n * PROMPT_OVERHEAD_TOKENS + references
    tokens_out = 2 * n * max_tokens
    usd = tokens_in / 1e6 * price_in + tokens_out / 1e6 * price_out
    return CostEstimate(n, 2 * n, tokens_in, tokens_out, usd)


# ------------------------------------------------------------------------------ evaluation


@dataclass
class Row:
    """One image of the evaluated set: its unit vector, caption and metadata."""

    id: str
    vector: np.ndarray
    caption: str
    meta: dict
    source: str = ""


@dataclass
class Report:
    """Everything one evaluation found; written as Markdown, JSON and plots."""

    dataset: str
    embedder: str
    captioner: str
    rows: int
    queries: int
    corpus: int
    group: str
    fraction: float
    k: int
    ignore: list[str]
    precision: list[Precision] = field(default_factory=list)
    captions: list[CaptionScores] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


# A neighbour at least this similar is the query image itself (as in the store's search).
SAME_IMAGE_SCORE = 0.9995


def neighbours_of(
    rows: Sequence[Row], queries: np.ndarray, corpus: np.ndarray, k: int
) -> list[list[tuple[int, float]]]:
    """Per held-out row, its k nearest corpus rows as (corpus index, similarity)."""
    from tqdm import tqdm

    qv = np.stack([rows[i].vector for i in queries]) if len(queries) else np.zeros((0, 1))
    cv = np.stack([rows[i].vector for i in corpus])
    out: list[list[tuple[int, float]]] = []
    step = 256
    for start in tqdm(range(0, len(queries), step), desc="search", unit="batch", leave=False):
        idx, sims = top_k(qv[start : start + step], cv, k + 3)
        for ii, ss in zip(idx, sims, strict=True):
            hits = [(int(corpus[i]), float(s)) for i, s in zip(ii, ss, strict=True)]
            out.append([h for h in hits if h[1] < SAME_IMAGE_SCORE][:k])
    return out


def retrieval(
    rows: Sequence[Row], test: np.ndarray, labels: Sequence[str], ignore: set[str], k: int
) -> list[Precision]:
    """Precision@1/@k per label, over rows whose label is present and not ignored."""
    out = []
    vectors = np.stack([r.vector for r in rows])
    for label in labels:
        values = np.array([str(r.meta.get(label) or "") for r in rows])
        valid = (values != "") & ~np.isin(values, list(ignore))
        q, c = valid & test, valid & ~test
        out.append(precision_at_k(vectors[q], values[q], vectors[c], values[c], k, label))
    return out


def evaluate(
    rows: Sequence[Row],
    dataset: str,
    embedder: str,
    k: int = 5,
    fraction: float = 0.2,
    group: str = "",
    labels: Sequence[str] = (),
    ignore: Iterable[str] = ("unknown", "mixed"),
    generative: Callable[[list[int], list[list[tuple[int, float]]]], list[CaptionScores]]
    | None = None,
    captioner: str = "extractive",
) -> Report:
    """Split, search each held-out row against the rest, score retrieval and caption sources."""
    import time

    from tqdm import tqdm

    from pipeline.captioners import ExtractiveCaptioner

    started = time.perf_counter()
    metas = [r.meta for r in rows]
    group = find_group(metas, group)
    test = split([r.id for r in rows], metas, group, fraction)
    labels = list(labels) or find_labels(metas, group)
    ignore = sorted(set(ignore) - {""})
    report = Report(dataset, embedder, captioner, len(rows), int(test.sum()),
                    int((~test).sum()), group, fraction, k, ignore)  # fmt: skip
    if not test.any() or test.all():
        report.notes.append("The split left one side empty: add more rows or change --fraction.")
        return report
    report.precision = retrieval(rows, test, labels, set(ignore), k)
    t_search = time.perf_counter()
    queries = [i for i in np.flatnonzero(test) if rows[i].caption.strip()]
    found = neighbours_of(rows, np.array(queries, dtype=np.int64), np.flatnonzero(~test), k)
    report.seconds["search"] = round(time.perf_counter() - t_search, 2)
    refs = [rows[i].caption for i in queries]
    nearest = [rows[f[0][0]].caption if f else "" for f in found]
    extractive = ExtractiveCaptioner()
    consensus = []
    for hits in tqdm(found, desc="consensus", unit="query", leave=False):
        consensus.append("".join(extractive.rag(None, as_neighbours(rows, hits))) if hits else "")
    report.captions = [
        caption_scores("nearest neighbour", nearest, refs),
        caption_scores("extractive consensus", consensus, refs),
    ]
    if generative is not None:
        report.captions += generative(queries, found)
    report.examples = [
        {
            "reference": refs[j],
            "nearest neighbour": nearest[j],
            "extractive consensus": consensus[j],
        }
        for j in range(min(5, len(queries)))
    ]
    report.seconds["total"] = round(time.perf_counter() - started, 2)
    return report


def as_neighbours(rows: Sequence[Row], hits: Sequence[tuple[int, float]]):
    """Search hits in the form the captioners take."""
    from pipeline.store import Neighbour

    return [
        Neighbour(rows[i].id, rows[i].caption, b"", rows[i].source, rows[i].meta, s)
        for i, s in hits
    ]


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of up to `size` items."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------- loading rows


def rows_from_store(store) -> list[Row]:
    """Every row of a collection, with its stored vector."""
    from tqdm import tqdm

    out = []
    for r in tqdm(store.rows(), desc=f"read {store.collection}", unit="row", leave=False):
        vector = np.asarray(r["embedding"], dtype=np.float32)
        out.append(Row(r["id"], vector, r.get("caption") or "", r.get("meta") or {}, r["source"]))
    return out


def rows_from_source(source, embedder, max_pixels: int, keep_images: bool = False):
    """Decode and embed every item of an ingest source; duplicates and bad files are dropped."""
    import time

    from tqdm import tqdm

    from pipeline.errors import InputError
    from pipeline.images import decode

    rows: list[Row] = []
    images: dict[str, bytes] = {}
    seen: set[str] = set()
    dropped, seconds = 0, 0.0
    with tqdm(total=source.total, desc=f"embed {source.name}", unit="img") as bar:
        for batch in batched(source.items, 32):
            ready = []
            for item in batch:
                try:
                    if item.problem or item.data is None or not item.caption.strip():
                        raise InputError(item.problem or "no caption")
                    decoded = decode(item.data, max_pixels)
                except InputError:
                    dropped += 1
                    continue
                if decoded.id not in seen:
                    seen.add(decoded.id)
                    ready.append((item, decoded))
            if ready:
                t0 = time.perf_counter()
                vectors = embedder.embed([d.image for _, d in ready])
                seconds += time.perf_counter() - t0
            for (item, d), v in zip(ready, vectors if ready else [], strict=True):
                rows.append(Row(d.id, v, item.caption.strip(), dict(item.meta), item.source))
                if keep_images:
                    images[d.id] = item.data
            bar.update(len(batch))
    return rows, images, dropped, seconds


# ---------------------------------------------------------------------------------- the CLI

EPILOG = """\
what to evaluate:
  (nothing)          the configured collection (MILVUS_URI, MILVUS_COLLECTION, EMBEDDER)
  demo               the synthetic demo set (--count images), embedded in memory
  DIR                a folder with captions (as `python -m ingest DIR`), embedded in memory
  FILE.parquet       a Parquet file or folder in the ROCOv2 layout; also hf://datasets/...

examples:
  python -m pipeline.evaluate
  python -m pipeline.evaluate demo --count 1200
  python -m pipeline.evaluate ~/xrays --captions ~/xrays/captions.csv --label modality
  python -m pipeline.evaluate --group case_id --ignore unknown,mixed --out reports

With a generative captioner configured (CAPTIONER=claude or openai), RAG and classic captions
are scored too, on at most --limit queries, after a cost estimate; pass --yes to spend it.
"""


def parse_args(argv: list[str] | None = None):
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m pipeline.evaluate",
        description="Measure retrieval and caption quality on a held-out split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", nargs="?", default="", help="demo, a folder, a Parquet file")
    p.add_argument("--captions", help="captions file for a folder")
    # 1,200 demo images hold out about 230 queries; the app's 300 hold out 58, too few to
    # tell caption sources 0.02 apart.
    p.add_argument("--count", type=int, default=1200, help="demo: how many images (1200)")
    p.add_argument("--collection", help="collection name (default: the configured one)")
    p.add_argument("--label", action="append", default=[], help="label column (repeatable)")
    p.add_argument("--group", default="", help="group column (default: case_id, pmc_id, ...)")
    p.add_argument("--ignore", default="unknown,mixed", help="label values to leave out")
    p.add_argument("--fraction", type=float, default=0.2, help="share held out (0.2)")
    p.add_argument("-k", type=int, default=5, help="neighbours per query (5)")
    p.add_argument("--limit", type=int, default=20, help="queries for paid captioners (20)")
    p.add_argument("--yes", action="store_true", help="spend the estimated cost without asking")
    p.add_argument("--price-in", type=float, default=PRICE_IN_PER_M, help="USD per M input tokens")
    p.add_argument("--price-out", type=float, default=PRICE_OUT_PER_M, help="USD per M output")
    p.add_argument("--out", default="reports", help="report folder (reports)")
    args = p.parse_args(argv)
    if not 0 < args.fraction < 1:
        p.error("--fraction must be between 0 and 1")
    if not 1 <= args.k <= 50:
        p.error("-k must be between 1 and 50")
    return args


def _open_source(args):
    from pathlib import Path

    from ingest import sources

    if args.source == "demo":
        return sources.demo_source(args.count)
    if args.source.startswith("hf://") or args.source.lower().endswith(".parquet"):
        return sources.parquet_source(args.source)
    path = Path(args.source).expanduser()
    if path.is_dir() and not any(path.glob("captions.*")) and any(path.rglob("*.parquet")):
        return sources.parquet_source(str(path))
    return sources.folder_source(path, Path(args.captions) if args.captions else None)


def _generative(args, captioner, rows: list[Row], images: dict[str, bytes], max_tokens: int):
    """The RAG and classic sources of a paid captioner, after a printed cost estimate."""
    import sys
    from pathlib import Path

    from pipeline.images import decode

    def image_of(i: int):
        data = images.get(rows[i].id)
        if data is None and rows[i].source and Path(rows[i].source).is_file():
            data = Path(rows[i].source).read_bytes()
        return decode(data).image if data is not None else None

    def run(queries: list[int], found: list[list[tuple[int, float]]]) -> list[CaptionScores]:
        picked = [(q, f) for q, f in zip(queries, found, strict=True) if f][: args.limit]
        loaded = [(q, f, image_of(q)) for q, f in picked]
        loaded = [(q, f, im) for q, f, im in loaded if im is not None]
        cost = estimate_cost(
            [im.size for _, _, im in loaded],
            [sum(len(rows[i].caption) for i, _ in f) for _, f, _ in loaded],
            max_tokens,
            args.price_in,
            args.price_out,
        )
        print(f"generative captioner {captioner.name}: --limit {args.limit}; {cost.sentence()}")
        if not loaded:
            return []
        if not args.yes:
            ok = sys.stdin.isatty() and input("spend it? [y/N] ").strip().lower() == "y"
            if not ok:
                print("skipped the RAG and classic captions: rerun with --yes to spend it.")
                return []
        return score_generative(captioner, rows, loaded)

    return run


def score_generative(captioner, rows: list[Row], loaded) -> list[CaptionScores]:
    """RAG (and classic, when the captioner can) captions for (query, hits, image) triples."""
    from tqdm import tqdm

    from pipeline.errors import MedcapError

    refs, rag, classic = [], [], []
    for q, hits, image in tqdm(loaded, desc=f"caption ({captioner.name})", unit="query"):
        try:
            rag.append("".join(captioner.rag(image, as_neighbours(rows, hits))))
            if captioner.classic_unavailable is None:
                classic.append("".join(captioner.classic(image)))
        except MedcapError as exc:
            raise SystemExit(f"error: {exc.sentence}") from exc
        refs.append(rows[q].caption)
    out = [caption_scores(f"RAG ({captioner.name})", rag, refs)]
    if classic:
        out.append(caption_scores(f"classic ({captioner.name})", classic, refs))
    return out


def main(argv: list[str] | None = None) -> int:
    import logging
    import sys
    from pathlib import Path

    from pipeline import reports
    from pipeline.aws import AwsClients
    from pipeline.backends import make_captioner, make_embedder, make_store
    from pipeline.config import Settings
    from pipeline.errors import MedcapError

    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env().override(collection=args.collection)
        clients = AwsClients.from_settings(settings)  # one AWS check for both pieces
        embedder = make_embedder(settings, clients)
        captioner = make_captioner(settings, clients)
        paid = captioner.name != "extractive"
        images: dict[str, bytes] = {}
        if args.source:
            source = _open_source(args)
            rows, images, dropped, secs = rows_from_source(
                source, embedder, settings.max_image_pixels, keep_images=paid
            )
            dataset = source.name
            rate = len(rows) / secs if secs else 0.0
            print(
                f"embedded {len(rows)} images ({dropped} unreadable or without a caption) "
                f"at {rate:.1f} images/s ({1000 / max(rate, 1e-9):.1f} ms each, batched)"
            )
        else:
            store = make_store(settings, embedder)
            rows, dataset = rows_from_store(store), store.collection
            store.close()
        if len(rows) < 2:
            raise MedcapError(f"{dataset} has {len(rows)} usable images: evaluation needs more.")
        generative = (
            _generative(args, captioner, rows, images, settings.max_tokens) if paid else None
        )
        report = evaluate(
            rows, dataset, embedder.name, args.k, args.fraction, args.group,
            args.label, args.ignore.split(","), generative, captioner.name,
        )  # fmt: skip
        if not paid:
            report.notes.append(
                "RAG and classic captions were not scored: no generative captioner is configured "
                "(CAPTIONER=claude or openai)."
            )
        paths = reports.write(report, Path(args.out))
    except MedcapError as exc:
        print(f"error: {exc.sentence}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted.", file=sys.stderr)
        return 130
    print(summary(report))
    print("report: " + ", ".join(str(p) for p in paths))
    return 0


def summary(report: Report) -> str:
    """The report's figures as a few terminal lines."""
    by = f" by {report.group}" if report.group else ""
    lines = [f"{report.dataset}: {report.queries} queries held out{by}, corpus {report.corpus}"]
    for p in report.precision:
        lines.append(f"  {p.label:<22} P@1 {p.at1:.3f}  P@{p.k} {p.atk:.3f}  ({p.queries} queries)")
    for c in report.captions:
        lines.append(
            f"  {c.source:<22} BLEU-1 {c.bleu1:.3f}  BLEU-4 {c.bleu4:.3f}  "
            f"ROUGE-1 {c.rouge1:.3f}  ROUGE-L {c.rougeL:.3f}  (n={c.n})"
        )
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.exit(main())
