"""Does the batch-size probe cover real training? At `dims` size on the CPU, against the process's own counters.

    .venv/bin/python benchmarks/probe_covers_training.py [--budget-gib 4.5] [--length 1024] [--steps 3]
    .venv/bin/python benchmarks/probe_covers_training.py --family llama --length 2048 --budget-gib 16
    .venv/bin/python benchmarks/probe_covers_training.py --family llama --length 8192 --budget-gib 16 \
        --max-batch 1 --steps 2 --gradient-checkpointing

1. The suite's search, as a cell runs it: `dims` LED base (LED-base dimensions, random weights; or the decoder-only
   `llama` base, Qwen2.5-0.5B dimensions, fine-tuned on prompt + target with the loss on the target), the generated
   gov_report training split at ``--length`` tokens with labels padded to 128 positions (the study's padding, the
   `dims` and `paper` profiles'), real training-step probes under the budget.
2. A fresh process at the chosen batch: a bare PyTorch loop (AdamW, no code of the suite's in the step) on inputs of
   ``--length`` tokens and *full* 128-token targets (the longest a task allows), ``--steps`` steps. Its peak is the
   process's high-water mark (VmHWM, reset once the model is built) less its resident set before the model was
   built: weights, gradients, optimizer state and activations, as the budget counts them.

With ``--gradient-checkpointing`` both train with transformers' activation checkpointing (every layer,
non-reentrant), as ``--longeff-gradient-checkpointing`` makes a cell do: the decoder-only base model at 8192 tokens
needs about 30 GiB a step without it (about 22 of them activations of 24 layers; estimated), about a third of that
with it.

``--bare-mmap-threshold BYTES`` runs the bare loop under that glibc setting (a session's windows and probes run at
33554432); ``--batch N`` skips the search and runs only the bare loop at batch N (each dims probe at 8192 tokens
takes tens of minutes here).

Prints the probe's figure, the bare loop's peak (after each step and in all) and whether that peak stays within
the budget. Linux only (it reads /proc/self/status). At 1024 tokens a step of LED base takes tens of seconds here:
expect 5-15 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 2**30

# What both loops start with: the process's own memory counters, the arguments, the resident set before the model.
PROLOGUE = textwrap.dedent("""
    import ctypes, json, sys, torch, transformers

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    batch, length, steps, config = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    checkpointing = config.pop("gradient_checkpointing", False)

    def enable(model):
        if not checkpointing:
            return
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        assert any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())

    torch.manual_seed(0)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = status("VmRSS")
""")

BARE_LOOP = PROLOGUE + textwrap.dedent("""
    from transformers import LEDConfig, LEDForConditionalGeneration
    model = LEDForConditionalGeneration(LEDConfig(**config)).train()
    enable(model)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")  # the model's build is not training: its transient peak is left out
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001)
    ids = torch.randint(4, config["vocab_size"], (batch, length))
    labels = torch.randint(4, config["vocab_size"], (batch, 128))
    glob = torch.zeros_like(ids)
    glob[:, 0] = 1
    times, peaks = [], []
    for _ in range(steps):
        t0 = __import__("time").perf_counter()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), global_attention_mask=glob, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(__import__("time").perf_counter() - t0)
        peaks.append(status("VmHWM") - before)
    print(json.dumps({"peak": status("VmHWM") - before, "step_s": times, "step_peaks": peaks}))
""")

# The decoder-only loop: the prompt then a full 128-token target, the loss on the target from logits computed at the
# target's positions only (as any memory-conscious causal-LM fine-tuning does), SDPA attention.
BARE_CAUSAL_LOOP = PROLOGUE + textwrap.dedent("""
    cls_name = config.pop("model_class")
    cfg = getattr(transformers, config.pop("config_class"))(**config)
    cfg._attn_implementation = "sdpa"
    model = getattr(transformers, cls_name)(cfg).train()
    enable(model)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.001)
    ids = torch.randint(4, config["vocab_size"], (batch, length + 128))
    target = ids[:, length:]
    times, peaks = [], []
    for _ in range(steps):
        t0 = __import__("time").perf_counter()
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state[:, length - 1:-1]
        logits = model.lm_head(hidden).float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(__import__("time").perf_counter() - t0)
        peaks.append(status("VmHWM") - before)
    print(json.dumps({"peak": status("VmHWM") - before, "step_s": times, "step_peaks": peaks}))
""")


Found = tuple[int, int | None, list[dict[str, object]], dict[str, object]]


def search(budget: int, length: int, max_batch: int, family: str = "led", checkpointing: bool = False,
           fixed: int | None = None) -> Found:
    """The suite's search for dims ``family`` base at ``length`` tokens: (batch, its probe's peak, probe log,
    config). With ``fixed``, no search: that batch, no probe."""
    from pytest_longeff.cell.batch import probe_batch
    from pytest_longeff.cell.prepare import _rows, _tokenize
    from pytest_longeff.cell.search import search_batch_size
    from pytest_longeff.data.scrolls import load_task, write_generated
    from pytest_longeff.data.tokenizer import lexicon_tokenizer
    from pytest_longeff.matrix import DEFAULT_LENGTHS
    from pytest_longeff.models.families import LEDFamily, build_model
    from pytest_longeff.models.recent import LLAMA
    from pytest_longeff.tasks.specs import BUILTIN_TASKS

    tok = lexicon_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        split = load_task(write_generated(Path(tmp), ["gov_report"]), "gov_report")["train"]
        train = _tokenize(tok, _rows(split, "train", 0, "examples"), length,
                          next(t for t in BUILTIN_TASKS if t.name == "gov_report").max_target_tokens, "study")
    chosen = LLAMA if family == "llama" else LEDFamily()
    built = build_model(chosen, "base", "dims", len(tok), max(length, *DEFAULT_LENGTHS), None, seed=0,
                        gradient_checkpointing=checkpointing)
    if fixed is None:
        found = search_batch_size(lambda b: probe_batch(built, train, b, "cpu"), budget, max_batch=max_batch)
        batch, peak, log = found.batch_size, found.peak_memory_bytes, [p.to_dict() for p in found.probes]
    else:
        batch, peak, log = fixed, None, []
    config = built.model.config.to_dict()
    if family == "llama":
        d = LLAMA.dims["base"]
        keep = {k: config[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                       "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                                       "tie_word_embeddings", "pad_token_id", "bos_token_id", "eos_token_id")}
        keep.update(config_class=d.config_class, model_class=d.model_class, gradient_checkpointing=checkpointing)
        print(f"decoder positions of every step: {train.decoder_positions}")
        return batch, peak, log, keep
    keep = {k: config[k] for k in ("vocab_size", "d_model", "encoder_layers", "decoder_layers",
                                   "encoder_attention_heads", "decoder_attention_heads", "encoder_ffn_dim",
                                   "decoder_ffn_dim", "attention_window", "max_encoder_position_embeddings",
                                   "max_decoder_position_embeddings", "pad_token_id", "bos_token_id", "eos_token_id",
                                   "decoder_start_token_id")}
    keep["attn_implementation"] = "eager"
    keep["gradient_checkpointing"] = checkpointing
    print(f"decoder positions of every step: {train.decoder_positions}")
    return batch, peak, log, keep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-gib", type=float, default=4.5, help="the memory budget in GiB (default 4.5)")
    parser.add_argument("--length", type=int, default=1024, help="input tokens (default 1024)")
    parser.add_argument("--steps", type=int, default=3, help="steps of the bare loop (default 3)")
    parser.add_argument("--max-batch", type=int, default=16, help="largest batch the search may choose")
    parser.add_argument("--family", choices=("led", "llama"), default="led",
                        help="led (default) or the decoder-only llama family, base size at dims")
    parser.add_argument("--bare-mmap-threshold", type=int, default=None, metavar="BYTES",
                        help="run the bare loop with glibc's MALLOC_MMAP_THRESHOLD_=BYTES (a session's windows and "
                             "probes run at 33554432): tells the allocator's share of a gap from the tensors'")
    parser.add_argument("--batch", type=int, default=None,
                        help="no search: run only the bare loop at this batch (for a figure under other settings "
                             "when the search's answer is known; each probe takes minutes at dims size)")
    parser.add_argument("--gradient-checkpointing", action="store_true",
                        help="both the suite's search and the bare loop train with activation checkpointing")
    args = parser.parse_args(argv)
    if args.bare_mmap_threshold is not None and args.bare_mmap_threshold < 0:
        parser.error(f"--bare-mmap-threshold: {args.bare_mmap_threshold} is negative")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be at least 1, not {args.batch}")
    budget = int(args.budget_gib * GIB)
    t0 = time.perf_counter()
    batch, probe, log, config = search(budget, args.length, args.max_batch, args.family, args.gradient_checkpointing,
                                       args.batch)
    if args.batch is None:
        print(f"search: batch {batch}, probe peak {probe / GIB if probe else float('nan'):.3f} GiB, "
              f"{len(log)} probes in {time.perf_counter() - t0:.0f} s: {log}")
    else:
        print(f"no search: batch {batch} as asked (--batch), no probe")
    if batch == 0:
        print("nothing fits the budget: nothing to check")
        return 1
    t1 = time.perf_counter()
    loop = BARE_CAUSAL_LOOP if args.family == "llama" else BARE_LOOP
    env = dict(os.environ)
    if args.bare_mmap_threshold is not None:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.bare_mmap_threshold)
    out = subprocess.run([sys.executable, "-c", loop, str(batch), str(args.length), str(args.steps),
                          json.dumps(config)], capture_output=True, text=True, check=True, env=env)
    bare = json.loads(out.stdout.strip().splitlines()[-1])
    peak = int(bare["peak"])
    how = "" if args.bare_mmap_threshold is None else f", MALLOC_MMAP_THRESHOLD_={args.bare_mmap_threshold}"
    print(f"bare loop at batch {batch}, {args.steps} steps with full 128-token targets, in a fresh process{how}: peak "
          f"{peak / GIB:.3f} GiB (VmHWM less the resident set before the model), steps "
          f"{', '.join(f'{s:.0f}' for s in bare['step_s'])} s, {time.perf_counter() - t1:.0f} s in all; peak after "
          f"each step {', '.join(f'{p / GIB:.3f}' for p in bare['step_peaks'])} GiB")
    ok = peak <= budget
    print(f"budget {budget / GIB:.3f} GiB: the real steady-state peak is {'within' if ok else 'OVER'} it "
          f"({peak / budget:.1%} of the budget; "
          + (f"the probe read {probe / budget:.1%})" if probe else "no probe ran)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
