"""What a session decides about the GPU, tested where it is decided: which device a worker gets, how a memory
budget becomes an allocator limit, and where cached models wait. CUDA is replaced by fakes that answer as CUDA
does (device count, free and total memory, reserved bytes, and a model's ``.to``)."""

from __future__ import annotations

from collections import OrderedDict
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from pytest_longeff.cell import resources
from pytest_longeff.cell.resources import LongeffSession, SessionStats, memory_fraction, resolve_device
from pytest_longeff.errors import CellUnavailable
from pytest_longeff.matrix import Cell
from pytest_longeff.models.families import BuiltModel

GIB = 2**30


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int, worker: int | None = None, workers: int = 1) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    if worker is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
        monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))


def test_each_xdist_worker_gets_a_gpu_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2, worker=1, workers=2)
    assert resolve_device("cuda") == "cuda:1" and resolve_device("auto") == "cuda:1"


def test_more_workers_than_gpus_is_refused_unless_shared_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards `-n 4` on 2 GPUs silently putting two workers on each GPU (time, memory and batch sizes of one cell
    then include another's work)."""
    _gpus(monkeypatch, 2, worker=3, workers=4)
    for requested in ("auto", "cuda"):
        refused = r"4 pytest-xdist workers for 2 GPU.*-n 2 or fewer.*--longeff-share-gpus"
        with pytest.raises(CellUnavailable, match=refused):
            resolve_device(requested)
    assert resolve_device("cuda", share_gpus=True) == "cuda:1"


def test_one_named_gpu_for_several_workers_is_refused_unless_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    _gpus(monkeypatch, 2, worker=0, workers=2)
    with pytest.raises(CellUnavailable, match="cuda:0 with 2 pytest-xdist workers"):
        resolve_device("cuda:0")
    assert resolve_device("cuda:0", share_gpus=True) == "cuda:0"
    _gpus(monkeypatch, 2)  # no xdist: the named GPU as asked
    assert resolve_device("cuda:0") == "cuda:0" and resolve_device("auto") == "cuda"


def _card(monkeypatch: pytest.MonkeyPatch, total: int, free: int, reserved: int) -> None:
    monkeypatch.setattr(torch, "zeros", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, total))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)


def test_a_budget_counts_the_context_as_a_card_of_that_size_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the fraction budget/total: on an 80 GiB card it gave the allocator all 48 GiB of a 48 GiB budget,
    while a real 48 GiB card also holds the CUDA context in that memory."""
    context = int(0.6 * GIB)
    _card(monkeypatch, total=80 * GIB, free=80 * GIB - context - 2 * GIB, reserved=2 * GIB)
    fraction, enforcement, warning = memory_fraction(48 * GIB, "cuda:0")
    assert warning is None
    assert enforcement["outside_allocator_bytes"] == context
    assert fraction * 80 * GIB == pytest.approx(48 * GIB - context)
    assert enforcement["allocator_limit_bytes"] == pytest.approx(48 * GIB - context, abs=1)
    assert "reserved" in enforcement["method"]


def test_a_budget_above_the_card_says_the_card_is_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    _card(monkeypatch, total=40 * GIB, free=39 * GIB, reserved=0)
    fraction, _, warning = memory_fraction(48 * GIB, "cuda:0")
    assert fraction == 1.0 and warning is not None and "effective budget is the card's" in warning
    with pytest.raises(CellUnavailable, match="raise the budget"):
        memory_fraction(GIB // 2, "cuda:0")  # the context alone takes more than the budget


class _Placed(torch.nn.Linear):
    """A model that remembers where ``.to`` put it, as a CUDA model's weights would move."""

    def __init__(self) -> None:
        super().__init__(4, 4)
        self.where = "cpu"

    def to(self, device: Any) -> _Placed:  # type: ignore[override]
        self.where = str(device)
        return self


class _Family:
    name = "fake"

    def prepare(self, model: Any, seq_len: int) -> None:
        pass


def _session(monkeypatch: pytest.MonkeyPatch, device: str) -> tuple[LongeffSession, dict[str, _Placed]]:
    built: dict[str, _Placed] = {}

    def build(family: Any, size: str, *args: Any, **kwargs: Any) -> BuiltModel:
        built[size] = _Placed()
        return BuiltModel(_Family(), size, built[size], 0.0, size)  # type: ignore[arg-type]

    monkeypatch.setattr(resources, "build_model", build)
    released: list[str] = []
    monkeypatch.setattr(resources, "release_memory", lambda dev, full=True: released.append(dev))
    session = object.__new__(LongeffSession)
    settings = SimpleNamespace(lengths=(1024,), model_dir=None, tiny_weights="random", attn_implementation="auto",
                               gradient_checkpointing=False)
    session.settings = settings  # type: ignore[assignment]
    session.profile = SimpleNamespace(weights="tiny", seed=0)  # type: ignore[assignment]
    session.families = {"led": _Family()}  # type: ignore[dict-item]
    session.inputs = SimpleNamespace(tokenizer=lambda cell: [0] * 10)  # type: ignore[assignment]
    session.stats = SessionStats()
    session.device = device
    session._models = OrderedDict()
    session._model_cache_size = 2
    session._on_device = set()
    return session, built


def test_on_a_gpu_only_the_running_model_is_on_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guards the model cache keeping the previous model's weights on the GPU, where they ate the next model's
    memory budget and entered its peaks (batch sizes then depended on which cells ran before)."""
    session, built = _session(monkeypatch, "cuda:0")
    base, large = Cell("led", "base", 1024, "gov_report"), Cell("led", "large", 1024, "gov_report")
    session.model(base)
    assert built["base"].where == "cuda:0"
    built["base"].weight.grad = torch.ones(4, 4)  # what a failed step leaves behind
    session.model(large)
    assert (built["base"].where, built["large"].where) == ("cpu", "cuda:0")
    assert built["base"].weight.grad is None
    model, fresh = session.model(base)  # back from the cache: on the device again, the other one off it
    assert not fresh and (built["base"].where, built["large"].where) == ("cuda:0", "cpu")


def test_on_the_cpu_models_stay_where_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    session, built = _session(monkeypatch, "cpu")
    session.model(Cell("led", "base", 1024, "gov_report"))
    session.model(Cell("led", "large", 1024, "gov_report"))
    assert built["base"].where == "cpu" and built["large"].where == "cpu"


def test_memory_held_by_another_process_is_said_and_the_cache_key_ignores_small_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _card(monkeypatch, total=80 * GIB, free=70 * GIB, reserved=0)  # 10 GiB held outside this process's allocator
    _, enforcement, warning = memory_fraction(48 * GIB, "cuda:0")
    assert warning is not None and "another process is likely using it" in warning
    one = {"allocator_limit_bytes": 47 * GIB + 10 * 2**20}
    other = {"allocator_limit_bytes": 47 * GIB + 60 * 2**20}  # the context took 50 MiB less this time
    assert resources.limit_key(one) == resources.limit_key(other) == 47 * GIB
    assert resources.limit_key({}) is None
