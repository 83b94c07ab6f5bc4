"""SDPA against eager attention on the tiny decoder-only model: the same greedy outputs, and prefill time in pairs.

    .venv/bin/python benchmarks/attention_impls.py [--lengths 1024,2048,4096,8192,16384] [--pairs 7]

1. Outputs: the shipped tiny ``llama`` base checkpoint (random init with ``--random``) built twice, with
   ``attn_implementation`` eager and sdpa and the same weights; greedy generation (KV cache, 16 new tokens) on the
   validation prompts of the needle task at 1024 and 4096 tokens must give identical tokens.
2. Prefill time: one prompt's forward (batch 1, the KV cache kept, as generation's prefill) at each length, eager and
   sdpa measured in pairs, interleaved, the order alternating from pair to pair; printed: each side's median, the
   median of the per-pair ratios eager/sdpa, and in how many pairs sdpa was faster.

Eager attention materialises a layer's heads x L x L score matrix (4 bytes each) and its softmax, beside an L x L
causal mask: at 16384 tokens and 4 heads about 9 GiB, at 32768 about 36 GiB. A length whose matrices need more than
three quarters of the memory free is not attempted for eager (and said so); SDPA's fused causal kernel does not
build them. The process's peak resident set is printed at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pytest_longeff.data.ruler import ruler_example  # noqa: E402
from pytest_longeff.data.tokenizer import lexicon_tokenizer  # noqa: E402
from pytest_longeff.models.families import build_model  # noqa: E402
from pytest_longeff.models.recent import LLAMA  # noqa: E402


def _models(random_init: bool) -> tuple[torch.nn.Module, torch.nn.Module, str]:
    vocab = len(lexicon_tokenizer())
    eager = build_model(LLAMA, "base", "tiny", vocab, 32768, None, seed=0, tiny_pretrained=not random_init,
                        attn="eager")
    sdpa = build_model(LLAMA, "base", "tiny", vocab, 32768, None, seed=0, tiny_pretrained=not random_init,
                       attn="sdpa")
    sdpa.model.load_state_dict(eager.model.state_dict())
    return eager.model.eval(), sdpa.model.eval(), eager.label


def _free_bytes() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="1024,2048,4096,8192,16384", help="prefill lengths in tokens")
    ap.add_argument("--pairs", type=int, default=7, help="eager/sdpa pairs per length (default 7)")
    ap.add_argument("--random", action="store_true", help="random init instead of the shipped checkpoint")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    eager, sdpa, label = _models(args.random)
    tok = lexicon_tokenizer()
    print(f"model: {label}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")

    same = total = 0
    for length in (1024, 4096):
        rng = random.Random(f"attention-{length}")
        prompts = [ruler_example("niah_single", rng, length)[0] for _ in range(4)]
        enc = tok(prompts, return_tensors="pt")
        kwargs = {"max_new_tokens": 16, "min_new_tokens": 16, "do_sample": False}
        a = eager.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
        b = sdpa.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
        same += int((a == b).all(dim=1).sum())
        total += a.shape[0]
    print(f"greedy outputs (16 new tokens, 4 needle prompts at 1024 and 4096 tokens): {same} of {total} identical "
          f"between eager and sdpa")

    print(f"prefill (batch 1, KV cache kept), {args.pairs} interleaved pairs per length; time in seconds")
    print(f"{'tokens':>7} {'eager median':>13} {'sdpa median':>12} {'eager/sdpa (median of pairs)':>29} "
          f"{'sdpa faster':>12}")
    for length in (int(x) for x in args.lengths.split(",")):
        heads = eager.config.num_attention_heads
        need = (2 * heads + 1) * length * length * 4  # a layer's scores and their softmax, and the causal mask
        free = _free_bytes()
        if need > free * 3 // 4:
            print(f"{length:>7} eager not run: its score matrices need about {need / 2**30:.0f} GiB a layer, more "
                  f"than three quarters of the {free / 2**30:.0f} GiB free")
            continue
        ids = torch.randint(4, len(tok), (1, length), generator=torch.Generator().manual_seed(length))
        mask = torch.ones_like(ids)
        for model in (eager, sdpa):  # one untimed call each: first-call costs out of the pairs
            model.prefill(ids, mask)
        times: dict[str, list[float]] = {"eager": [], "sdpa": []}
        for k in range(args.pairs):
            order = (("eager", eager), ("sdpa", sdpa)) if k % 2 == 0 else (("sdpa", sdpa), ("eager", eager))
            for name, model in order:
                t0 = time.perf_counter()
                model.prefill(ids, mask)
                times[name].append(time.perf_counter() - t0)
        ratios = [e / s for e, s in zip(times["eager"], times["sdpa"], strict=True)]
        faster = sum(r > 1 for r in ratios)
        print(f"{length:>7} {statistics.median(times['eager']):>13.4f} {statistics.median(times['sdpa']):>12.4f} "
              f"{statistics.median(ratios):>29.2f} {faster:>7} of {len(ratios)}")
    print(f"peak resident set of this process: {_peak_rss_bytes() / 2**30:.1f} GiB")
    return 0


def _peak_rss_bytes() -> int:
    """The process's high-water resident set (``ru_maxrss``, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    raise SystemExit(main())
