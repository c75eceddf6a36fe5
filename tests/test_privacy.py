"""Nothing identifying is stored: DICOM patient tags and EXIF (GPS included) never reach a row."""

from __future__ import annotations

import base64
import csv

from ingest.runner import ingest
from ingest.sources import folder_source
from pipeline.store import MilvusStore
from tests.badfiles import GPS_MARKER, PATIENT_NAME, _exif, dicom


def test_stored_rows_carry_no_patient_name_or_exif(tmp_path, lite_uri, embedder):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(dicom())
    jpeg = _exif(6)()
    assert GPS_MARKER.encode() in jpeg and PATIENT_NAME.encode() in dicom()  # the bait is there
    (folder / "photo.jpg").write_bytes(jpeg)
    with (folder / "captions.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["filename", "caption"], ["ct.dcm", "Axial CT."], ["photo.jpg", "A photo."]])
    store = MilvusStore(lite_uri, embedder.name, embedder.dim)
    summary = ingest(folder_source(folder), embedder, store, progress=False)
    assert summary.added == 2
    rows = store._client.query(store.collection, filter='id != ""', output_fields=["*"])
    assert len(rows) == 2
    for row in rows:
        thumb = base64.b64decode(row["thumbnail"])
        assert thumb[:2] == b"\xff\xd8"  # a JPEG
        blob = repr(row).encode() + thumb
        for secret in (PATIENT_NAME, "Doe", GPS_MARKER, "ACME", "General Hospital", "ID-123456"):
            assert secret.encode() not in blob
        assert b"Exif" not in thumb
    store.close()
