"""Real regressions for testing the gate: variants of the built-in families whose forward does real extra work.

Used as a head environment's ``conftest.py`` (``benchmarks/ab_replay.py`` copies it there; the acceptance tests do
too). It registers ``led`` and ``bigbird`` under their own names, so the cells keep their ids, with a forward hook on
every encoder and decoder layer that does extra work, chosen by ``LONGEFF_REGRESSION``:

* ``matmul:P``: per layer, an extra product of the first P % of the layer's output rows with the whole output
  (a ``P % of L x L`` block of the ``L x L`` matrix a mask expanded per layer would materialise), added back at zero
  weight so autograd runs its backward too: a slowdown the clock sees (``benchmarks/ab_replay.py`` sizes P to about
  10 % and 20 % of a training step; P=100 is the whole ``L x L`` product, about +47 % here);
* ``copy:N``: N extra copies of the layer's output (work a clock cannot resolve, but the work counters see);
* unset or ``none``: the built-in families unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from pytest_longeff.models.families import BUILTIN_FAMILIES


def _spec() -> tuple[str, int]:
    text = os.environ.get("LONGEFF_REGRESSION", "none")
    kind, _, n = text.partition(":")
    if kind == "none":
        return "none", 0
    if kind not in ("matmul", "copy") or not n.isdigit():
        raise ValueError(f"LONGEFF_REGRESSION: expected matmul:P (P a percentage), copy:N or none, got {text!r}")
    return kind, int(n)


def _layers(model: Any) -> list[torch.nn.Module]:
    """Every encoder and decoder layer of a seq2seq model (T5-style stacks call them ``block``), or every layer of a
    decoder-only family's causal LM."""
    if hasattr(model, "causal_lm"):
        return list(model.causal_lm.model.layers)
    inner = model.get_encoder(), model.get_decoder()
    return [layer for stack in inner for layer in getattr(stack, "layers", None) or stack.block]


def _hook(kind: str, n: int) -> Any:
    def hook(module: torch.nn.Module, args: Any, output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        extra = torch.zeros((), dtype=hidden.dtype, device=hidden.device)
        if kind == "matmul":
            rows = max(1, round(hidden.shape[-2] * n / 100))
            extra = extra + (hidden[..., :rows, :] @ hidden.transpose(-1, -2)).mean()
        else:
            for _ in range(n):
                extra = extra + hidden.clone().mean()
        hidden = hidden + 0 * extra
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


class _Slower:
    """A family that builds its models as ``family`` does, with the extra work hooked onto every layer; everything
    else is the family's own."""

    def __init__(self, family: Any, kind: str, n: int) -> None:
        self._family, self._kind, self._n = family, kind, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._family, name)

    def build(self, size: str, weights: str, vocab_size: int, max_len: int, model_dir: str | None) -> Any:
        model = self._family.build(size, weights, vocab_size, max_len, model_dir)
        for layer in _layers(model):
            layer.register_forward_hook(_hook(self._kind, self._n))
        return model


def _slower(family: Any, kind: str, n: int) -> Any:
    return _Slower(family, kind, n)


def pytest_longeff_families() -> list[Any]:
    """The built-in families, with the extra work ``LONGEFF_REGRESSION`` asks for."""
    kind, n = _spec()
    if kind == "none" or n == 0:
        return []
    return [_slower(f, kind, n) for f in BUILTIN_FAMILIES]
