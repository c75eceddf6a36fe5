"""Every kind of bad or odd input gets one sentence or a correct image; nothing crashes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.images import decode
from tests.badfiles import CASES, Case, dicom


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_decode_answers_each_case(case: Case):
    data = case.make()
    if case.words is None:
        decoded = decode(data)
        assert decoded.image.mode in ("L", "RGB")
        assert min(decoded.image.size) >= 16
        assert np.asarray(decoded.image).std() > 1  # real pixels, not a blank
        assert not decoded.image.info  # no metadata travels on
    else:
        with pytest.raises(InputError) as err:
            decode(data)
        sentence = err.value.sentence
        assert case.words in sentence
        assert sentence.endswith(".") and "\n" not in sentence and len(sentence) < 300


def test_corpus_is_large_enough():
    assert len({c.name for c in CASES}) >= 25


def test_dicom_window_and_monochrome1_invert():
    normal = np.asarray(decode(dicom(window=None)).image, dtype=float)
    inverted = np.asarray(decode(dicom(photometric="MONOCHROME1", window=None)).image, dtype=float)
    assert np.allclose(normal + inverted, 255, atol=1)
    # A narrow window saturates more pixels than the file's own robust range.
    narrow = np.asarray(decode(dicom(window=(300.0, 50.0))).image)
    assert (narrow == 255).mean() > (normal == 255).mean()


def test_multi_frame_dicom_takes_the_middle_frame():
    from pipeline.images import _decode_dicom

    middle = np.asarray(_decode_dicom(dicom(frames=5), 10**9))
    assert middle.shape == (128, 128)


def test_dicom_ingest_with_captions_from_tags(tmp_path, lite_uri, embedder):
    from ingest.runner import ingest
    from ingest.sources import folder_source
    from pipeline.store import MilvusStore
    from tests.badfiles import PATIENT_NAME

    folder = tmp_path / "dicoms"
    folder.mkdir()
    (folder / "a.dcm").write_bytes(dicom())
    (folder / "b.dcm").write_bytes(dicom(frames=3))
    (folder / "b.txt").write_text("A sidecar caption wins over tags.")
    (folder / "empty.dcm").write_bytes(dicom(pixels=False))
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    without = ingest(folder_source(folder), embedder, store, progress=False)
    assert (without.added, without.rejected) == (1, 2)  # a.dcm has no caption, empty has none
    summary = ingest(folder_source(folder, dicom_captions=True), embedder, store, progress=False)
    assert (summary.added, summary.skipped, summary.rejected) == (1, 1, 1)
    assert "no image" in dict(summary.rejects)[str(folder / "empty.dcm")]
    captions = {r["caption"] for r in store.rows()}
    assert captions == {"CT: HEAD, CT HEAD WO CONTRAST", "A sidecar caption wins over tags."}
    assert PATIENT_NAME not in repr(list(store.rows()))
    store.close()
