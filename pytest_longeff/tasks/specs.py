"""Tasks: one small spec per task, metadata and metric as data (SCROLLS' seven, and six long-context tasks in the
style of RULER).

The ``input`` field of SCROLLS rows already carries the query for query-based tasks (query, blank line,
document), so a task adds nothing to the text; it says how the output is scored.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    """One SCROLLS task: ``metric`` names an entry of the session's metric table (a built-in of
    ``pytest_longeff.tasks.metrics.BUILTIN_METRICS`` or one a ``pytest_longeff_metrics`` hook added)."""

    name: str
    kind: str  # summarization | query_summarization | qa | multiple_choice | nli
    metric: str
    has_query: bool
    higher_is_better: bool = True
    max_target_tokens: int = 128  # the study truncates targets to 128 tokens
    truncation: str = "right"
    """Which end of a long input is cut: ``right`` (SCROLLS: the query comes first) or ``left`` (the RULER-style
    tasks: the question comes last)."""


BUILTIN_TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("gov_report", "summarization", "rouge", has_query=False),
    TaskSpec("summ_screen_fd", "summarization", "rouge", has_query=False),
    TaskSpec("qmsum", "query_summarization", "rouge", has_query=True),
    TaskSpec("qasper", "qa", "f1", has_query=True),
    TaskSpec("narrative_qa", "qa", "f1", has_query=True),
    TaskSpec("quality", "multiple_choice", "exact_match", has_query=True),
    TaskSpec("contract_nli", "nli", "exact_match", has_query=True),
    # RULER-style tasks (pytest_longeff.data.ruler), generated offline for each input length, scored as RULER does.
    TaskSpec("niah_single", "retrieval", "ruler_all", has_query=True, truncation="left"),
    TaskSpec("niah_multikey", "retrieval", "ruler_all", has_query=True, truncation="left"),
    TaskSpec("niah_multivalue", "retrieval", "ruler_all", has_query=True, truncation="left"),
    TaskSpec("vt", "multi_hop_tracing", "ruler_all", has_query=True, truncation="left"),
    TaskSpec("fwe", "aggregation", "ruler_all", has_query=True, truncation="left"),
    TaskSpec("qa_distractors", "qa", "ruler_part", has_query=True, truncation="left"),
)
