"""The built-in demo set: deterministic, every modality early, captions that match the drawings."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from PIL import Image

from ingest.demo import DEMO_DATASET, MODALITIES, DemoItem, generate, item, write_folder

# Each caption names its modality: one word from every group must appear.
MODALITY_WORDS = {
    "chest x-ray": [("chest",), ("radiograph", "x-ray")],
    "head ct": [(r"\bct\b",), ("head", "brain")],
    "brain mri": [(r"\bmri\b",), ("brain",)],
    "abdominal ultrasound": [("ultrasound",)],
    "histology": [("h&e", "haematoxylin and eosin")],
    "fundus": [("fundus",)],
    "dermoscopy": [("dermoscop", "dermatoscop")],
}
# (width, height, mode): each modality has its own typical size and colour
SHAPES = {
    "chest x-ray": (512, 512, "L"),
    "head ct": (512, 512, "L"),
    "brain mri": (256, 256, "L"),
    "abdominal ultrasound": (512, 384, "L"),
    "histology": (384, 384, "RGB"),
    "fundus": (448, 448, "RGB"),
    "dermoscopy": (448, 336, "RGB"),
}
META_KEYS = {"dataset", "synthetic", "modality", "finding", "location", "size_mm", "index"}
SIZE = re.compile(r"(\d+(?:\.\d+)?) (mm|cm)\b")
COUNT = 6 * len(MODALITIES)  # enough for every finding of every modality to come up


@pytest.fixture(scope="module")
def items() -> list[DemoItem]:
    return list(generate(COUNT))


def test_same_call_gives_the_same_bytes_and_captions(items: list[DemoItem]) -> None:
    again = list(generate(20))
    assert [d.image for d in again] == [d.image for d in items[:20]]
    assert [d.caption for d in again] == [d.caption for d in items[:20]]
    assert [d.meta for d in again] == [d.meta for d in items[:20]]


def test_item_is_the_same_as_generates(items: list[DemoItem]) -> None:
    for i in (0, 1, 6, 7, 19, COUNT - 1):
        assert item(i) == items[i]


def test_the_seed_changes_the_set(items: list[DemoItem]) -> None:
    other = item(0, seed=1)
    assert other.meta["modality"] == items[0].meta["modality"]
    assert other.image != items[0].image


def test_every_modality_comes_up_in_the_first_few() -> None:
    first = list(generate(len(MODALITIES)))
    assert [d.meta["modality"] for d in first] == list(MODALITIES)
    assert len(MODALITIES) >= 7


def test_modalities_are_interleaved(items: list[DemoItem]) -> None:
    for i, d in enumerate(items):
        assert d.meta["modality"] == MODALITIES[i % len(MODALITIES)]


def test_count_is_honoured() -> None:
    assert list(generate(0)) == []
    assert len(list(generate(3, seed=5))) == 3
    with pytest.raises(ValueError):
        generate(-1)
    with pytest.raises(ValueError):
        item(-1)


def test_names_are_unique_and_images_all_differ(items: list[DemoItem]) -> None:
    assert len({d.name for d in items}) == len(items)
    assert len({d.image for d in items}) == len(items)
    for d in items:
        slug = d.meta["modality"].replace(" ", "-")
        assert d.name == f"demo-{d.meta['index']:04d}-{slug}.png"


def test_images_decode_to_the_stated_sizes(items: list[DemoItem]) -> None:
    for d in items:
        with Image.open(io.BytesIO(d.image)) as im:
            assert im.format == "PNG"
            assert (im.width, im.height, im.mode) == SHAPES[d.meta["modality"]]
            assert min(im.size) >= 256 and max(im.size) <= 512
            im.load()
            assert not im.text  # no timestamps or other metadata chunks


def test_meta_fields(items: list[DemoItem]) -> None:
    for i, d in enumerate(items):
        m = d.meta
        assert m.keys() >= META_KEYS
        assert m["dataset"] == DEMO_DATASET
        assert m["synthetic"] is True
        assert m["index"] == i
        assert m["license"] == "CC0-1.0"
        assert isinstance(m["finding"], str) and m["finding"]
        assert m["location"] is None or isinstance(m["location"], str)
        assert m["size_mm"] is None or (isinstance(m["size_mm"], float) and m["size_mm"] > 0)
        json.dumps(m)  # goes into the collection's JSON field as is


def test_captions_name_the_modality_finding_and_location(items: list[DemoItem]) -> None:
    for d in items:
        caption = d.caption.lower()
        for group in MODALITY_WORDS[d.meta["modality"]]:
            assert any(re.search(word, caption) for word in group), d.caption
        assert d.meta["finding"] in caption, d.caption
        if d.meta["location"]:
            assert d.meta["location"].split(",")[0] in caption, d.caption
        assert d.caption[0].isupper() and d.caption.endswith("."), d.caption
        assert "synthetic" not in caption  # marked in meta, not in the caption


def test_a_stated_size_is_the_drawn_size(items: list[DemoItem]) -> None:
    sized = [d for d in items if d.meta["size_mm"] is not None]
    assert {d.meta["modality"] for d in sized} >= {"chest x-ray", "head ct", "dermoscopy"}
    for d in sized:
        stated = [float(v) * (10 if unit == "cm" else 1) for v, unit in SIZE.findall(d.caption)]
        assert any(abs(s - d.meta["size_mm"]) < 0.01 for s in stated), (d.caption, d.meta)


def test_findings_vary_in_kind_location_and_size(items: list[DemoItem]) -> None:
    for modality in MODALITIES:
        mine = [d.meta for d in items if d.meta["modality"] == modality]
        assert len({m["finding"] for m in mine}) >= 3, modality
    assert len({d.meta["location"] for d in items if d.meta["location"]}) >= 15
    assert len({d.meta["size_mm"] for d in items if d.meta["size_mm"]}) >= 10
    normal = [d for d in items if d.meta["finding"] == "normal"]
    assert {d.meta["modality"] for d in normal} >= {"chest x-ray", "head ct", "brain mri"}


def test_write_folder_writes_pngs_and_a_readable_csv(tmp_path) -> None:
    path = write_folder(tmp_path / "demo", count=9, seed=2)
    assert path == tmp_path / "demo" / "captions.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9
    assert rows[0].keys() >= {"filename", "caption", "modality", "finding"}
    for i, row in enumerate(rows):
        expected = item(i, seed=2)
        assert row["filename"] == expected.name
        assert row["caption"] == expected.caption
        assert row["modality"] == expected.meta["modality"]
        assert (tmp_path / "demo" / row["filename"]).read_bytes() == expected.image
    assert sorted(p.name for p in (tmp_path / "demo").glob("*.png")) == sorted(
        r["filename"] for r in rows
    )
