"""Fixtures shared by several test modules."""

from __future__ import annotations

from typing import Any

import pytest
import torch


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``torch.compile`` is called on during the test (the real ``torch.compile`` still runs)."""
    calls: list[Any] = []
    real_compile = torch.compile

    def recording_compile(model: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(model)
        return real_compile(model, *args, **kwargs)

    monkeypatch.setattr(torch, "compile", recording_compile)
    return calls
