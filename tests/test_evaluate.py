"""The evaluation: split, metrics against hand-computed values, cost estimate, the command."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from pipeline.captioners import ExtractiveCaptioner
from pipeline.evaluate import (
    Row,
    caption_scores,
    estimate_cost,
    evaluate,
    find_group,
    find_labels,
    held_out,
    image_tokens,
    main,
    normalise,
    precision_at_k,
    score_generative,
    split,
)


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """The command calls logging.basicConfig, which binds a handler to capsys' stream: remove
    it afterwards, or later tests log into a closed file."""
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in [h for h in root.handlers if h not in before]:
        root.removeHandler(handler)


def test_normalisation_follows_imageclefmedical():
    assert normalise("Chest X-ray, 3.2 cm lesion (arrow)!") == "chest xray number cm lesion arrow"
    assert normalise("T2: 12 mm; 1,500 cells") == "t number number mm number cells"
    assert normalise("  Ünïcode  ’quotes’ _under_ ") == "ünïcode quotes under"
    assert normalise("") == ""


def test_split_never_puts_one_group_on_both_sides():
    metas = [{"pmc_id": f"PMC{i // 4}"} for i in range(800)]  # 200 articles, 4 figures each
    ids = [f"{i:064x}" for i in range(800)]
    assert find_group(metas) == "pmc_id"
    test = split(ids, metas, "pmc_id", 0.2)
    sides: dict[str, set[bool]] = {}
    for m, t in zip(metas, test, strict=True):
        sides.setdefault(m["pmc_id"], set()).add(bool(t))
    assert all(len(s) == 1 for s in sides.values())
    assert 0.1 < test.mean() < 0.3  # about the fraction asked for
    # Stable: the same keys give the same split; by id when there is no group column.
    assert (split(ids, metas, "pmc_id", 0.2) == test).all()
    plain = split(ids, [{} for _ in ids], find_group([{} for _ in ids]), 0.2)
    assert list(plain) == [held_out(i) for i in ids]
    assert find_group([{"case_id": "c1", "pmc_id": "p"}]) == "case_id"  # a case beats an article
    assert find_group(metas, "site") == "site"


def test_labels_are_text_columns_with_few_values():
    metas = [
        {"modality": ["CT", "MRI"][i % 2], "license": "CC BY", "caption_id": f"x{i}", "n": i}
        for i in range(40)
    ]
    assert find_labels(metas) == ["modality"]


def test_precision_by_hand():
    corpus = np.eye(3, dtype=np.float32)
    labels = ["a", "b", "b"]
    q = np.array([[1, 0.1, 0], [0, 0.2, 1]], dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    p = precision_at_k(q, ["a", "a"], corpus, labels, k=2)
    # query 1: top [a, b] -> P@1 1, P@2 1/2; query 2: top [b(2), b(1)] -> 0 and 0.
    assert (p.at1, p.atk, p.k) == (0.5, 0.25, 2)
    assert p.by_value == {"a": (2, 0.5, 0.25)}


def test_caption_metrics_match_hand_computed_values():
    hyp, ref = "A normal chest radiograph.", "Normal chest radiograph of a child, 3 years."
    s = caption_scores("x", [hyp], [ref])
    # hyp: a normal chest radiograph (4); ref: normal chest radiograph of a child number years (8)
    # BLEU-1: every hypothesis word is in the reference (p1 = 1), brevity penalty exp(1 - 8/4).
    assert s.bleu1 == pytest.approx(math.exp(-1), abs=1e-4)
    # ROUGE-1: P = 4/4, R = 4/8 -> F = 2/3.
    assert s.rouge1 == pytest.approx(2 / 3)
    # ROUGE-L: LCS "normal chest radiograph" = 3, P = 3/4, R = 3/8 -> F = 0.5.
    assert s.rougeL == pytest.approx(0.5)
    # BLEU-4 where all n-grams match: only the brevity penalty, exp(1 - 6/5).
    s4 = caption_scores("y", ["The left lung is clear"], ["The left lung is clear today"])
    assert s4.bleu4 == pytest.approx(math.exp(1 - 6 / 5), abs=1e-4)
    assert s4.bleu1 == pytest.approx(math.exp(1 - 6 / 5), abs=1e-4)
    assert caption_scores("z", ["same words"], ["Same words!"]).rougeL == 1.0


def test_cost_estimate_by_hand():
    assert image_tokens(750, 100) == 100
    assert image_tokens(4000, 4000) == math.ceil(1_150_000 / 750)  # capped like Claude's resize
    c = estimate_cost([(750, 100), (750, 200)], [400, 0], max_tokens=300, price_in=3, price_out=15)
    # two calls per query, each with the image; RAG also carries 400 chars = 100 tokens.
    assert c.calls == 4 and c.queries == 2
    assert c.input_tokens == 2 * (100 + 200) + 4 * 200 + 100
    assert c.output_tokens == 4 * 300
    assert c.usd == pytest.approx(c.input_tokens * 3 / 1e6 + c.output_tokens * 15 / 1e6)
    assert "$" in c.sentence() and "4 model calls" in c.sentence()


def _rows(n: int = 60) -> list[Row]:
    rng = np.random.default_rng(0)
    centres = {"ct": rng.normal(size=8), "mri": rng.normal(size=8)}
    rows = []
    for i in range(n):
        mod = "ct" if i % 2 else "mri"
        v = centres[mod] + 0.1 * rng.normal(size=8)
        rows.append(
            Row(f"{i:064x}", (v / np.linalg.norm(v)).astype(np.float32),
                f"{mod} image {i}", {"modality": mod, "case_id": f"c{i // 3}"})
        )  # fmt: skip
    return rows


def test_evaluate_scores_retrieval_and_caption_sources():
    rows = _rows()
    report = evaluate(rows, "toy", "toy-embedder", k=3)
    assert report.group == "case_id"
    (p,) = report.precision
    assert p.label == "modality" and p.at1 == 1.0  # two well separated clusters
    assert [c.source for c in report.captions] == ["nearest neighbour", "extractive consensus"]
    assert all(c.n == report.queries for c in report.captions)


def test_the_generative_path_scores_rag_with_any_captioner():
    rows = _rows()
    seen = []

    def generative(queries, found):
        loaded = [(q, f, None) for q, f in zip(queries, found, strict=True)][:4]
        seen.append(len(loaded))
        return score_generative(ExtractiveCaptioner(), rows, loaded)

    report = evaluate(rows, "toy", "toy", k=3, generative=generative)
    assert seen == [4]
    rag = report.captions[-1]
    # The extractive captioner cannot write a classic caption, so only RAG is scored.
    assert rag.source == "RAG (extractive)" and rag.n == 4
    assert [c.source for c in report.captions].count("classic (extractive)") == 0


def offline_cwd(tmp_path, monkeypatch, model_dir) -> None:
    """Run the commands from tmp_path on the offline pieces, reusing the session's model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDCAP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMBEDDER", "local")
    monkeypatch.setenv("CAPTIONER", "extractive")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "models").symlink_to(model_dir)


def test_the_command_on_a_folder_writes_the_report(tmp_path, monkeypatch, model_dir, capsys):
    from ingest.demo import generate

    folder = tmp_path / "imgs"
    folder.mkdir()
    lines = ["filename,caption,modality,case_id"]
    for d in generate(42):
        (folder / d.name).write_bytes(d.image)
        lines.append(f'{d.name},"{d.caption}",{d.meta["modality"]},{d.name[:9]}')
    (folder / "captions.csv").write_text("\n".join(lines))
    offline_cwd(tmp_path, monkeypatch, model_dir)
    assert main([str(folder), "--out", "out", "--fraction", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "modality" in out and "ROUGE-L" in out
    report = json.loads((tmp_path / "out" / "imgs.json").read_text())
    assert report["group"] == "case_id" and report["queries"] > 0
    assert {c["source"] for c in report["captions"]} == {
        "nearest neighbour",
        "extractive consensus",
    }
    for name in ("imgs.md", "imgs-precision.png", "imgs-captions.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / "imgs-precision.png").read_bytes()[:4] == b"\x89PNG"
    assert main([str(tmp_path / "nowhere"), "--out", "out"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_the_command_on_a_collection(tmp_path, monkeypatch, model_dir):
    from ingest.__main__ import main as ingest_main

    offline_cwd(tmp_path, monkeypatch, model_dir)
    assert ingest_main(["demo", "--count", "35", "--quiet"]) == 0
    assert main(["--out", "out", "--label", "modality"]) == 0
    report = json.loads((tmp_path / "out" / "medcap-local-effnet-lite0-v2-1472.json").read_text())
    assert report["rows"] == 35 and report["queries"] + report["corpus"] == 35
    assert [p["label"] for p in report["precision"]] == ["modality"]
