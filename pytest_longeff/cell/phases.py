"""Prefill and decode, measured apart.

Generation has two halves with different costs. **Prefill** is everything up to the first new token's logits: for a
decoder-only model the prompt's forward, which fills the KV cache; for an encoder-decoder the encoder pass and the
first decoder step, which projects the encoder's output into every layer's cross-attention cache (the decoder-side
analogue of filling the KV cache, and like it, proportional to the input). Prefill is compute-bound and grows with
the input. **Decode** is every later token, one forward each over the cache: memory-bound, a step's cost growing
with the cache.

* Prefill is timed in a window of its own (``prefill``): the validation examples in the inference window's batches,
  as many passes, each batch one latency sample; its energy is the window's.
* Decode is timed inside the inference window's fixed-length generation by a clock that stamps each new token as
  its logits are ready (a ``LogitsProcessor``: ``perf_counter`` on the CPU, CUDA events on a GPU, so the window gets
  no extra synchronisation): time to first token, the inter-token latencies, and the decode time from the first
  token to the end of each batch.
* The KV cache is measured on one untimed prefill: the bytes its tensors hold per input token, beside the formula
  ``2 x layers x key-value heads x head dim x bytes per element`` from the model's config.
* A check ties the halves to the whole: the prefill window's batch times plus the decode times, against the
  generation's own batch times, as a ratio (1.0: the halves add up to the whole).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from pytest_longeff.cell.precision import FP32, Precision
from pytest_longeff.cell.train import batch_tensors
from pytest_longeff.measure.window import synchronize

if TYPE_CHECKING:
    from pytest_longeff.cell.prepare import TokenizedSplit
    from pytest_longeff.models.families import BuiltModel

PREFILL_WHAT = ("everything up to the first new token's logits: the prompt's forward for a decoder-only model; the "
                "encoder pass and the first decoder step (which fills the cross-attention cache) for an "
                "encoder-decoder")
DECODE_WHAT = ("every new token after the first, one forward each over the cache, stamped inside the inference "
               "window's generation as each token's logits are ready")
KV_FORMULA = "2 x layers x key-value heads x head dim x bytes per element"


class TokenClock:
    """A ``transformers`` logits processor that stamps the time each new token's logits are ready and changes
    nothing. On the CPU a stamp is ``perf_counter`` (the logits are ready when the processor runs); on a GPU it is a
    CUDA event recorded on the stream, read after generation ends, so the clock adds no synchronisation to the
    inference window it runs in."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.cuda = device.startswith("cuda")
        self._stamps: list[Any] = []
        self._start: Any = None

    def start(self) -> None:
        """Mark the start of ``generate()`` (call right before it)."""
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._stamps.append(event)
        else:
            self._stamps.append(time.perf_counter())
        return scores

    def stamps(self, t0: float) -> list[float]:
        """Each token's time on the ``perf_counter`` clock, ``t0`` being when :meth:`start` was called (read after
        the device was synchronised)."""
        if not self.cuda:
            return list(self._stamps)
        return [t0 + self._start.elapsed_time(event) / 1000.0 for event in self._stamps]


def clock(device: str) -> tuple[TokenClock, Any]:
    """A fresh clock and the ``logits_processor`` argument that carries it into ``generate``."""
    from transformers import LogitsProcessorList

    c = TokenClock(device)
    return c, LogitsProcessorList([c])


@dataclass
class Timeline:
    """One generated batch: when it started, when each new token was ready, when it ended; its rows."""

    start: float
    stamps: list[float]
    end: float
    rows: int

    @property
    def ttft_s(self) -> float | None:
        return self.stamps[0] - self.start if self.stamps else None

    @property
    def inter_token_s(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]

    @property
    def decode_s(self) -> float | None:
        """From the first token to the batch's end: every later token's step."""
        return self.end - self.stamps[0] if self.stamps else None


def prefill_call(built: BuiltModel, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """One prefill: the output whose cache generation continues from (see the module's docstring)."""
    model = built.model
    prefill = getattr(model, "prefill", None)
    if prefill is not None:  # a decoder-only family's wrapper
        return prefill(ids, mask)
    config = model.generation_config
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = model.config.decoder_start_token_id
    decoder_ids = torch.full((ids.shape[0], 1), int(start), dtype=ids.dtype, device=ids.device)
    out = model(**built.family.model_inputs(ids, mask), decoder_input_ids=decoder_ids, use_cache=True)
    return out.cache


@dataclass
class PrefillResult:
    batch_latencies_s: list[float] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    input_tokens: int = 0


@torch.no_grad()
def run_prefill(built: BuiltModel, split: TokenizedSplit, batch_size: int, repeats: int, device: str,
                precision: Precision = FP32) -> PrefillResult:
    """The prefill of every validation example in batches of ``batch_size``, ``repeats`` times, each batch timed
    between device synchronisations."""
    built.model.eval()
    result = PrefillResult()
    for _ in range(repeats):
        for start in range(0, len(split.ids), batch_size):
            index = list(range(start, min(start + batch_size, len(split.ids))))
            ids, mask, _ = batch_tensors(split, index, device)
            t0 = time.perf_counter()
            with precision.autocast():
                cache = prefill_call(built, ids, mask)
            synchronize(device)
            result.batch_latencies_s.append(time.perf_counter() - t0)
            result.batch_rows.append(len(index))
            result.input_tokens += int(mask.sum())
            del cache
    return result


def _tensors(cache: Any) -> list[torch.Tensor]:
    """The key and value tensors a cache holds (DynamicCache-like: ``layers`` with ``keys`` and ``values``)."""
    return [t for layer in getattr(cache, "layers", []) for t in (getattr(layer, "keys", None),
                                                                   getattr(layer, "values", None))
            if isinstance(t, torch.Tensor)]


def kv_geometry(config: Any, cross: bool) -> tuple[int, int, int]:
    """(layers, key-value heads, head dim) of the cache the model keeps per input token, from its config: the
    decoder's layers and heads (its cross-attention for an encoder-decoder)."""
    def first(*names: str) -> int | None:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    if cross:
        layers = first("decoder_layers", "num_decoder_layers", "num_layers")
        heads = first("decoder_attention_heads", "num_heads")
        head_dim = first("d_kv") or (first("d_model") or 0) // (heads or 1)
    else:
        layers = first("num_hidden_layers")
        heads = first("num_key_value_heads", "num_attention_heads")
        head_dim = first("head_dim") or (first("hidden_size") or 0) // (first("num_attention_heads") or 1)
    if not layers or not heads or not head_dim:
        raise ValueError("the model's config does not name its layers, key-value heads and head size")
    return layers, heads, head_dim


@torch.no_grad()
def measure_kv_cache(built: BuiltModel, split: TokenizedSplit, device: str,
                     precision: Precision = FP32) -> dict[str, Any]:
    """The KV cache one untimed prefill of the first validation example leaves: bytes per input token, measured
    from the cache's tensors, beside :data:`KV_FORMULA` from the config."""
    built.model.eval()
    ids, mask, _ = batch_tensors(split, [0], device)
    with precision.autocast():
        cache = prefill_call(built, ids, mask)
    cross = hasattr(cache, "cross_attention_cache")
    tensors = _tensors(cache.cross_attention_cache if cross else cache)
    if not tensors:
        return {"bytes_per_token": None, "note": f"the cache ({type(cache).__name__}) holds no key/value tensors "
                                                 "this suite can read"}
    measured = sum(int(t.numel()) * int(t.element_size()) for t in tensors) / ids.shape[1]
    layers, heads, head_dim = kv_geometry(built.model.config, cross)
    element = int(tensors[0].element_size())
    formula = 2 * layers * heads * head_dim * element
    return {"bytes_per_token": measured, "formula_bytes_per_token": formula, "ratio": measured / formula,
            "formula": f"{KV_FORMULA} = 2 x {layers} x {heads} x {head_dim} x {element}",
            "kind": ("cross-attention cache of the decoder (per encoder token)" if cross
                     else "self-attention cache (per prompt token)"),
            "tokens": int(ids.shape[1]), "dtype": str(tensors[0].dtype).removeprefix("torch.")}


def _p(values: list[float], q: float) -> float | None:
    from pytest_longeff.stats import percentile

    return percentile(values, q) if values else None


def phases_section(prefill: PrefillResult, prefill_time_s: float, prefill_energy: dict[str, Any],
                   prefill_peak: int | None, timelines: list[Timeline], generation_latencies_s: list[float],
                   kv_cache: dict[str, Any]) -> dict[str, Any]:
    """The record's ``phases`` section from what was measured."""
    ttft = [t.ttft_s for t in timelines if t.ttft_s is not None]
    itl = [x for t in timelines for x in t.inter_token_s]
    decode_s = [t.decode_s for t in timelines if t.decode_s is not None]
    decode_tokens = sum(t.rows * max(0, len(t.stamps) - 1) for t in timelines)
    prefill_total = sum(prefill.batch_latencies_s)
    per_token_j = None
    energy_j = prefill_energy.get("energy_j")
    if isinstance(energy_j, (int, float)) and prefill.input_tokens:
        per_token_j = energy_j / prefill.input_tokens
    whole = sum(generation_latencies_s)
    halves = prefill_total + sum(decode_s)
    pairs = paired_ratios(prefill, timelines, generation_latencies_s)
    return {
        "prefill": {"what": PREFILL_WHAT, "time_s": prefill_time_s, "batches": len(prefill.batch_latencies_s),
                    "latency_s": {"p50": _p(prefill.batch_latencies_s, 50), "p90": _p(prefill.batch_latencies_s, 90),
                                  "note": "per batch"},
                    "input_tokens": prefill.input_tokens,
                    "tokens_per_s": prefill.input_tokens / prefill_total if prefill_total > 0 else None,
                    **prefill_energy, "j_per_token": per_token_j, "peak_memory_bytes": prefill_peak},
        "decode": {"what": DECODE_WHAT,
                   "ttft_s": {"p50": _p(ttft, 50), "p90": _p(ttft, 90), "note": "per batch, inside generate()"},
                   "inter_token_latency_s": {"p50": _p(itl, 50), "p90": _p(itl, 90), "samples": len(itl)},
                   "tokens": decode_tokens, "time_s": sum(decode_s),
                   "tokens_per_s": decode_tokens / sum(decode_s) if sum(decode_s) > 0 else None},
        "kv_cache": kv_cache,
        "check": {"prefill_plus_decode_s": halves, "generation_s": whole,
                  "ratio": halves / whole if whole > 0 else None,
                  # What generate() does besides the two halves (input checks, cache and mask set-up, before its
                  # first forward): the median time to first token less the median prefill batch.
                  "ttft_minus_prefill_s": (_p(ttft, 50) - _p(prefill.batch_latencies_s, 50)  # type: ignore[operator]
                                           if ttft and prefill.batch_latencies_s else None),
                  "pairs": {"n": len(pairs), "median": _p(pairs, 50), "min": min(pairs, default=None),
                            "max": max(pairs, default=None),
                            "note": ("the same ratio batch by batch (a batch's prefill and its decode over its "
                                     "generate() time); with three batches or more the median resists one call "
                                     "slowed by another process" if pairs else
                                     "no pairs: the prefill and generated batches do not line up, or no batch "
                                     "stamped a token")},
                  "note": "the prefill window's batch times plus the decode times, over the inference window's "
                          "generate() batch times (same batches, same passes); the repository's "
                          "benchmarks/phase_checks.py --interleaved measures the halves and the whole in "
                          "interleaved pairs"},
    }


def paired_ratios(prefill: PrefillResult, timelines: list[Timeline], generation_s: list[float]) -> list[float]:
    """Batch by batch, (prefill + decode) / generate(): the prefill window and the inference window run the same
    batches in the same order and passes, so the i-th prefill is the i-th generation's. Empty when they do not
    line up (another count, or other rows in a batch); a batch with no token stamped or no time is left out."""
    if len(prefill.batch_latencies_s) != len(generation_s) or prefill.batch_rows != [t.rows for t in timelines]:
        return []
    return [(p + t.decode_s) / g for p, t, g in zip(prefill.batch_latencies_s, timelines, generation_s, strict=True)
            if t.decode_s is not None and g > 0]
