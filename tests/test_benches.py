"""Smoke tests of the throughput benches: their CPU paths run end to end and print complete tables.

Each bench runs in a subprocess at the smallest settings it accepts (ViT-S/14, 126 px: 9 x 9
patches, the fewest above SALAD's 64 clusters). The tests check the table's rows and ratios, never
the timings. (The GPU-decoding path is ``dataloaders.device_decode``, tested on the CPU in
``tests/test_device_decode.py``.)
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import eval_throughput, inference_speed, train_throughput

torch.set_num_threads(2)

REPO_ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


def run_bench(module: str, *flags: str) -> str:
    """stdout of ``python -m <module> <flags>`` run from the repository root (fails on a non-zero exit)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", module, *flags], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


def row(output: str, label: str) -> list[str]:
    """The whitespace-separated fields of the table row that starts with ``label``."""
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] == label:
            return fields
    raise AssertionError(f"no row {label!r} in:\n{output}")


def test_eval_throughput_prints_both_variants_and_ratios() -> None:
    output = run_bench(
        "bench.eval_throughput", "--device", "cpu", "--backbone", "dinov2_vits14", "--image_size", "126", "126",
        "--batch", "2", "--num_images", "4", "--num_workers", "0", "--iters", "1", "--threads", "1",
    )
    assert "4 JPEGs 640x480 -> 126x126, batch 2, 0 workers" in output
    for label, settings in (("baseline", "fp32, explicit softmax attention, repeat, PIL full-size decode"),
                            ("ours", "bf16, SDPA, bmm, PIL draft mode")):
        fields = row(output, label)
        end_to_end, model_only, fraction = float(fields[1]), float(fields[2]), fields[3]
        assert end_to_end > 0 and model_only > 0
        # the printed ratio is of the figures (printed rounded, so recomputing may be one percent off)
        assert abs(int(fraction.rstrip("%")) - 100 * end_to_end / model_only) <= 1
        assert settings in " ".join(fields[4:])
    ratios = re.search(rf"ours vs baseline: {NUMBER}x end-to-end, {NUMBER}x model-only images/s; descriptor cosine min {NUMBER}", output)
    assert ratios is not None, output
    assert float(ratios.group(1)) > 0 and float(ratios.group(2)) > 0
    # Same weights, the same files (draft mode changes the decoded pixels a little), bf16: the same descriptors.
    assert float(ratios.group(3)) > 0.99
    assert "target on an H100: ours end-to-end >= 80% of model-only" in output


def test_train_throughput_prints_both_variants_and_ratios() -> None:
    output = run_bench(
        "bench.train_throughput", "--device", "cpu", "--backbone", "dinov2_vits14", "--places", "2", "--per_place", "2",
        "--image_size", "126", "--warmup", "0", "--iters", "1", "--threads", "1",
    )
    assert "training step on 2 places x 2 images at 126x126" in output
    for label, settings in (("baseline", "fp32, explicit softmax attention, repeat"), ("ours", "bf16, SDPA, bmm")):
        fields = row(output, label)
        ms_per_step, images_per_second, peak_mib, loss, skipped = map(float, fields[1:6])
        assert images_per_second == pytest.approx(4 / (ms_per_step / 1000), rel=0.01)  # 2 x 2 images per step
        assert peak_mib > 0  # the model, its gradients and AdamW state were allocated in the worker
        assert math.isfinite(loss) and loss > 0
        assert skipped == 0  # no GradScaler on the CPU
        assert settings in " ".join(fields[6:])
    ratios = re.search(rf"ours vs baseline: {NUMBER}x images/s, peak memory {NUMBER}x of baseline", output)
    assert ratios is not None, output
    assert "peak MiB (RSS growth)" in output


@pytest.mark.parametrize(
    ("parse_args", "flags", "message"),
    [
        (eval_throughput.parse_args, ["--device", "cpu", "--gpu_decode"], "--gpu_decode needs --device cuda"),
        (eval_throughput.parse_args, ["--device", "cpu", "--image_size", "100", "126"], "--image_size 100 126"),
        (train_throughput.parse_args, ["--device", "cpu", "--image_size", "100"], "--image_size 100"),
        (train_throughput.parse_args, ["--device", "cpu", "--places", "1"], "--places 1"),
        (train_throughput.parse_args, ["--device", "cpu", "--compile", "--warmup", "0"], "--compile needs --warmup >= 1"),
        (inference_speed.parse_args, ["--device", "cpu", "--compile", "--warmup", "0"], "--compile needs --warmup >= 1"),
        (inference_speed.parse_args, ["--device", "cpu", "--threads", "0"], "--threads 0: expected at least 1"),
    ],
)
def test_bad_flags_are_named(parse_args, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(flags)
    assert message in capsys.readouterr().err


def test_search_scale_streams_a_torch_reference_without_faiss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--reference torch-fp32`` (for databases whose float32 copy does not fit in memory) needs no faiss."""
    from bench import search_scale

    monkeypatch.setitem(sys.modules, "faiss", None)  # any `import faiss` now raises ImportError
    search_scale.main([
        "--num_db", "600", "--num_queries", "20", "--dim", "32", "--images_per_place", "3", "--noise", "0.3",
        "--reference", "torch-fp32", "--variants", "torch-fp16", "--workdir", str(tmp_path), "--threads", "1",
    ])
    output = capsys.readouterr().out
    results = output.split("ESTIMATES")[0]
    rows = [[field.strip() for field in line.split("|")[1:-1]] for line in results.splitlines() if line.startswith("| torch-")]
    assert [fields[0] for fields in rows] == ["torch-fp32", "torch-fp16"]  # the reference first
    assert "share of the exact float32 top-n (torch-fp32) found" in output
    columns = ["variant", "time s", "peak GiB", "stored GiB", "R@1 vs exact", "R@10 vs exact", "place R@1"]
    reference, rounded = (dict(zip(columns, fields)) for fields in rows)
    assert reference["R@1 vs exact"] == reference["R@10 vs exact"] == "1.0000"
    assert float(rounded["R@10 vs exact"]) > 0.9  # float16 rounding swaps a few near ties at most
    assert float(rounded["place R@1"]) > 0.9  # low noise: the first result shows the query's place


def test_compile_flag_adds_a_compiled_twin_measured_against_eager() -> None:
    from bench.inference_speed import compiled_vs_eager, suite_variants

    for variants in (suite_variants("published", False, True), train_throughput.train_variants(torch.device("cpu"), False, True)):
        eager, compiled = variants[-2], variants[-1]
        assert compiled.label == f"{eager.label}-comp" and compiled.compile and not eager.compile
        assert not any(v.compile for v in variants[:-1])  # the baseline and ours stay eager
        seconds = [3.0] * (len(variants) - 2) + [2.0, 0.5]
        assert compiled_vs_eager(variants, seconds) == [f"  {compiled.label} vs {eager.label}: 4.00x images/s (torch.compile)"]
    assert not any(v.compile for v in suite_variants("precision", True, False))


def test_native_batching_prints_both_variants_and_matching_descriptors() -> None:
    output = run_bench(
        "bench.native_batching", "--device", "cpu", "--num_images", "4", "--batch", "2", "--portrait_every", "2",
        "--precision", "fp32", "--threads", "1",
    )
    one, by_size = row(output, "one-by-one"), row(output, "by-size")
    assert float(one[2]) == pytest.approx(4 / float(one[1]), rel=0.02)
    assert float(by_size[2]) == pytest.approx(4 / float(by_size[1]), rel=0.02)
    assert re.search(rf"by-size vs one-by-one: {NUMBER}x images/s", output) is not None
    difference = re.search(r"largest descriptor difference: ([0-9.e+-]+)", output)
    assert difference is not None and float(difference.group(1)) < 1e-5  # the same descriptors, batched


def test_salad_aggregation_times_both_formulations_and_they_agree() -> None:
    output = run_bench("bench.salad_aggregation", "--device", "cpu", "--batch", "2", "--repeats", "2")
    assert re.search(rf"^\s+bmm: +{NUMBER} ms +peak memory +{NUMBER} MiB$", output, re.MULTILINE) is not None
    assert re.search(rf"^\s+repeat: +{NUMBER} ms +peak memory +{NUMBER} MiB$", output, re.MULTILINE) is not None
    difference = re.search(r"max \|bmm - repeat\| = ([0-9.e+-]+)", output)
    assert difference is not None and float(difference.group(1)) < 1e-5  # one function, two formulations


def test_draft_decoding_bench_times_both_decodings_and_compares_descriptors() -> None:
    output = run_bench("bench.draft_decoding", "--backbone", "dinov2_vits14", "--side", "300", "--image_size", "126",
                       "--repeats", "1", "--threads", "1")  # 9 x 9 patches: more than SALAD's 64 clusters
    assert "300 x 300 JPEG -> 126 x 126, dinov2_vits14 + SALAD" in output
    timing = re.search(rf"full {NUMBER} ms, draft {NUMBER} ms \(({NUMBER})x\)", output)
    assert timing is not None, output
    cosine = re.search(rf"descriptor: cosine {NUMBER}, max abs difference \d\.\d\de[-+]\d\d", output)
    assert cosine is not None and 0.9 < float(cosine.group(1)) < 1.0  # decoded at 150 x 150 first: pixels move
