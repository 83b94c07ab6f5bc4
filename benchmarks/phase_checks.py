"""Prefill and decode of every cell of a report, and the two checks on them: the KV cache against its formula, and
the halves against the whole generation.

    .venv/bin/python benchmarks/phase_checks.py [reports/longeff.json] [--tolerance 0.05]

Prints one row per measured cell: prefill tokens/s, decode tokens/s, time to first token, inter-token latency
p50/p90, the KV cache's bytes per token over ``2 x layers x kv heads x head dim x bytes``, and (prefill + decode) /
generation with generate()'s own time before its first forward (TTFT less the median prefill batch). Exit 1 when a
KV cache is off its formula by more than the tolerance; the halves' ratio is reported, not judged (see the
validation page for why it depends on the scale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pytest_longeff.record.io import load_report  # noqa: E402
from pytest_longeff.record.sections import lookup  # noqa: E402


def _fmt(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", nargs="?", default="reports/longeff.json", help="a JSON report (default %(default)s)")
    ap.add_argument("--tolerance", type=float, default=0.05, help="KV cache against its formula (default 0.05)")
    args = ap.parse_args(argv)
    doc = load_report(args.report)
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
                     _fmt(lookup(ph, "check", "ratio"), ".3f"),
                     _fmt(lookup(ph, "check", "ttft_minus_prefill_s"), ".4f")])
    head = ["cell", "prefill tok/s", "decode tok/s", "TTFT p50 s", "ITL p50 s", "ITL p90 s", "KV/formula",
            "(pre+dec)/gen", "TTFT-prefill s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(rows)} cells with prefill and decode measured; {off} with a KV cache off its formula by more than "
          f"{args.tolerance:.0%}")
    return 1 if off else 0


if __name__ == "__main__":
    raise SystemExit(main())
