"""Whether the seed study's findings hold in a measured matrix.

The study (Ang, Dhingra & Wu Wills 2022) found: LED beats Big Bird on accuracy at lower energy; for summarization a
bigger model is a more energy-efficient route to accuracy than a longer input, but inference gets much slower; for
QA the smaller model wins on both, helped by the bigger batches a fixed memory budget allows. Each verdict below
is computed from the records alone and names the cost it used: energy where every compared cell has a valid
reading, else wall time of fine-tuning plus inference (said so), never a mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SUMMARIZATION_KINDS = ("gov_report", "summ_screen_fd", "qmsum")
QA_TASKS = ("qasper", "narrative_qa")


@dataclass(frozen=True)
class Finding:
    """One claim of the study and what this matrix says about it."""

    claim: str
    verdict: str  # "holds" | "does not hold" | "mixed" | "cannot tell"
    evidence: str

    def to_dict(self) -> dict[str, str]:
        return {"claim": self.claim, "verdict": self.verdict, "evidence": self.evidence}


def _passed(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    return {(r["family"], r["size"], r["seq_len"], r["task"]): r for r in records if r.get("status") == "passed"}


def _cost_kind(cells: Sequence[dict[str, Any]]) -> str:
    valid = all((c.get("train") or {}).get("energy_valid") and (c.get("inference") or {}).get("energy_valid")
                for c in cells)
    return "energy_j" if valid and cells else "time_s"


def _cost(cell: dict[str, Any], kind: str) -> float:
    return float(cell["train"][kind]) + float(cell["inference"][kind])


def _score(cell: dict[str, Any]) -> float:
    return float((cell.get("accuracy") or {}).get("score") or 0.0)


def _verdict(yes: int, total: int, scores_differ: bool = True) -> str:
    if total == 0 or not scores_differ:
        return "cannot tell"
    if yes == total:
        return "holds"
    return "does not hold" if yes == 0 else "mixed"


def _cost_words(kind: str) -> str:
    return "energy (J)" if kind == "energy_j" else "wall time (s, energy not measured in every cell)"


def led_vs_bigbird(cells: dict[tuple[str, str, int, str], dict[str, Any]]) -> Finding:
    pairs = [(cells[k], cells[("bigbird", *k[1:])]) for k in cells if k[0] == "led" and ("bigbird", *k[1:]) in cells]
    kind = _cost_kind([c for p in pairs for c in p])
    wins = sum(_score(a) >= _score(b) and _cost(a, kind) <= _cost(b, kind) for a, b in pairs)
    differ = any(_score(a) != _score(b) for a, b in pairs)
    evidence = (f"LED scored at least as high at no more {_cost_words(kind)} in {wins} of {len(pairs)} "
                f"(size, length, task) pairs")
    if pairs and not differ:
        evidence += "; but no score differs, so accuracy cannot rank them"
    return Finding("LED beats Big Bird on accuracy at lower energy", _verdict(wins, len(pairs), differ), evidence)


def bigger_model_vs_longer_input(cells: dict[tuple[str, str, int, str], dict[str, Any]]) -> Finding:
    """From (base, L): score gained per unit of extra cost by going to (large, L) vs to (base, next length)."""
    lengths = sorted({k[2] for k in cells})
    compared, bigger_wins, undecided = [], 0, 0
    for (family, size, seq_len, task), start in cells.items():
        if size != "base" or task not in SUMMARIZATION_KINDS or seq_len not in lengths[:-1]:
            continue
        longer = cells.get((family, "base", lengths[lengths.index(seq_len) + 1], task))
        bigger = cells.get((family, "large", seq_len, task))
        if longer is None or bigger is None:
            continue
        compared.append((start, longer, bigger))
    kind = _cost_kind([c for t in compared for c in t])
    for start, longer, bigger in compared:
        if _score(bigger) == _score(start) and _score(longer) == _score(start):
            undecided += 1  # neither route bought any accuracy: nothing to rank
            continue
        gains = []
        for other in (bigger, longer):
            extra = _cost(other, kind) - _cost(start, kind)
            gain = _score(other) - _score(start)
            # A route that buys accuracy at no extra cost is best; one that loses accuracy never is.
            gains.append(gain / extra if extra > 0 else (float("inf") if gain > 0 else float("-inf")))
        if gains[0] == gains[1]:
            undecided += 1
        elif gains[0] > gains[1]:
            bigger_wins += 1
    decided = len(compared) - undecided
    evidence = (f"score gained per extra {_cost_words(kind)}: the larger model beat the longer input in "
                f"{bigger_wins} of {decided} decided summarization comparisons")
    if undecided:
        evidence += f" ({undecided} undecided: neither route changed the score)"
    return Finding("for summarization a bigger model is a more energy-efficient route to accuracy than a longer "
                   "input", _verdict(bigger_wins, decided), evidence)


def bigger_model_infers_slower(cells: dict[tuple[str, str, int, str], dict[str, Any]]) -> Finding:
    pairs = [(cells[k], cells[(k[0], "large", *k[2:])]) for k in cells
             if k[1] == "base" and (k[0], "large", *k[2:]) in cells]
    pairs = [(a, b) for a, b in pairs if a["inference"].get("samples_per_s") and b["inference"].get("samples_per_s")]
    slower = [b["inference"]["samples_per_s"] < a["inference"]["samples_per_s"] for a, b in pairs]
    ratios = sorted(a["inference"]["samples_per_s"] / b["inference"]["samples_per_s"] for a, b in pairs
                    if b["inference"]["samples_per_s"])
    evidence = f"the large model generated fewer samples/s in {sum(slower)} of {len(pairs)} pairs"
    if ratios:
        evidence += f" (base/large throughput ratio median {ratios[len(ratios) // 2]:.2f})"
    return Finding("a bigger model makes inference much slower", _verdict(sum(slower), len(pairs)), evidence)


def smaller_model_wins_qa(cells: dict[tuple[str, str, int, str], dict[str, Any]]) -> Finding:
    pairs = [(cells[k], cells[(k[0], "large", *k[2:])]) for k in cells
             if k[1] == "base" and k[3] in QA_TASKS and (k[0], "large", *k[2:]) in cells]
    kind = _cost_kind([c for p in pairs for c in p])
    wins = sum(_score(a) >= _score(b) and _cost(a, kind) <= _cost(b, kind) for a, b in pairs)
    bigger_batch = sum((a.get("batch_size") or 0) >= (b.get("batch_size") or 0) for a, b in pairs)
    differ = any(_score(a) != _score(b) for a, b in pairs)
    evidence = (f"base scored at least as high at no more {_cost_words(kind)} in {wins} of {len(pairs)} QA pairs; "
                f"its batch was at least as large in {bigger_batch} of {len(pairs)}")
    if pairs and not differ:
        evidence += "; but no score differs, so accuracy cannot rank them"
    return Finding("for QA the smaller model wins on accuracy and cost (bigger batches in the same memory)",
                   _verdict(wins, len(pairs), differ), evidence)


def findings(records: Sequence[dict[str, Any]]) -> list[Finding]:
    """Every finding the matrix has cells for."""
    cells = _passed(records)
    return [led_vs_bigbird(cells), bigger_model_vs_longer_input(cells), bigger_model_infers_slower(cells),
            smaller_model_wins_qa(cells)]
