"""Exact search at scale: float32 against float16 database storage (``utils.evaluation.search``).

SF-XL has 2.8M database images; at SALAD's 8448 dimensions that is ~95 GB in float32. This
benchmark draws a synthetic, clustered database of L2-normalised descriptors (``--num_db``
items in places of ``--images_per_place`` images: each image is its place's centre plus
Gaussian noise, renormalised) and ``--num_queries`` queries (new noisy views of random places),
writes the database as a float32 ``.npy`` in a temporary folder, and searches the memory-mapped
file with each variant: faiss and torch, float32 and float16 storage. All variants run in this
one process, one after the other, on the same data.

The first variant is the exact float32 reference (``--reference``: faiss, or torch when the
float32 database does not fit in memory). Reported per variant:

* time of one ``utils.evaluation.search.search`` call (building the index included);
* peak anonymous memory while it runs, above what the process held before (``RssAnon`` of
  ``/proc/self/status`` sampled every few ms: the faiss index, tensors and temporary arrays; the
  memory-mapped database file is page cache, not counted);
* Recall@1 and Recall@10 against the exact float32 search (the reference), and place Recall@1:
  how often the first result shows the query's own place.

Then an estimate (arithmetic, not a measurement) of the database storage and the search time
for 1M and 2.8M database items.

    python -m bench.search_scale                          # 200k x 8448, 1000 queries (~2.5 min on 2 cores)
    python -m bench.search_scale --num_db 400000          # 13.5 GB file + 13.5 GB faiss float32 index
    python -m bench.search_scale --num_db 1000000 --reference torch-fp32 --variants faiss-fp16 torch-fp16
                                                          # 33.8 GB file, 16.9 GB faiss float16 index
    python -m bench.search_scale --variants faiss-fp16 torch-fp16 --num_db 20000   # quick look

The float32 file takes ``num_db * dim * 4`` bytes of disk (6.8 GB at the default size); it is
deleted at the end unless ``--workdir`` names a folder to keep it in. The faiss float32 variant
holds as much again in memory; ``--reference torch-fp32`` streams it instead.
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from prettytable import PrettyTable
from tqdm import tqdm

from dataloaders.safe_npy import load_npy
from utils.evaluation.search import default_db_chunk, search

log = logging.getLogger(__name__)

PROC_STATUS = Path("/proc/self/status")
GIB = 2**30
#: label -> (backend, storage); the reference (``--reference``, exact) runs first, and every other is
#: scored against it.
VARIANTS: dict[str, tuple[str, str]] = {
    "faiss-fp32": ("faiss", "fp32"),
    "faiss-fp16": ("faiss", "fp16"),
    "torch-fp32": ("torch", "fp32"),
    "torch-fp16": ("torch", "fp16"),
}
EXACT_VARIANTS = ("faiss-fp32", "torch-fp32")
"""Float32 searches usable as the exact reference: faiss holds the whole database in memory,
torch streams the memory-mapped file block by block (for databases whose float32 copy does not
fit, as 1M x 8448 = 31.5 GiB)."""
STORAGE_BYTES = {"fp32": 4, "fp16": 2}
ESTIMATE_SIZES = (1_000_000, 2_800_000)
DATABASE_FILE = "database_fp32.npy"


@dataclass(frozen=True)
class Measurement:
    """One variant's search.

    Attributes:
        label: variant name (a key of ``VARIANTS``).
        seconds: wall time of the search call.
        peak_bytes: peak anonymous memory above the level before the call (None off Linux).
        indices: ``[M, k]`` database indices, best first.
    """

    label: str
    seconds: float
    peak_bytes: int | None
    indices: np.ndarray


def anonymous_memory_bytes(status: Path = PROC_STATUS) -> int | None:
    """This process's resident anonymous memory (``RssAnon``), None where /proc lacks it."""
    try:
        lines = status.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return None


class MemoryPeak:
    """Highest ``anonymous_memory_bytes`` seen while the context is open, sampled every
    ``interval`` seconds by a background thread; ``growth`` is that peak minus the level on entry."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.baseline: int | None = None
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> MemoryPeak:
        self.baseline = self.peak = anonymous_memory_bytes()
        if self.baseline is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
            self._record()

    def _record(self) -> None:
        current = anonymous_memory_bytes()
        if current is not None and self.peak is not None:
            self.peak = max(self.peak, current)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._record()

    @property
    def growth(self) -> int | None:
        if self.peak is None or self.baseline is None:
            return None
        return self.peak - self.baseline


def normalised(vectors: torch.Tensor) -> torch.Tensor:
    """Rows of ``vectors`` [n, D] scaled to unit L2 norm."""
    return vectors / vectors.norm(dim=1, keepdim=True)


def noisy_views(centres: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """One unit-norm view per row of ``centres`` [n, D]: centre + noise * N(0, I / D), renormalised,
    so a view's cosine to its centre is about ``1 / sqrt(1 + noise^2)``."""
    dim = centres.shape[1]
    offsets = torch.randn(centres.shape, generator=generator) * (noise / dim**0.5)
    return normalised(centres + offsets)


def write_clustered_database(
    path: Path,
    num_db: int,
    dim: int,
    images_per_place: int,
    noise: float,
    generator: torch.Generator,
    rows_per_chunk: int,
) -> torch.Tensor:
    """Write ``num_db`` float32 descriptors [num_db, dim] to the ``.npy`` at ``path``, chunk by
    chunk (item ``i`` shows place ``i // images_per_place``).

    Returns:
        ``[num_places, dim]`` unit place centres.
    """
    num_places = -(-num_db // images_per_place)
    centres = normalised(torch.randn(num_places, dim, generator=generator))
    database = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(num_db, dim))
    for start in tqdm(range(0, num_db, rows_per_chunk), desc="write database", unit="chunk"):
        places = torch.arange(start, min(start + rows_per_chunk, num_db)) // images_per_place
        database[start : start + places.numel()] = noisy_views(centres[places], noise, generator).numpy()
    database.flush()
    del database
    return centres


def measure(
    label: str, database: np.ndarray, queries: np.ndarray, k: int, db_chunk: int | None
) -> Measurement:
    """Time one search of ``queries`` [M, D] in ``database`` [N, D] with the variant ``label``."""
    backend, storage = VARIANTS[label]
    gc.collect()
    with MemoryPeak() as memory:
        start = time.perf_counter()
        _, indices = search(database, queries, k, metric="l2", backend=backend, db_chunk=db_chunk, storage=storage)
        seconds = time.perf_counter() - start
    log.info("%s: %.1f s", label, seconds)
    return Measurement(label, seconds, memory.growth, indices)


def recall_against(indices: np.ndarray, reference: np.ndarray, n: int) -> float:
    """Mean fraction of the reference's first ``n`` results among the first ``n`` of ``indices``."""
    found = [np.intersect1d(row[:n], true[:n]).size for row, true in zip(indices, reference)]
    return float(np.mean(found)) / n


def format_gib(num_bytes: float | None) -> str:
    return "n/a" if num_bytes is None else f"{num_bytes / GIB:.2f}"


def stored_database_bytes(label: str, num_db: int, dim: int, db_chunk: int) -> int:
    """Bytes the search itself keeps of the database: the whole index for faiss, one block
    (float32, plus its float16 copy for fp16) for torch, which streams the caller's array."""
    backend, storage = VARIANTS[label]
    if backend == "faiss":
        return num_db * dim * STORAGE_BYTES[storage]
    return min(db_chunk, num_db) * dim * (4 + (2 if storage == "fp16" else 0))


def results_table(
    measurements: list[Measurement],
    query_places: np.ndarray,
    images_per_place: int,
    num_db: int,
    dim: int,
    db_chunk: int,
) -> PrettyTable:
    """Time, memory and recall of each variant (recalls against the first, the exact reference)."""
    reference = measurements[0].indices
    table = PrettyTable(
        ["variant", "time s", "peak GiB", "stored GiB", "R@1 vs exact", "R@10 vs exact", "place R@1"]
    )
    for m in measurements:
        place_recall = float(np.mean(m.indices[:, 0] // images_per_place == query_places))
        table.add_row([
            m.label,
            f"{m.seconds:.1f}",
            format_gib(m.peak_bytes),
            format_gib(stored_database_bytes(m.label, num_db, dim, db_chunk)),
            f"{recall_against(m.indices, reference, 1):.4f}",
            f"{recall_against(m.indices, reference, 10):.4f}",
            f"{place_recall:.4f}",
        ])
    table.align = "r"
    table.align["variant"] = "l"
    return table


def estimate_table(measurements: list[Measurement], num_db: int, dim: int, db_chunk: int) -> PrettyTable:
    """ESTIMATES for larger databases: storage from the arithmetic of ``stored_database_bytes``
    plus the measured overhead beyond it, time scaled linearly with the database size."""
    columns = ["variant"]
    for size in ESTIMATE_SIZES:
        columns += [f"est. peak GiB @ {size / 1e6:g}M", f"est. time s @ {size / 1e6:g}M"]
    table = PrettyTable(columns)
    for m in measurements:
        row = [m.label]
        measured_storage = stored_database_bytes(m.label, num_db, dim, db_chunk)
        overhead = max(0, (m.peak_bytes or 0) - measured_storage)
        for size in ESTIMATE_SIZES:
            row += [
                format_gib(stored_database_bytes(m.label, size, dim, db_chunk) + overhead),
                f"{m.seconds * size / num_db:.0f}",
            ]
        table.add_row(row)
    table.align = "r"
    table.align["variant"] = "l"
    return table


@contextmanager
def database_folder(workdir: Path | None) -> Iterator[Path]:
    """``workdir`` (kept), or a temporary folder deleted on exit."""
    if workdir is not None:
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix="search_scale_") as temporary:
        yield Path(temporary)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_db", type=int, default=200_000, help="database descriptors (default 200000)")
    parser.add_argument("--num_queries", type=int, default=1000, help="query descriptors (default 1000)")
    parser.add_argument("--dim", type=int, default=8448, help="descriptor dimension (default 8448, SALAD's)")
    parser.add_argument("--images_per_place", type=int, default=20, help="database images per place (default 20)")
    parser.add_argument(
        "--noise", type=float, default=0.8,
        help="view noise relative to the unit centre (default 0.8: same-place cosine ~0.6)",
    )
    parser.add_argument("--k", type=int, default=10, help="neighbours per query (default 10, for Recall@10)")
    parser.add_argument("--db_chunk", type=int, help="database rows per block (default: utils.evaluation.search's)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
        help="variants to run (default all; the --reference always runs first)",
    )
    parser.add_argument(
        "--reference", choices=EXACT_VARIANTS, default=EXACT_VARIANTS[0],
        help="exact float32 search the others are scored against (default faiss-fp32; torch-fp32 "
        "streams the file, for databases whose float32 copy does not fit in memory)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss CPU threads (default 2)")
    parser.add_argument(
        "--workdir", type=Path, help="folder to keep the float32 database file in (default: a temporary one)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    args = parser.parse_args(argv)

    for flag in ("num_db", "num_queries", "dim", "images_per_place", "k", "threads"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} {getattr(args, flag)}: expected at least 1")
    if args.db_chunk is not None and args.db_chunk < 1:
        parser.error(f"--db_chunk {args.db_chunk}: expected at least 1")
    if args.k < 10 or args.k > args.num_db:
        parser.error(f"--k {args.k}: expected between 10 (for Recall@10) and --num_db {args.num_db}")
    if args.noise < 0:
        parser.error(f"--noise {args.noise}: expected 0 or more")
    if args.workdir is not None:
        if not args.workdir.is_dir():
            parser.error(f"--workdir {args.workdir}: not an existing folder")
        if (args.workdir / DATABASE_FILE).exists():
            parser.error(f"--workdir {args.workdir}: {DATABASE_FILE} already exists; not overwriting it")
    args.variants = [args.reference] + [label for label in dict.fromkeys(args.variants) if label != args.reference]
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it loaded
    torch.set_num_threads(args.threads)
    if any(VARIANTS[label][0] == "faiss" for label in args.variants):
        import faiss  # imported after --help, which works without it

        faiss.omp_set_num_threads(args.threads)
    db_chunk = args.db_chunk or default_db_chunk(args.dim)
    generator = torch.Generator().manual_seed(args.seed)

    with database_folder(args.workdir) as folder:
        path = folder / DATABASE_FILE
        size_gib = args.num_db * args.dim * 4 / GIB
        log.info("writing %d x %d float32 descriptors (%.1f GiB) to %s", args.num_db, args.dim, size_gib, path)
        centres = write_clustered_database(
            path, args.num_db, args.dim, args.images_per_place, args.noise, generator, db_chunk
        )
        query_places = torch.randint(centres.shape[0], (args.num_queries,), generator=generator)
        queries = noisy_views(centres[query_places], args.noise, generator).numpy()
        del centres
        database = load_npy(path, "benchmark database", mmap_mode="r", allow_objects=False)
        measurements = [measure(label, database, queries, args.k, db_chunk) for label in args.variants]
        del database

    print(
        f"{args.num_db} database x {args.num_queries} queries x {args.dim} dims, k={args.k}, "
        f"{args.threads} threads, database blocks of {db_chunk} rows, memory-mapped float32 file"
    )
    print(results_table(measurements, query_places.numpy(), args.images_per_place, args.num_db, args.dim, db_chunk))
    print("peak: anonymous memory above the level before the call; stored: database copy the search keeps")
    print(
        f"(faiss: the whole index; torch: one block). R@n vs exact: share of the exact float32 top-n "
        f"({args.reference}) found."
    )
    print("ESTIMATES, not measurements: stored bytes by arithmetic plus the measured overhead; time x size/num_db:")
    print(estimate_table(measurements, args.num_db, args.dim, db_chunk))


if __name__ == "__main__":
    main()
