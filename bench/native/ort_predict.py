"""The peer of `skinlens predict --tta=none`: ONNX Runtime + Pillow + NumPy on the same files,
whole process (imports, session creation, decode, centre square, bilinear resize, (x-127)/128,
one run per image, softmax), one JSON line per image on stdout like predict --json."""
import json, sys

import numpy as np
import onnxruntime as ort
from PIL import Image

model, threads, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
size = session.get_inputs()[0].shape[-1]
for path in files:
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    x = ((np.asarray(image, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
    logits = session.run(None, {name: x})[0][0]
    p = np.exp(logits - logits.max())
    print(json.dumps({"file": path, "probabilities": (p / p.sum()).tolist()}))
