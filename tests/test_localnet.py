"""EfficientNet-Lite0 without torch: the loader, the graph, the cache and the preprocessing."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from pipeline import localnet
from pipeline.localnet import (
    FEATURE_DIM,
    EfficientNetLite0,
    build_onnx,
    load_state_dict,
    preprocess,
    weights_path,
)

# ----------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return load_state_dict(weights_path())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> EfficientNetLite0:
    return EfficientNetLite0(tmp_path_factory.mktemp("lite0-cls"), with_classifier=True)


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lite0-features")


@pytest.fixture(scope="module")
def net(features_dir: Path) -> EfficientNetLite0:
    return EfficientNetLite0(features_dir)


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)())


# --------------------------------------------------- writing torch files by hand (no torch here)


class _Tensor:
    """Pickles the way a torch tensor does: _rebuild_tensor_v2(storage, offset, size, stride...)."""

    def __init__(self, storage: tuple[str, np.ndarray], offset: int, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        args = (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())
        return rebuild, args


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in `torch` module so pickle can name torch's globals; no code of it ever runs."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("the loader must not call torch")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _storage_pickle(obj, torch: types.ModuleType, legacy: bool) -> tuple[bytes, dict]:
    """Pickle obj with torch's persistent-id scheme; returns the bytes and key -> array."""
    storages: dict[str, np.ndarray] = {}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if not (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], np.ndarray)):
                return None
            key, arr = obj
            storages[key] = arr
            kind = torch.LongStorage if arr.dtype == np.int64 else torch.FloatStorage
            pid = ("storage", kind, key, "cpu", arr.size)
            return (*pid, None) if legacy else pid

    out = io.BytesIO()
    Pickler(out, protocol=2).dump(obj)
    return out.getvalue(), storages


def write_legacy(path: Path, obj, torch: types.ModuleType) -> None:
    body, storages = _storage_pickle(obj, torch, legacy=True)
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(body)
        pickle.dump(list(storages), f, protocol=2)
        for arr in storages.values():
            f.write(struct.pack("<q", arr.size) + arr.tobytes())


def write_zip(path: Path, obj, torch: types.ModuleType) -> None:
    body, storages = _storage_pickle(obj, torch, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", body)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for key, arr in storages.items():
            zf.writestr(f"archive/data/{key}", arr.tobytes())


def small_state() -> tuple[collections.OrderedDict, dict[str, np.ndarray]]:
    """Tensors that exercise strides, offsets, shared storages and scalars; and their values."""
    shared = ("0", np.arange(24, dtype=np.float32))
    square = ("1", np.arange(6, dtype=np.float32) * 0.5)
    count = ("2", np.array([7], dtype=np.int64))
    tensors = collections.OrderedDict(
        [
            ("a.weight", _Tensor(shared, 0, (2, 3, 4), (12, 4, 1))),
            ("a.bias", _Tensor(shared, 4, (5,), (1,))),
            ("b.weight", _Tensor(square, 0, (3, 2), (1, 3))),  # a transposed view
            ("bn.num_batches_tracked", _Tensor(count, 0, (), ())),
        ]
    )
    expected = {
        "a.weight": shared[1].reshape(2, 3, 4),
        "a.bias": shared[1][4:9],
        "b.weight": square[1].reshape(2, 3).T,
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
    }
    return tensors, expected


# ------------------------------------------------------------------------------------- loader


def test_shipped_weights_load_with_the_expected_keys_and_shapes(state) -> None:
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_fc.bias"].shape == (1000,)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert {k.split(".")[1] for k in state if k.startswith("_blocks.")} == {
        str(i) for i in range(16)
    }
    assert "_blocks.0._expand_conv.weight" not in state  # expand ratio 1: no expand conv
    assert state["_blocks.1._expand_conv.weight"].shape == (96, 16, 1, 1)
    assert state["_blocks.15._depthwise_conv.weight"].shape == (1152, 1, 3, 3)
    for bn in ("_bn0", "_bn1", "_blocks.7._bn2"):
        for part in ("weight", "bias", "running_mean", "running_var"):
            assert state[f"{bn}.{part}"].dtype == np.float32
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_bn0.num_batches_tracked"].shape == ()
    assert all(v.flags.c_contiguous for v in state.values())
    assert all(np.isfinite(v).all() for v in state.values())


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_handwritten_checkpoints_round_trip(tmp_path: Path, fake_torch, writer) -> None:
    tensors, expected = small_state()
    path = tmp_path / "small.pth"
    writer(path, tensors, fake_torch)
    loaded = load_state_dict(path)
    assert list(loaded) == list(expected)
    for name, want in expected.items():
        assert loaded[name].dtype == want.dtype and loaded[name].shape == want.shape
        np.testing.assert_array_equal(loaded[name], want)


@pytest.mark.parametrize("writer", [write_legacy, write_zip], ids=["legacy", "zip"])
def test_a_tensor_past_the_end_of_its_storage_is_refused(tmp_path, fake_torch, writer) -> None:
    bad = {"w": _Tensor(("0", np.zeros(4, np.float32)), 2, (3,), (1,))}
    writer(tmp_path / "bad.pth", bad, fake_torch)
    with pytest.raises(ValueError, match="past the end"):
        load_state_dict(tmp_path / "bad.pth")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_forbidden_global_is_refused_in_legacy_format(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pth", "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        pickle.dump({"w": _Evil(marker)}, f, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_forbidden_global_is_refused_in_zip_format(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        load_state_dict(tmp_path / "evil.pth")
    assert not marker.exists()


def test_a_file_without_the_legacy_magic_number_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"w": 1}) + pickle.dumps(1001))
    with pytest.raises(ValueError, match="magic"):
        load_state_dict(tmp_path / "plain.pkl")


# -------------------------------------------------------------------------------------- graph


def test_tf_same_padding_puts_the_extra_pixel_bottom_right() -> None:
    assert localnet._same_pads(224, 3, 2) == ([0, 0, 1, 1], 112)
    assert localnet._same_pads(112, 5, 2) == ([1, 1, 2, 2], 56)
    assert localnet._same_pads(56, 3, 1) == ([1, 1, 1, 1], 56)
    assert localnet._same_pads(14, 1, 1) == ([0, 0, 0, 0], 14)


def test_weights_that_disagree_with_the_config_fail_loudly(state) -> None:
    fewer = {k: v for k, v in state.items() if not k.startswith("_blocks.15.")}
    with pytest.raises(ValueError, match="15 blocks"):
        build_onnx(fewer)
    wrong_kernel = dict(state)
    wrong_kernel["_blocks.2._depthwise_conv.weight"] = np.zeros((144, 1, 5, 5), np.float32)
    with pytest.raises(ValueError, match="block 2"):
        build_onnx(wrong_kernel)


def test_the_graph_has_a_dynamic_batch_and_the_named_outputs(state) -> None:
    model = build_onnx(state, with_classifier=True)
    (pixels,) = model.graph.input
    dims = pixels.type.tensor_type.shape.dim
    assert pixels.name == "pixels" and dims[0].dim_param  # N is symbolic
    assert [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert [o.name for o in model.graph.output] == ["features", "logits"]
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    assert sum(n.op_type == "Add" for n in model.graph.node) == 9  # the residual blocks
    assert [o.name for o in build_onnx(state).graph.output] == ["features"]


def test_coffee_is_espresso(classifier: EfficientNetLite0) -> None:
    logits = classifier.logits([photo("coffee")])
    assert logits.shape == (1, 1000)
    assert int(np.argmax(logits[0])) == 967  # espresso, top-1 (softmax ~0.94)


def test_chelsea_is_a_cat(classifier: EfficientNetLite0) -> None:
    assert int(np.argmax(classifier.logits([photo("chelsea")])[0])) in range(281, 286)


# ---------------------------------------------------------------------------------- features


def test_features_are_deterministic_normalised_and_batch_independent(net) -> None:
    images = [photo("coffee"), photo("chelsea"), photo("astronaut")]
    batch = net.features(images)
    assert batch.shape == (3, FEATURE_DIM) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(net.features(images[:1]), net.features(images[:1]))
    singles = np.concatenate([net.features([im]) for im in images])
    np.testing.assert_allclose(batch, singles, atol=1e-5)
    assert net.features([]).shape == (0, FEATURE_DIM)


def test_features_match_between_the_two_graphs(net, classifier) -> None:
    image = photo("rocket")
    np.testing.assert_allclose(net.features([image]), classifier.features([image]), atol=1e-6)


def test_logits_need_the_classifier(net) -> None:
    with pytest.raises(RuntimeError, match="with_classifier"):
        net.logits([photo("coffee")])


def test_the_cached_graph_is_reused(net, features_dir: Path) -> None:
    (path,) = features_dir.glob("*.onnx")
    assert f"v{localnet.GRAPH_VERSION}" in path.name
    mtime = path.stat().st_mtime_ns
    again = EfficientNetLite0(features_dir)
    assert again.model_path == path and path.stat().st_mtime_ns == mtime
    image = photo("chelsea")
    np.testing.assert_array_equal(again.features([image]), net.features([image]))
    assert sorted(p.name for p in features_dir.iterdir()) == [path.name]  # no temp files left


def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, net) -> None:
    EfficientNetLite0(tmp_path)
    (path,) = tmp_path.glob("*.onnx")
    path.write_bytes(path.read_bytes()[:1000])
    rebuilt = EfficientNetLite0(tmp_path)
    image = photo("coffee")
    np.testing.assert_allclose(rebuilt.features([image]), net.features([image]), atol=1e-6)


# ------------------------------------------------------------------------------ preprocessing


def _check(x: np.ndarray) -> None:
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.min() >= -127 / 128 and x.max() <= 128 / 128


def test_preprocess_handles_every_common_mode() -> None:
    rgb = photo("astronaut").resize((300, 200))
    grey16 = Image.fromarray(np.linspace(1000, 5000, 300 * 200).reshape(200, 300).astype(np.uint16))
    assert grey16.mode == "I;16"
    images = {
        "RGB": rgb,
        "L": rgb.convert("L"),
        "I;16": grey16,
        "I": grey16.convert("I"),
        "F": grey16.convert("F"),
        "RGBA": rgb.convert("RGBA"),
        "LA": rgb.convert("LA"),
        "P": rgb.convert("P"),
        "CMYK": rgb.convert("CMYK"),
        "1": rgb.convert("1"),
    }
    paletted = rgb.convert("P")
    paletted.info["transparency"] = 0  # a GIF-style transparent palette entry
    _check(preprocess(paletted))
    for mode, image in images.items():
        assert image.mode == mode
        x = preprocess(image)
        _check(x)
        assert image.mode == mode and image.size == (300, 200)  # the input is left alone
    for mode in ("L", "I;16", "I", "F", "LA", "1"):  # greyscale is replicated to three channels
        x = preprocess(images[mode])
        np.testing.assert_array_equal(x[0], x[1])
        np.testing.assert_array_equal(x[0], x[2])
    np.testing.assert_array_equal(
        preprocess(images["L"]), preprocess(rgb.convert("L").convert("RGB"))
    )
    # 16-bit greyscale is stretched by its own min/max, so the range is fully used.
    x16 = preprocess(grey16)
    assert x16.min() < -0.9 and x16.max() > 0.9


def test_preprocess_alpha_is_composited_on_black() -> None:
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 255  # white pixels, fully transparent: they must not show
    np.testing.assert_array_equal(preprocess(Image.fromarray(rgba)), -127 / 128)


def test_preprocess_centre_crops_non_square_images() -> None:
    for size in [(400, 200), (200, 400)]:
        a = np.zeros((size[1], size[0], 3), np.uint8)  # black bands either side of ...
        if size[0] > size[1]:
            a[:, 100:300] = 255  # ... a white centre square
        else:
            a[100:300, :] = 255
        x = preprocess(Image.fromarray(a))
        _check(x)
        np.testing.assert_allclose(x[:, 3:-3, 3:-3], 128 / 128)  # the bands are cropped away
    _check(preprocess(photo("coffee").resize((37, 20))))  # tiny images are upscaled


def test_the_embedder_declares_the_graph_dimension(net) -> None:
    from pipeline.embedders import LocalEmbedder

    assert LocalEmbedder.dim == FEATURE_DIM == 1280 + 80 + 112
    assert LocalEmbedder.name.endswith("-v2")  # not mixed with the 1280-d v1 collections
    f = net.features([photo("coffee")])
    # Each part is unit length before the whole is normalised: the head carries 1/sqrt(3).
    assert np.linalg.norm(f[0, :1280]) == pytest.approx(1 / np.sqrt(3), abs=1e-5)
