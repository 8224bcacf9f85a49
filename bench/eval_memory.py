"""Memory and scaling of an evaluation whose descriptors outgrow memory.

Generates ``--num_db`` database and ``--num_queries`` query images (tiny JPEGs with gmberton
names, so recall is computed) in a temporary folder, and evaluates them with a ResNet-18 +
SALAD of ``--num_clusters`` x ``--cluster_dim`` + ``--token_dim`` dimensions (8448 by default,
as the paper's, from 8 clusters of 1024: SALAD needs more patches than clusters, 16 at 64 px) at ``--image_size`` px, weights from a seed, on the CPU, three ways:

* ``in memory``: the library with no descriptor folder (every descriptor in memory, searched by
  a faiss index that copies the database): the baseline;
* ``streamed, 1 process``: ``eval.py`` (descriptors written to the run folder chunk by chunk,
  searched memory-mapped block by block);
* ``streamed, 2 processes``: ``torchrun --nproc_per_node 2 eval.py``.

Each runs in its own processes; their peak resident anonymous memory (``RssAnon``, summed
over the process tree, sampled every 20 ms: what a memory limit counts; the memory-mapped
descriptor files are page cache, which the kernel evicts under pressure) and its wall time are
reported, with the size of the descriptors and the ratios to the baseline. Runs over
256 database images measure the fixed cost (interpreters, torch, the model) of 1 and of 2
processes; the memory "above fixed" is what the database adds, in the processes together.

    python -m bench.eval_memory                        # 40000 + 500 images, 8448-d: 1.27 GiB of descriptors
    python -m bench.eval_memory --num_db 200 --num_queries 20 --num_clusters 4 --cluster_dim 8 --token_dim 8 --image_size 48
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import cpu_model_name

REPO = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.02
FEW_IMAGES = 256
"""Database images of the run that measures the fixed cost (interpreter, torch, model, loader)."""


def make_images(folder: Path, count: int, seed: int, side: int = 24) -> None:
    """``count`` blocky random JPEGs named ``@<east>@<north>@.jpg`` (2 m apart along a line)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        blocks = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        east = 2.0 * (index if seed == 0 else rng.integers(0, count))
        Image.fromarray(blocks).resize((side, side), Image.Resampling.NEAREST).save(
            folder / f"@{east:012.2f}@0000000.00@{index:07d}@.jpg", quality=90
        )


def tree_anonymous_bytes(root: int) -> int:
    """``RssAnon`` summed over process ``root`` and its descendants (torchrun's ranks included)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def run_measured(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run ``command``; its wall time (s) and the peak anonymous memory of its process tree (bytes)."""
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.wait(SAMPLE_S):
            peak = max(peak, tree_anonymous_bytes(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} failed:\n{stderr[-3000:]}")
    return time.monotonic() - started, peak


def model_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--random_weights", "--backbone", "resnet18", "--backbone_config", '{"layers_to_crop": [4]}',
        "--agg_arch", "SALAD", "--num_clusters", str(args.num_clusters), "--cluster_dim", str(args.cluster_dim),
        "--token_dim", str(args.token_dim), "--image_size", str(args.image_size), "--device", "cpu",
        "--batch_size", str(args.batch_size), "--num_workers", "0",
    ]


def in_memory_child(argv: list[str]) -> None:
    """The baseline: eval.py's evaluation through the library, descriptors in memory."""
    import eval as eval_cli
    from dataloaders.eval_sets import published_registry
    from models.loading import load_network
    from utils.evaluation.pipeline import DescribedModel, Evaluator

    args = eval_cli.build_parser().parse_args(argv)
    registry = published_registry()
    eval_set = registry.load(eval_cli.select_sets(args, registry)[0], None)  # type: ignore[arg-type]
    loaded = load_network(architecture=eval_cli.architecture_from_args(args), random_weights=True, seed=args.seed)
    evaluator = Evaluator(DescribedModel(loaded.network, loaded.architecture.as_dict(), loaded.weights), eval_cli.eval_options(args))
    print(json.dumps(evaluator.evaluate(eval_set).retrieval.recalls))  # type: ignore[union-attr]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_db", type=int, default=40_000)
    parser.add_argument("--num_queries", type=int, default=500)
    parser.add_argument("--num_clusters", type=int, default=8)
    parser.add_argument("--cluster_dim", type=int, default=1024)
    parser.add_argument("--token_dim", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--chunk_size", type=int, default=1024)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    dim = args.num_clusters * args.cluster_dim + args.token_dim
    descriptor_bytes = (args.num_db + args.num_queries) * dim * 4
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="eval_memory_") as temporary:
        work = Path(temporary)
        make_images(work / "database", args.num_db, seed=0)
        make_images(work / "queries", args.num_queries, seed=1)
        data = ["--database_folder", str(work / "database"), "--queries_folder", str(work / "queries"),
                "--log_dir", str(work / "logs"), "--chunk_size", str(args.chunk_size)]
        make_images(work / "few", FEW_IMAGES, seed=0)
        few = ["--database_folder", str(work / "few"), "--queries_folder", str(work / "queries"),
               "--log_dir", str(work / "logs"), "--chunk_size", str(args.chunk_size)]
        one = [sys.executable, "eval.py"]
        two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533", "eval.py"]
        child = [sys.executable, "-m", "bench.eval_memory", "--child"]
        runs = [  # (label, command, which fixed cost it carries)
            ("fixed cost, 1 process", [*one, *model_flags(args), *few], None),
            ("fixed cost, 2 processes", [*two, *model_flags(args), *few], None),
            ("in memory (baseline)", [*child, *model_flags(args), *data], "fixed cost, 1 process"),
            ("streamed, 1 process", [*one, *model_flags(args), *data], "fixed cost, 1 process"),
            ("streamed, 2 processes", [*two, *model_flags(args), *data], "fixed cost, 2 processes"),
        ]
        print(f"{args.num_db} database + {args.num_queries} query images, ResNet-18 + SALAD {dim}-d at "
              f"{args.image_size} px, chunks of {args.chunk_size}: descriptors {descriptor_bytes / 2**20:.0f} MiB "
              f"float32; {cpu_model_name()}, {os.cpu_count()} cores, 1 thread per process")
        print(f"{'run':<28} {'wall s':>7} {'peak anon MiB':>14} {'above fixed':>12} {'vs baseline':>12} "
              f"{'descriptors / above fixed':>26}")
        fixed: dict[str, int] = {}
        baseline: tuple[float, int] | None = None
        for label, command, carries in runs:
            seconds, peak = run_measured(command, env)
            if carries is None:
                fixed[label] = peak
                print(f"{label + f' ({FEW_IMAGES} db images)':<28} {seconds:7.1f} {peak / 2**20:14.0f}")
                continue
            above = max(peak - fixed[carries], 1)
            baseline = baseline or (seconds, above)
            print(f"{label:<28} {seconds:7.1f} {peak / 2**20:14.0f} {above / 2**20:12.0f} {above / baseline[1]:11.2f}x "
                  f"{descriptor_bytes / above:25.1f}x   (time {seconds / baseline[0]:.2f}x)")

if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        in_memory_child(sys.argv[2:])
    else:
        main()
