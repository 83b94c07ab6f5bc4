"""Usage errors that need more than one option, or the registries that hooks extend."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_longeff.matrix import DEFAULT_FAMILIES, DEFAULT_TASKS


def check_options(v: dict[str, Any], known_families: tuple[str, ...], known_tasks: tuple[str, ...],
                  known_meters: tuple[str, ...]) -> None:
    """Usage errors that need more than one option, or the session's registries (the names of its families, tasks
    and energy meters, built-ins and hook additions alike)."""
    for option, names, known in (("families", v["families"] or DEFAULT_FAMILIES, known_families),
                                 ("tasks", v["tasks"] or DEFAULT_TASKS, known_tasks)):
        unknown = [n for n in names if n not in known]
        if unknown:
            raise pytest.UsageError(
                f"--longeff-{option}: unknown {', '.join(map(repr, unknown))}; accepted: {', '.join(known)}"
            )
    if v["energy"] is not None and v["energy"] not in known_meters:
        raise pytest.UsageError(f"--longeff-energy: unknown meter {v['energy']!r}; accepted: {', '.join(known_meters)}")
    if bool(v["dataset"]) != bool(v["columns"]):
        raise pytest.UsageError("--longeff-dataset and --longeff-columns go together: name the dataset and map its "
                                "columns, e.g. --longeff-dataset my/data --longeff-columns input=text,output=summary")
    for option, needs in (("fail-on", "baseline"), ("acknowledged", "baseline"), ("remeasure", "baseline"),
                          ("durations", "shard")):
        if v[option] and not v[needs]:
            raise pytest.UsageError(f"--longeff-{option} needs --longeff-{needs} (without it, it would do nothing)")
    if v["tiny-weights"] is not None and (v["profile"] or "tiny") != "tiny":
        raise pytest.UsageError("--longeff-tiny-weights applies to the tiny profile only (the others have their own "
                                "weights)")
    if v["tiny-weights"] in ("auto", "pretrained") and (v["data-dir"] or v["dataset"]):
        raise pytest.UsageError(f"--longeff-tiny-weights {v['tiny-weights']}: the shipped checkpoints know only the "
                                "generated data's vocabulary; with --longeff-data-dir or --longeff-dataset use random")
    budget = v["train-budget"]
    if v["early-stop-metric"] is not None and budget is not None and budget.kind != "epochs":
        raise pytest.UsageError(f"--longeff-early-stop-metric needs an epochs=N,patience=K budget (got "
                                f"--longeff-train-budget {budget.spec}, which never evaluates)")
