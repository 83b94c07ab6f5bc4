"""Prefill and decode of every cell of a report, and the two checks on them: the KV cache against its formula, and
the halves against the whole generation.

    .venv/bin/python benchmarks/phase_checks.py [reports/longeff.json] [--tolerance 0.05]
    .venv/bin/python benchmarks/phase_checks.py --interleaved [--families llama,longt5,pegasus_x]
        [--lengths 4096,8192,16384] [--pairs 9] [--rows 1] [--new-tokens 32] [--threads N]

From a report, one row per measured cell: prefill tokens/s, decode tokens/s, time to first token, inter-token
latency p50/p90, the KV cache's bytes per token over ``2 x layers x kv heads x head dim x bytes``, (prefill + decode)
/ generation from the two windows' sums and, batch by batch, its median, and generate()'s own time before its first
forward (TTFT less the median prefill batch). Exit 1 when a KV cache is off its formula by more than the tolerance.

A cell's prefill window runs after its inference window, so on a shared machine the two halves and the whole are
measured at different moments, and one cell measured twice back to back can differ by a third. ``--interleaved``
measures the halves and the whole in pairs instead: for each family (base size, tiny, random weights: the time of a
fixed-length generation does not depend on them) and input length, ``--pairs`` times, one prefill (the cell's own
``prefill_call``) and one fixed-length greedy generation of the same prompt with the cell's token clock, the order
alternating from pair to pair. Per pair: (prefill + decode) / generation, decode being the first token's stamp to
the generation's end. Printed: the median prefill, TTFT and generation, the median of the pairs' ratios with its
range, and whether it is within the tolerance; exit 1 when a median is not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_longeff.record.io import load_report  # noqa: E402
from pytest_longeff.record.sections import lookup  # noqa: E402


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


#: The families --interleaved measures: the ones whose prefill and decode this check is about (the study's LED and
#: Big Bird have them too, but need inputs of at least their attention window).
FAMILIES = ("llama", "longt5", "pegasus_x")


def _interleaved(family_names: list[str], lengths: list[int], pairs: int, rows: int, new_tokens: int,
                 tolerance: float) -> int:
    import torch

    from pytest_longeff.cell.infer import pin_generation
    from pytest_longeff.cell.phases import clock, prefill_call
    from pytest_longeff.data.tokenizer import lexicon_tokenizer
    from pytest_longeff.models.families import BUILTIN_FAMILIES, build_model

    families = {f.name: f for f in BUILTIN_FAMILIES}
    vocab = len(lexicon_tokenizer())
    head = ["family", "tokens", "prefill s", "TTFT s", "generation s", "(pre+dec)/gen median",
            "range", f"within {tolerance:.0%}"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head), flush=True)
    off = 0
    for name in family_names:
        family = families[name]
        for length in lengths:
            built = build_model(family, "base", "tiny", vocab, length, None, seed=0)
            model = built.model.eval()
            pin_generation(model)
            ids = torch.randint(10, vocab, (rows, length), generator=torch.Generator().manual_seed(length))
            mask = torch.ones_like(ids)
            pre, ttft, gen, ratios = [], [], [], []

            def generation(processors: object = None) -> None:
                model.generate(**family.model_inputs(ids, mask), max_new_tokens=new_tokens,
                               min_new_tokens=new_tokens, num_beams=1, do_sample=False, logits_processor=processors)

            with torch.no_grad():
                prefill_call(built, ids, mask)  # the first-call costs of both out of the pairs
                generation(clock("cpu")[1])
                for k in range(pairs):
                    for side in ((0, 1) if k % 2 == 0 else (1, 0)):
                        if side == 0:
                            t0 = time.perf_counter()
                            cache = prefill_call(built, ids, mask)
                            pre.append(time.perf_counter() - t0)
                            del cache
                        else:
                            token_clock, processors = clock("cpu")
                            token_clock.start()
                            t0 = time.perf_counter()
                            generation(processors)
                            end = time.perf_counter()
                            stamps = token_clock.stamps(t0)
                            ttft.append(stamps[0] - t0)
                            gen.append(end - t0)
                    ratios.append((pre[-1] + gen[-1] - ttft[-1]) / gen[-1])
            median = statistics.median(ratios)
            ok = abs(median - 1) <= tolerance
            off += not ok
            print(f"| {name} | {length} | {statistics.median(pre):.4f} | "
                  f"{statistics.median(ttft):.4f} | {statistics.median(gen):.4f} | {median:.3f} | "
                  f"{min(ratios):.3f}-{max(ratios):.3f} | {'yes' if ok else 'no'} |", flush=True)
            del built, model
    print(f"\n{pairs} interleaved pairs a cell, {rows} row(s) of {new_tokens} new tokens; {off} cell(s) whose median "
          f"is off 1 by more than {tolerance:.0%}")
    return 1 if off else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", nargs="?", default=None,
                    help="a JSON report (default reports/longeff.json; not with --interleaved)")
    ap.add_argument("--tolerance", type=float, default=0.05,
                    help="KV cache against its formula; with --interleaved, the halves against the whole "
                         "(default 0.05)")
    ap.add_argument("--interleaved", action="store_true",
                    help="measure prefill, decode and generation in interleaved pairs instead of reading a report")
    ap.add_argument("--families", default="llama,longt5,pegasus_x", help="with --interleaved (default %(default)s)")
    ap.add_argument("--lengths", default="4096,8192,16384", help="with --interleaved (default %(default)s)")
    ap.add_argument("--pairs", type=int, default=9, help="with --interleaved: pairs a cell (default %(default)s)")
    ap.add_argument("--rows", type=int, default=1, help="with --interleaved: prompts a batch (default %(default)s)")
    ap.add_argument("--new-tokens", type=int, default=32,
                    help="with --interleaved: tokens generated a row (default %(default)s, the tiny profile's cap)")
    ap.add_argument("--threads", type=int, default=0,
                    help="with --interleaved: torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.tolerance < 0:
        ap.error(f"--tolerance: {args.tolerance} is negative")
    if args.interleaved:
        if args.report is not None:
            ap.error(f"--interleaved measures; it reads no report ({args.report!r})")
        names = [n for n in args.families.split(",") if n]
        if not names or any(n not in FAMILIES for n in names):
            ap.error(f"--families: {args.families!r}: choose from {', '.join(FAMILIES)}")
        try:
            lengths = [int(n) for n in args.lengths.split(",") if n]
        except ValueError:
            lengths = []
        if not lengths or min(lengths) < 64:
            ap.error(f"--lengths: {args.lengths!r} is not a comma-separated list of token counts (64 or more)")
        if args.pairs < 1 or args.rows < 1 or args.new_tokens < 2 or args.threads < 0:
            ap.error("--pairs and --rows must be at least 1, --new-tokens at least 2, --threads 0 or more")
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        return _interleaved(names, lengths, args.pairs, args.rows, args.new_tokens, args.tolerance)
    extra = [o for o, v, d in (("--families", args.families, "llama,longt5,pegasus_x"),
                               ("--lengths", args.lengths, "4096,8192,16384"), ("--pairs", args.pairs, 9),
                               ("--rows", args.rows, 1), ("--new-tokens", args.new_tokens, 32),
                               ("--threads", args.threads, 0)) if v != d]
    if extra:
        ap.error(f"{', '.join(extra)}: only with --interleaved")
    doc = load_report(args.report or "reports/longeff.json")
    rows, off = [], 0
    for r in doc["records"]:
        ph = r.get("phases")
        if not isinstance(ph, dict) or "prefill" not in ph:
            continue
        kv = lookup(ph, "kv_cache", "ratio")
        if not isinstance(kv, (int, float)) or abs(kv - 1) > args.tolerance:
            off += 1
        rows.append([str(r["id"]), _fmt(lookup(ph, "prefill", "tokens_per_s"), ",.0f"),
                     _fmt(lookup(ph, "decode", "tokens_per_s"), ",.0f"),
                     _fmt(lookup(ph, "decode", "ttft_s", "p50"), ".4f"),
                     _fmt(lookup(ph, "decode", "inter_token_latency_s", "p50"), ".4f"),
                     _fmt(lookup(ph, "decode", "inter_token_latency_s", "p90"), ".4f"), _fmt(kv, ".3f"),
                     _fmt(lookup(ph, "check", "ratio"), ".3f"), _fmt(lookup(ph, "check", "pairs", "median"), ".3f"),
                     _fmt(lookup(ph, "check", "ttft_minus_prefill_s"), ".4f")])
    head = ["cell", "prefill tok/s", "decode tok/s", "TTFT p50 s", "ITL p50 s", "ITL p90 s", "KV/formula",
            "(pre+dec)/gen", "batch median", "TTFT-prefill s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(rows)} cells with prefill and decode measured; {off} with a KV cache off its formula by more than "
          f"{args.tolerance:.0%}")
    return 1 if off else 0


if __name__ == "__main__":
    raise SystemExit(main())
