"""PyTorch yardstick for `skinlens train --bench`: one EfficientNet-Lite0 fine-tuning step.

Same model (ImageNet weights from ../shared/reference, 7-way head), batch, input size, thread
count, optimiser (AdamW) and loss (cross-entropy, label smoothing 0.1) as the skinlens trainer;
channels_last, which TRAINING-NOTES measured as PyTorch's faster layout on this CPU. Random
inputs: a step's cost does not depend on the pixels. Prints one JSON line like skinlens does.
"""
import argparse
import json
import time

import torch
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = EfficientNet.from_name("efficientnet-lite0", image_size=args.size)
    model.load_state_dict(load_file(args.weights), strict=True)
    model._fc = torch.nn.Linear(model._fc.in_features, 7)
    model = model.to(memory_format=torch.channels_last).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(args.batch, 3, args.size, args.size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (args.batch,))

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()

    step()  # warm-up, not timed (as skinlens --bench)
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    per_step = (time.perf_counter() - started) / args.steps
    print(json.dumps({"framework": f"pytorch {torch.__version__}", "size": args.size, "batch": args.batch, "steps": args.steps,
                      "seconds_per_step": round(per_step, 4), "images_per_second": round(args.batch / per_step, 2),
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
