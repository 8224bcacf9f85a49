"""Inference under CPU bfloat16 autocast keeps the float32 descriptors.

On the parity fixture (ViT-S/14 + SALAD 64 x 128 + 256, weights regenerated from a seed, the two
fixture inputs at 224 and 322 px), the descriptors computed under
``autocast_context(cpu, "bf16")`` must point the same way as the float32 ones: cosine similarity
>= 0.999 for every image. The bound is the acceptance criterion of reduced-precision inference,
not a figure read off this code; do not loosen it.

Also: which CPUs count as running bf16 natively, and eval.py's advice to use bf16 on them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import eval as eval_cli
from models import VPRNet
from tests import parity
from utils.evaluation.inference import autocast_context, cpu_bf16_support

torch.set_num_threads(2)

#: Smallest acceptable cosine similarity between a bf16-autocast and a float32 descriptor.
MIN_COSINE = 0.999
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def parity_model() -> VPRNet:
    return parity.build_parity_model()


@pytest.fixture(scope="module", params=[0, 1], ids=["input0_224px", "input1_322px"])
def fp32_and_bf16_descriptors(request, parity_model: VPRNet) -> tuple[torch.Tensor, torch.Tensor]:
    """``([B, 8448], [B, 8448])``: one fixture input described in float32 and under bf16 autocast."""
    spec = parity.load_config()["inputs"][request.param]
    images = parity.synthesize_input(spec["seed"], spec["shape"])
    with torch.inference_mode():
        fp32 = parity_model(images)
        with autocast_context(CPU, "bf16"):
            bf16 = parity_model(images)
    return fp32, bf16


def test_bf16_descriptors_keep_cosine_with_fp32_per_image(fp32_and_bf16_descriptors):
    fp32, bf16 = fp32_and_bf16_descriptors
    cosine = F.cosine_similarity(fp32.double(), bf16.double(), dim=1)
    assert cosine.shape == (fp32.shape[0],)
    worst = cosine.min().item()
    assert worst >= MIN_COSINE, f"bf16 vs fp32 cosine per image {cosine.tolist()}, need >= {MIN_COSINE}"


def test_bf16_descriptors_are_float32_unit_vectors(fp32_and_bf16_descriptors):
    _, bf16 = fp32_and_bf16_descriptors
    assert bf16.dtype == torch.float32
    assert bf16.shape[1] == 8448
    torch.testing.assert_close(bf16.norm(dim=1), torch.ones(bf16.shape[0]), atol=1e-5, rtol=0)


def test_bf16_autocast_really_runs_in_reduced_precision(fp32_and_bf16_descriptors):
    """Guards the cosine test: a context that silently ran float32 would pass it trivially."""
    fp32, bf16 = fp32_and_bf16_descriptors
    # bfloat16 keeps 8 significant bits; a ViT run in it cannot agree with float32 to 1e-6.
    assert (fp32 - bf16).abs().max().item() > 1e-6


# The published-settings baseline of bench/inference_speed.py runs attention written out as
# softmax(q k^T * scale) v. It is only timed on a GPU, so its equivalence is checked here.


def test_explicit_softmax_attention_matches_sdpa_and_is_undone(parity_model: VPRNet, monkeypatch):
    from bench.inference_speed import explicit_softmax_attention

    spec = parity.load_config()["inputs"][0]
    images = parity.synthesize_input(spec["seed"], spec["shape"])[:1, :, :56, :56]  # 4 x 4 patches: quick
    backbone = parity_model.backbone
    with torch.inference_mode():
        sdpa_features, sdpa_token = backbone(images)
        with explicit_softmax_attention(parity_model) as switched:
            # Inside the block SDPA must not be called at all.
            with monkeypatch.context() as patch:
                patch.setattr(F, "scaled_dot_product_attention", _refuse_sdpa)
                explicit_features, explicit_token = backbone(images)
        after_features, _ = backbone(images)
    assert switched == len(backbone.model.blocks)
    assert all(block.attn.fused_attn for block in backbone.model.blocks)
    torch.testing.assert_close(explicit_features, sdpa_features, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit_token, sdpa_token, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after_features, sdpa_features, atol=0, rtol=0)


def test_explicit_softmax_attention_rejects_a_model_without_timm_attention():
    from bench.inference_speed import explicit_softmax_attention

    with pytest.raises(ValueError, match="no timm Attention"):
        with explicit_softmax_attention(torch.nn.Linear(2, 2)):
            pass


def _refuse_sdpa(*args, **kwargs):
    raise AssertionError("scaled_dot_product_attention called inside explicit_softmax_attention")


CPUINFO_WITH_AMX = "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n"
CPUINFO_AVX2_ONLY = "processor\t: 0\nmodel name\t: Core\nflags\t\t: fpu sse avx2 fma\n"


@pytest.mark.parametrize(("cpuinfo", "expected"), [
    (CPUINFO_WITH_AMX, {"avx512_bf16": True, "amx_bf16": True, "amx_tile": True}),
    (CPUINFO_AVX2_ONLY, {"avx512_bf16": False, "amx_bf16": False, "amx_tile": False}),
])
def test_cpu_bf16_support_reads_the_cpuinfo_flags(tmp_path: Path, cpuinfo: str, expected: dict[str, bool]) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_bf16_support(path) == expected
    assert cpu_bf16_support(tmp_path / "absent") is None


@pytest.mark.parametrize(("cpuinfo", "precision", "device", "hinted"), [
    (CPUINFO_WITH_AMX, "auto", "cpu", True),
    (CPUINFO_WITH_AMX, "fp32", "cpu", False),  # float32 asked for: no advice
    (CPUINFO_WITH_AMX, "auto", "cuda", False),
    (CPUINFO_AVX2_ONLY, "auto", "cpu", False),
])
def test_eval_names_bf16_where_auto_keeps_float32_on_a_bf16_cpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, cpuinfo: str, precision: str, device: str, hinted: bool
) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    with caplog.at_level(logging.INFO, logger="eval"):
        eval_cli.log_cpu_bf16_hint(precision, torch.device(device), path)
    assert ("--precision bf16" in caplog.text) == hinted
    if hinted:
        assert "AVX-512 BF16, AMX-BF16, AMX tiles" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="eval"):
            eval_cli.log_cpu_bf16_hint(precision, torch.device(device), path)
        assert "--precision bf16" not in caplog.text  # once per machine
