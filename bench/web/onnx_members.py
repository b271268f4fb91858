"""Write each member of a skinlens model file as its own ONNX file, for the ONNX Runtime Web peer
(bench/web/peer_members.mjs), and check every one against the project's own CPU result.

    ~/.cache/skinlens-bench-venv/bin/python bench/web/onnx_members.py \
        [--model models/skinlens.safetensors] [--out target/onnx-members] [--image JPG]

Writes <out>/<member>.onnx (f32 weights, converted from the file's folded f16/f32 tensors),
<out>/input-<size>.bin (the check image as the member's f32 NCHW input) and <out>/manifest.json
(members, input shapes, both sides' logits of the check image, the differences measured).
Needs numpy, onnx and onnxruntime; the reference is target/release/skinlens (cargo build --release).

The graph is the network as src/model/ computes it: Conv with explicit TF 'SAME' pads (the
stride-2 ones are asymmetric), Clip(0, 6), Add for residuals, GlobalAveragePool, Flatten, Gemm.

The check: the CLI prints only probabilities, so each member is written as a one-network model
file with an extra class whose fc row and bias are zero. Its logit is exactly 0, so the CLI's
p_c / p_extra = exp(logit_c) gives back the member's raw logits. Both sides start from the same
decoded RGB bytes (a lossless PNG of the JPEG as Pillow decodes it), so JPEG decoders don't
differ; the square crop and integer bilinear resize are ported from src/preprocess.
"""
import argparse
import hashlib
import json
import math
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# Within what the two sides must agree (f32 arithmetic in a different order, 22 layers deep).
TOLERANCE = 1e-3
# ONNX Runtime Web 1.30 reads these; newer IR versions gain nothing for this graph.
OPSET, IR_VERSION = 17, 8

# --- safetensors (the format is a JSON header and raw little-endian data; no package needed)

DTYPES = {"F16": np.float16, "F32": np.float32, "I8": np.int8}


def read_safetensors(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(body[start:end], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    # int8 weights (src/model/storage.rs): `NAME_scale` [C_out, runs], each run ceil(row / runs) long.
    for name in [n for n, t in tensors.items() if t.dtype == np.int8]:
        q, scales = tensors[name], tensors.pop(name + "_scale").astype(np.float32)
        rows = q.reshape(q.shape[0], -1).astype(np.float32)
        runs = scales.reshape(q.shape[0], -1)
        run = -(-rows.shape[1] // runs.shape[1])
        per_value = np.repeat(runs, run, axis=1)[:, :rows.shape[1]]
        tensors[name] = (rows * per_value).reshape(q.shape)
    return meta, tensors


def write_safetensors(path, tensors, meta):
    header, offset, chunks = {"__metadata__": meta}, 0, []
    for name, array in tensors.items():
        raw = np.ascontiguousarray(array, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # keeps the data 8-byte aligned, as the format recommends
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


# --- the block table (src/model/config.rs)

# (repeats, kernel, stride, expand, in, out) of EfficientNet-B0 / Lite0
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
LITE = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8)}  # width, depth


def round_filters(channels, width):
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(int((scaled + 4) // 8) * 8, 8)
    return rounded + 8 if rounded < 0.9 * scaled else rounded


def lite_blocks(arch):
    """[(kernel, stride, expand, cin, cout)] of `efficientnet-liteN`. Lite keeps the first and
    last stages at one block; the others repeat ceil(depth * repeats) times."""
    width, depth = LITE[int(arch.removeprefix("efficientnet-lite"))]
    blocks = []
    for stage, (repeats, k, s, e, cin, cout) in enumerate(STAGES):
        if 0 < stage < len(STAGES) - 1:
            repeats = math.ceil(depth * repeats)
        cin, cout = round_filters(cin, width), round_filters(cout, width)
        for r in range(repeats):
            blocks.append((k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
    return blocks


def same_pads(size, kernel, stride):
    """TF 'SAME' for a square input: (output size, ONNX pads [top, left, bottom, right])."""
    out = -(-size // stride)
    pad = max((out - 1) * stride + kernel - size, 0)
    before = pad // 2
    return out, [before, before, pad - before, pad - before]


# --- the ONNX graph

def member_graph(name, arch, size, tensors, classes):
    """One member as an ONNX model: input `input` [1, 3, size, size] f32, output `logits` [1, classes]."""
    nodes, inits = [], []

    def weight(key):
        array = tensors[f"{name}/{key}"].astype(np.float32)
        inits.append(numpy_helper.from_array(array, key))
        return key

    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero"),
              numpy_helper.from_array(np.array(6, np.float32), "six")]

    def conv(x, key, hw, stride=1, group=1, relu6=True):
        w = tensors[f"{name}/{key}.weight"]
        k = w.shape[-1]
        out_hw, pads = same_pads(hw, k, stride)
        y = f"{key}.out"
        nodes.append(helper.make_node("Conv", [x, weight(f"{key}.weight"), weight(f"{key}.bias")], [y], name=key,
                                      kernel_shape=[k, k], strides=[stride, stride], pads=pads, group=group))
        if relu6:
            nodes.append(helper.make_node("Clip", [y, "zero", "six"], [f"{key}.relu6"], name=f"{key}.relu6"))
            y = f"{key}.relu6"
        return y, out_hw

    h, hw = conv("input", "_conv_stem", size, stride=2)
    for i, (k, s, e, cin, cout) in enumerate(lite_blocks(arch)):
        p, x = f"_blocks.{i}", h
        if e != 1:
            h, _ = conv(h, f"{p}._expand_conv", hw)
        h, hw = conv(h, f"{p}._depthwise_conv", hw, stride=s, group=cin * e)
        h, _ = conv(h, f"{p}._project_conv", hw, relu6=False)
        if s == 1 and cin == cout:
            nodes.append(helper.make_node("Add", [h, x], [f"{p}.out"], name=f"{p}.residual"))
            h = f"{p}.out"
    h, _ = conv(h, "_conv_head", hw)
    nodes += [helper.make_node("GlobalAveragePool", [h], ["pooled"], name="pool"),
              helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1),
              helper.make_node("Gemm", ["features", weight("_fc.weight"), weight("_fc.bias")], ["logits"],
                               name="fc", transB=1)]
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(classes)])], initializer=inits)
    model = helper.make_model(graph, producer_name="skinlens bench/web/onnx_members.py",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    # Every stored tensor of the member must have become an initializer: nothing left out.
    unused = {k for k in tensors if k.startswith(f"{name}/")} - {f"{name}/{i.name}" for i in inits}
    if unused:
        sys.exit(f"{name}: tensors not in the graph: {sorted(unused)}")
    return model


# --- preprocessing (src/preprocess: centre square, integer bilinear, (u8 - 127) / 128)

def taps(n_out, n_in):
    denom = 2 * n_out
    num = np.clip((2 * np.arange(n_out, dtype=np.int64) + 1) * n_in - n_out, 0, (n_in - 1) * denom)
    i0 = num // denom
    return i0, np.minimum(i0 + 1, n_in - 1), num - i0 * denom, denom


def shades_of_gray(sq, p):
    """src/preprocess/colour.rs: per-channel gains from the Minkowski p-mean, applied to the square."""
    x = sq.astype(np.float64)
    illuminant = np.mean(x ** p, axis=(0, 1)) ** (1.0 / p)
    norm = np.sqrt(np.sum(illuminant ** 2))
    gains = np.where(illuminant > 0, norm / (np.sqrt(3.0) * np.maximum(illuminant, 1e-300)), 1.0)
    return np.minimum(np.floor(x * gains + 0.5), 255).astype(np.int64)


def model_input(rgb, size, colour="none"):
    h, w, _ = rgb.shape
    s = min(h, w)
    sq = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].astype(np.int64)
    if colour != "none":
        sq = shades_of_gray(sq, int(colour.split(":")[1]))
    r0, r1, fr, dy = taps(size, s)
    c0, c1, fc, dx = taps(size, s)
    fr, fc = fr[:, None, None], fc[None, :, None]
    top = (dx - fc) * sq[r0][:, c0] + fc * sq[r0][:, c1]
    bottom = (dx - fc) * sq[r1][:, c0] + fc * sq[r1][:, c1]
    u8 = ((dy - fr) * top + fr * bottom + dy * dx // 2) // (dy * dx)
    return ((u8.astype(np.float32) - 127) / 128).transpose(2, 0, 1)[None].copy()


# --- the project's logits, through the CLI

def project_logits(cli, name, arch, size, tensors, classes, png, tmp, colour="none"):
    """The member's raw logits as target/release/skinlens computes them (see the module doc)."""
    own = {k.split("/", 1)[1]: v.astype(np.float32) for k, v in tensors.items() if k.startswith(f"{name}/")}
    own["_fc.weight"] = np.concatenate([own["_fc.weight"], np.zeros((1, own["_fc.weight"].shape[1]), np.float32)])
    own["_fc.bias"] = np.concatenate([own["_fc.bias"], np.zeros(1, np.float32)])
    meta = {"skinlens.arch": arch, "skinlens.input_size": str(size), "skinlens.batchnorm": "folded",
            "skinlens.classes": ",".join(classes + ["zero-logit"]), "skinlens.tta": "none", "skinlens.untrained": "false"}
    if colour != "none":
        meta["skinlens.colour_constancy"] = colour
    path = Path(tmp) / f"{name}.safetensors"
    write_safetensors(path, own, meta)
    run = subprocess.run([cli, "predict", "--json", "--tta=none", "--model", str(path), str(png)],
                         capture_output=True, text=True, check=True)
    p = json.loads(run.stdout.strip().splitlines()[-1])["probabilities"]
    return np.array([math.log(p[c] / p["zero-logit"]) for c in classes], np.float64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=REPO / "models/skinlens.safetensors", type=Path)
    ap.add_argument("--out", default=REPO / "target/onnx-members", type=Path)
    ap.add_argument("--image", default=REPO.parent / "shared/data/ham10000/images_224/ISIC_0024306.jpg", type=Path)
    ap.add_argument("--cli", default=REPO / "target/release/skinlens", type=Path)
    args = ap.parse_args()

    meta, tensors = read_safetensors(args.model)
    if meta.get("skinlens.batchnorm") != "folded":
        sys.exit(f"{args.model}: BatchNorm is not folded (skinlens.batchnorm = {meta.get('skinlens.batchnorm')})")
    names = meta["skinlens.members"].split(",") if "skinlens.members" in meta else None
    if names is None:
        sys.exit(f"{args.model}: not an ensemble file (no skinlens.members)")
    classes = meta["skinlens.classes"].split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    manifest = {"model": str(args.model), "modelSha256": hashlib.sha256(args.model.read_bytes()).hexdigest(),
                "image": str(args.image), "classes": classes, "onnxruntime": ort.__version__, "tolerance": TOLERANCE,
                "members": []}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / f"{args.image.stem}.png"
        Image.fromarray(rgb).save(png)  # lossless: the CLI decodes exactly these bytes
        for name in names:
            arch = meta[f"skinlens.member.{name}.arch"]
            size = int(meta[f"skinlens.member.{name}.input_size"])
            colour = meta.get(f"skinlens.member.{name}.colour_constancy", "none")
            model = member_graph(name, arch, size, tensors, classes)
            onnx_path = args.out / f"{name}.onnx"
            onnx.save(model, onnx_path)

            x = model_input(rgb, size, colour)
            input_file = f"input-{size}.bin" if colour == "none" else f"input-{size}-{colour.replace(':', '')}.bin"
            x.tofile(args.out / input_file)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            got = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0][0]
            want = project_logits(args.cli, name, arch, size, tensors, classes, png, tmp, colour)
            diff = float(np.abs(got - want).max())
            agree = int(got.argmax()) == int(want.argmax())
            ok &= agree and diff <= TOLERANCE
            record = {"name": name, "arch": arch, "inputSize": size, "blocks": len(lite_blocks(arch)),
                      "onnx": onnx_path.name, "onnxBytes": onnx_path.stat().st_size, "input": input_file,
                      "projectLogits": [round(float(v), 6) for v in want], "onnxLogits": [round(float(v), 6) for v in got],
                      "maxAbsLogitDiff": diff, "topClass": classes[int(want.argmax())], "topClassAgrees": agree}
            manifest["members"].append(record)
            print(json.dumps({k: record[k] for k in ("name", "arch", "blocks", "onnx", "onnxBytes", "topClass",
                                                     "topClassAgrees", "maxAbsLogitDiff")}))
    manifest["ok"] = ok
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"# {'OK' if ok else 'FAILED'}: ONNX Runtime {ort.__version__} vs {args.cli.name} on {args.image.name} "
          f"(tolerance {TOLERANCE}); wrote {args.out}/manifest.json")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
