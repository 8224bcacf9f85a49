"""The toy demo (`make demo`): the whole pipeline on the procedural toy world, on a CPU.

1. generate the toy world under ``data/toy`` (reused when it is already there);
2. train SALAD on a ResNet-18 with ``main.py --config configs/toy.yaml``;
3. evaluate the trained checkpoint and the same architecture at its initial (untrained)
   weights with ``eval.py`` on the toy evaluation sets;
4. print ``toy R@1: untrained=<percent> trained=<percent>`` (mean Recall@1 over the sets).

Every run writes to a new folder under ``logs/demo/``.

    python -m tools.demo [--data data/toy] [--config configs/toy.yaml] [--max_epochs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import yaml

from utils.evaluation.results import new_run_dir

REPO = Path(__file__).resolve().parents[1]
EVAL_SETS = ["msls_val", "pitts30k_test", "nordland", "sped"]
log = logging.getLogger("demo")


def run(command: list[str]) -> None:
    """Run a step of the pipeline, streaming its output; stop the demo if it fails."""
    log.info("$ %s", " ".join(command))
    completed = subprocess.run(command, cwd=REPO)
    if completed.returncode != 0:
        raise SystemExit(f"demo: step failed with exit code {completed.returncode}: {' '.join(command)}")


def ensure_toy_world(root: Path, seed: int) -> None:
    if (root / "toy_world.json").is_file():
        log.info("reusing the toy world in %s", root)
        return
    run([sys.executable, "-m", "tools.make_toy_world", "--out", str(root), "--seed", str(seed)])


def toy_world_cities(root: Path) -> list[str]:
    """The GSV-Cities cities a generated toy world holds (from its ``toy_world.json``)."""
    return list(json.loads((root / "toy_world.json").read_text())["gsv_cities"])


def training_image_size(config: Path) -> tuple[int, int]:
    """The ``data.image_size`` of a main.py configuration: the demo evaluates at the training size."""
    height, width = yaml.safe_load(config.read_text())["data"]["image_size"]
    return int(height), int(width)


def mean_recall_at_1(results_dir: Path) -> tuple[float, dict[str, float]]:
    """Mean Recall@1 over the sets of the one ``results.json`` under ``results_dir``."""
    files = sorted(results_dir.rglob("results.json"))
    if len(files) != 1:
        raise SystemExit(f"demo: expected one results.json under {results_dir}, found {len(files)}")
    results = json.loads(files[0].read_text())
    per_set = {name: float(entry["recall@k"]["1"]) for name, entry in results.items()}
    return sum(per_set.values()) / len(per_set), per_set


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/toy"), help="toy world folder (generated if absent)")
    parser.add_argument("--seed", type=int, default=0, help="toy world seed")
    parser.add_argument("--config", type=Path, default=Path("configs/toy.yaml"), help="main.py configuration")
    parser.add_argument("--max_epochs", type=int, default=None, help="override the config's epochs")
    parser.add_argument("--log_dir", type=Path, default=Path("logs/demo"), help="parent of the demo's run folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()

    ensure_toy_world(args.data, args.seed)
    run_dir = new_run_dir(args.log_dir, "demo")
    log.info("demo run folder: %s", run_dir)

    train = [sys.executable, "main.py", "--config", str(args.config),
             "--trainer.default_root_dir", str(run_dir / "train"),
             "--data.data_root", str(args.data / "gsv-cities"), "--data.data_dir", str(args.data),
             "--data.cities", json.dumps(toy_world_cities(args.data))]
    if args.max_epochs is not None:
        train += ["--trainer.max_epochs", str(args.max_epochs)]
    run(train)
    checkpoints = sorted((run_dir / "train").rglob("last.ckpt"))
    if not checkpoints:
        raise SystemExit(f"demo: training wrote no last.ckpt under {run_dir / 'train'}")
    checkpoint = checkpoints[-1]

    height, width = training_image_size(args.config)
    evaluate = [sys.executable, "eval.py", "--ckpt_path", str(checkpoint), "--data_dir", str(args.data),
                "--val_datasets", *EVAL_SETS, "--image_size", str(height), str(width), "--batch_size", "64",
                "--device", "cpu", "--num_workers", "2"]
    run([*evaluate, "--random_weights", "--seed", "1", "--log_dir", str(run_dir / "eval_untrained")])
    run([*evaluate, "--log_dir", str(run_dir / "eval_trained")])

    untrained, untrained_sets = mean_recall_at_1(run_dir / "eval_untrained")
    trained, trained_sets = mean_recall_at_1(run_dir / "eval_trained")
    for name in trained_sets:
        log.info("  %-14s R@1 untrained %5.1f  trained %5.1f", name, untrained_sets[name], trained_sets[name])
    log.info("demo finished in %.0f s; outputs in %s", time.perf_counter() - start, run_dir)
    print(f"toy R@1: untrained={untrained:.1f} trained={trained:.1f}")


if __name__ == "__main__":
    main()
