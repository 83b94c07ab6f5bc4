"""Numeric precision of a cell: ``fp32``, ``tf32`` (fp32 weights, TF32 matrix multiplies on GPUs that have them),
``bf16`` or ``fp16`` (autocast mixed precision over fp32 weights; fp16 training on CUDA with a gradient scaler)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """How a cell computes; ``name`` is recorded in every record and compared by the gate."""

    name: str
    device: str

    @property
    def description(self) -> str:
        """What this precision means on this device, in words for the report."""
        return {"fp32": "fp32 weights and matrix multiplies",
                "tf32": "fp32 weights, TF32 matrix multiplies (torch float32_matmul_precision 'high'; CUDA "
                        "matmul and cuDNN allow_tf32)",
                "bf16": "fp32 weights, bf16 autocast", "fp16": "fp32 weights, fp16 autocast"}[self.name] + \
            ("" if self.device.startswith("cuda") or self.name in ("fp32", "bf16", "fp16") else
             " (no TF32 units on the CPU: runs as fp32)")

    @contextlib.contextmanager
    def matmul(self) -> Iterator[None]:
        """For the whole cell: TF32 on or off as asked, restored afterwards."""
        saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
                 torch.backends.cudnn.allow_tf32)
        tf32 = self.name == "tf32"
        torch.set_float32_matmul_precision("high" if tf32 else "highest")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            yield
        finally:
            torch.set_float32_matmul_precision(saved[0])
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Around forward passes (training, generation, evaluation): autocast for bf16/fp16, else nothing."""
        dtype = _AUTOCAST.get(self.name)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu", dtype=dtype)

    def scaler(self) -> Any:
        """A gradient scaler for fp16 training on CUDA (fp16 gradients underflow without one), else None."""
        if self.name == "fp16" and self.device.startswith("cuda"):
            return torch.amp.GradScaler("cuda")
        return None


FP32 = Precision("fp32", "cpu")
