"""ONNX Runtime CPU latency of the same EfficientNet-Lite0, timed like examples/bench_cpu.rs."""
import json, sys, time
import numpy as np
import onnxruntime as ort

model, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
opts = ort.SessionOptions()
opts.intra_op_num_threads = threads
opts.inter_op_num_threads = 1
session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
name = session.get_inputs()[0].name
for _ in range(10):
    session.run(None, {name: x})
samples = []
for _ in range(runs):
    start = time.perf_counter()
    session.run(None, {name: x})
    samples.append((time.perf_counter() - start) * 1e3)
samples.sort()
print(json.dumps({"engine": f"onnxruntime {ort.__version__}", "threads": threads, "runs": runs,
                  "median_ms": samples[len(samples) // 2], "min_ms": samples[0],
                  "p90_ms": samples[int(0.9 * (len(samples) - 1))]}))
