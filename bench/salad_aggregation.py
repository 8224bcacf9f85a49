"""SALAD aggregation: one batched matmul against the published ``repeat`` formulation.

The published code builds two ``[B, l, m, n]`` tensors with ``repeat`` and multiplies them;
this project computes the same sums with ``torch.bmm``. This script times both SALAD forwards
on the same inputs (batch 64, feature maps 23 x 23 x 768 as ViT-B/14 gives at 322 x 322), measures
each one's peak memory in a fresh process (CUDA: max_memory_allocated; CPU: peak RSS growth),
checks the outputs agree, and prints the ratios.

    python -m bench.salad_aggregation [--batch 64] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from bench.common import add_device_flag, check_device, device_name
from models.aggregators.salad import SALAD, sinkhorn_assignment
from models.contract import BackboneOutput


class RepeatSALAD(SALAD):
    """SALAD aggregated the published way: ``[B, l, m, n]`` tensors made with ``repeat``."""

    def aggregate(self, inputs: BackboneOutput) -> torch.Tensor:
        features, token = inputs
        local = self.cluster_features(features).flatten(2)  # [B, l, n]
        assignment = sinkhorn_assignment(self.score(features).flatten(2), self.dust_bin, self.sinkhorn_iters)[:, :-1]
        weights = assignment.unsqueeze(1).repeat(1, self.cluster_dim, 1, 1)  # [B, l, m, n]
        expanded = local.unsqueeze(2).repeat(1, 1, self.num_clusters, 1)  # [B, l, m, n]
        clusters = F.normalize((expanded * weights).sum(dim=-1), p=2, dim=1).flatten(1)
        descriptor = torch.cat((F.normalize(self.token_features(token), p=2, dim=-1), clusters), dim=-1)
        return F.normalize(descriptor, p=2, dim=-1)


VARIANTS = {"bmm": SALAD, "repeat": RepeatSALAD}


def make_inputs(batch: int, device: str, seed: int = 0) -> tuple[SALAD, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(seed)
    weights = SALAD(in_channels=768).eval().state_dict()
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, 768, 23, 23, generator=generator).to(device)
    token = torch.randn(batch, 768, generator=generator).to(device)
    return weights, (features, token)


def build(variant: str, weights: dict, device: str) -> SALAD:
    model = VARIANTS[variant](in_channels=768)
    model.load_state_dict(weights)
    return model.eval().to(device)


def measure(variant: str, batch: int, device: str, repeats: int) -> dict[str, float]:
    """Median seconds per forward and peak memory (MiB) of one variant, in this process."""
    weights, inputs = make_inputs(batch, device)
    model = build(variant, weights, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first run warms up
            start = time.perf_counter()
            model(inputs)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if device == "cuda":
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024  # ru_maxrss is KiB
    return {"seconds": statistics.median(times[1:]), "peak_mib": peak_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    add_device_flag(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_device(parser, args)

    if args.worker:  # one variant in a fresh process, so peak memory is its own
        print(json.dumps(measure(args.worker, args.batch, args.device, args.repeats)))
        return

    results = {}
    for variant in VARIANTS:
        command = [sys.executable, "-m", "bench.salad_aggregation", "--worker", variant,
                   "--batch", str(args.batch), "--device", args.device, "--repeats", str(args.repeats)]
        results[variant] = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)

    weights, inputs = make_inputs(args.batch, args.device)
    with torch.no_grad():
        max_diff = (build("bmm", weights, args.device)(inputs) - build("repeat", weights, args.device)(inputs)).abs().max().item()

    print(f"SALAD forward, batch {args.batch}, features 23x23x768, 64 clusters x 128 + 256, on {device_name(torch.device(args.device))}")
    for variant, result in results.items():
        print(f"  {variant:>6}: {result['seconds'] * 1000:8.1f} ms   peak memory {result['peak_mib']:8.1f} MiB")
    speedup = results["repeat"]["seconds"] / results["bmm"]["seconds"]
    memory_ratio = results["repeat"]["peak_mib"] / max(results["bmm"]["peak_mib"], 1e-3)
    print(f"  bmm is {speedup:.1f}x faster with {memory_ratio:.1f}x lower peak memory; max |bmm - repeat| = {max_diff:.2e}")


if __name__ == "__main__":
    main()
