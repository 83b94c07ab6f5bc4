"""One-shot GPU validation: run it whenever a GPU is at hand, and commit its Markdown under docs/.

    python benchmarks/gpu_validation.py                 # on a GPU machine: at most about 10 minutes
    python benchmarks/gpu_validation.py --rehearse      # on a CPU: the same steps at tiny size, no energy part

Parts:
  (a) energy: the NVML counter against sampled power on a 15-s load, with the counter's measured update period
      (benchmarks/device_check_energy.py);
  (b) memory: `dims` LED base and Big Bird large at 4096 tokens under --longeff-memory-budget 48GiB in tf32: batch
      search, 3 training steps with no out-of-memory, the steady-state peak within the budget, energy valid;
  (c) overhead: the harness's training throughput against a bare PyTorch loop, same model and batch
      (benchmarks/harness_overhead.py), median ratio over 5 pairs;
  (d) xdist: `-n 2 --dist loadgroup` over two GPUs, when there are two;
  (e) GPU paths: only the running model's weights on the device after the model cache switches models; an
      out-of-memory error raised inside training retried at a smaller batch with the failed step's gradients
      freed; more xdist workers than GPUs refused;
  (f) the families added after the study: `dims` llama (SDPA), LongT5 and PEGASUS-X base at 8192 tokens in bf16, 3
      steps: within the budget, the KV cache within 5 % of its formula, prefill, decode and their sum against the
      generation printed.

Writes docs/gpu-validation-<date>.md (or --out) with the date, GPU, driver and versions. Exit status: 0 when every
part that ran passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
Part = tuple[str, bool | None, str]  # (title, passed or None when skipped, Markdown body)


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_longeff_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def part_energy(rehearse: bool, workdir: Path) -> Part:
    if rehearse:
        return "(a) energy: nvml against nvml-power", None, "skipped in a CPU rehearsal: NVML needs an NVIDIA GPU"
    out = workdir / "energy.md"
    status = _script("device_check_energy").main(["--seconds", "15", "--idle-seconds", "10", "--markdown", str(out)])
    body = out.read_text(encoding="utf-8") if out.is_file() else "no result written"
    return "(a) energy: nvml against nvml-power", None if status == 2 else status == 0, body


def _cells_command(rehearse: bool, report: Path) -> list[str]:
    if rehearse:
        matrix = ["--longeff-profile", "tiny", "--longeff-lengths", "1024", "--longeff-memory-budget", "512MiB",
                  "--longeff-device", "cpu", "--longeff-energy", "none", "--longeff-idle-s", "0"]
        select = "led-base-1024-gov_report or bigbird-large-1024-gov_report"
    else:
        matrix = ["--longeff-profile", "dims", "--longeff-lengths", "4096", "--longeff-memory-budget", "48GiB"]
        select = "led-base-4096-gov_report or bigbird-large-4096-gov_report"
    return [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_cells.py"), "-q", "-p", "no:cacheprovider",
            *matrix, "--longeff-tasks", "gov_report", "--longeff-precision", "tf32",
            "--longeff-train-budget", "steps=3", "--longeff-eval-samples", "2", "--longeff-repeats", "1",
            "--longeff-batch-reset", "--longeff-json", str(report), "-k", select]


def _cell_row(r: dict[str, Any], budget: int, need_energy: bool) -> tuple[list[str], bool]:
    train = r.get("train") or {}
    peak = train.get("peak_memory_bytes")
    probe = (r.get("batch_search") or {}).get("peak_memory_bytes")
    energy_ok = bool(train.get("energy_valid")) or not need_energy
    ok = (r.get("status") == "passed" and train.get("steps") == 3 and isinstance(peak, int) and peak <= budget
          and bool(train.get("within_memory_budget")) and energy_ok)
    gib = 2**30
    energy = ("n/a (not measured)" if train.get("energy_j") is None else
              (f"{train['energy_j']:.1f} J ± {train.get('energy_uncertainty_j') or 0:.1f} J "
               f"({train.get('energy_method')})"))
    return [str(r.get("id")), str(r.get("status")), str(r.get("batch_size")),
            "n/a" if probe is None else f"{probe / gib:.2f}", "n/a" if peak is None else f"{peak / gib:.2f}",
            f"{budget / gib:.2f}",
            energy,
            "PASS" if ok else f"FAIL ({r.get('reason') or 'see figures'})"], ok


def part_memory(rehearse: bool, workdir: Path) -> tuple[Part, dict[str, Any]]:
    report = workdir / "cells.json"
    t0 = time.perf_counter()
    run = subprocess.run(_cells_command(rehearse, report), capture_output=True, text=True, cwd=ROOT, check=False)
    title = "(b) memory: steady-state peak within the budget, 3 steps, energy valid"
    if not report.is_file():
        return (title, False, f"no report; pytest said:\n\n```\n{run.stdout[-3000:]}{run.stderr[-2000:]}\n```"), {}
    doc = json.loads(report.read_text(encoding="utf-8"))
    budget = int(doc["settings"]["memory_budget_bytes"])
    rows, oks = [], []
    for record in doc["records"]:
        row, ok = _cell_row(record, budget, need_energy=not rehearse)
        rows.append(row)
        oks.append(ok)
    table = ["| cell | status | batch | probe GiB | train peak GiB | budget GiB | train energy | result |",
             "|---|---|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    body = "\n".join(table) + f"\n\nwall time {time.perf_counter() - t0:.0f} s; pytest exit {run.returncode}"
    return (title, len(oks) == 2 and all(oks), body), doc


def part_overhead(rehearse: bool, batch: int) -> Part:
    argv = (["--profile", "tiny", "--length", "1024", "--pairs", "3", "--steps", "3", "--device", "cpu"] if rehearse
            else ["--profile", "dims", "--length", "4096", "--pairs", "5", "--steps", "6", "--device", "cuda",
                  "--precision", "tf32"])
    out = io.StringIO()
    ratios = _script("harness_overhead").measure([*argv, "--batch", str(batch)], out=out)
    median = statistics.median(ratios)
    title = "(c) overhead: harness against a bare PyTorch loop (target median ratio >= 0.97)"
    return title, None if rehearse else median >= 0.97, f"```\n{out.getvalue()}```"


def part_xdist(rehearse: bool, workdir: Path, gpus: int) -> Part:
    title = "(d) xdist: -n 2 --dist loadgroup over two GPUs"
    if gpus < 2 and not rehearse:
        return title, None, f"skipped: {gpus} GPU(s) here; the check needs two"
    report = workdir / "xdist.json"
    command = [*_cells_command(rehearse, report), "-n", "2", "--dist", "loadgroup"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    doc = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {"records": []}
    devices = sorted({str(r.get("device")) for r in doc["records"]})
    ok = run.returncode == 0 and len(doc["records"]) >= 2 and (rehearse or len(devices) == 2)
    return title, ok, f"{len(doc['records'])} records on devices {', '.join(devices)}; pytest exit {run.returncode}"


# A test module run by pytest with the plugin: the model cache's placement, measured with CUDA's own counters.
PLACEMENT_TEST = """
import torch
from pytest_longeff.cell.train import weight_bytes
from pytest_longeff.matrix import Cell

def test_only_the_running_model_is_on_the_device(longeff_session):
    s = longeff_session
    first, _ = s.model(Cell("led", "large", 1024, "gov_report"))
    second, _ = s.model(Cell("bigbird", "base", 1024, "gov_report"))
    torch.cuda.synchronize()
    assert all(p.device.type == "cpu" for p in first.model.parameters()), "the idle model stayed on the device"
    assert all(p.device.type == "cuda" for p in second.model.parameters())
    allocated, weights = torch.cuda.memory_allocated(s.device), weight_bytes(second.model)
    print(f"PLACEMENT allocated={allocated} running_weights={weights}")
    assert allocated <= weights * 1.01 + 2**24, (allocated, weights)
"""

# A conftest that makes training fail as CUDA does mid-step (gradients made, then an allocation error) once, at
# the first batch above 1, and notes the device's allocated bytes at the start of each training run.
OOM_CONFTEST = """
import torch
import pytest_longeff.cell.run as run
from pytest_longeff.cell.train import train_step

real_fine_tune, raised = run.fine_tune, []

def fine_tune(built, train, validation, plan):
    print(f"TUNE batch={plan.batch_size} allocated={torch.cuda.memory_allocated(plan.device)}", flush=True)
    if plan.batch_size >= 2 and not raised:
        raised.append(1)
        train_step(built, train, list(range(plan.batch_size)), plan.device, 1)
        raise torch.OutOfMemoryError("CUDA out of memory (raised by the validation script)")
    return real_fine_tune(built, train, validation, plan)

run.fine_tune = fine_tune
"""


def part_gpu_paths(rehearse: bool, workdir: Path, gpus: int) -> Part:
    title = "(e) GPU paths: model placement, out-of-memory retry, workers beyond the GPUs refused"
    if rehearse:
        return title, None, ("skipped in a CPU rehearsal: these are CUDA paths (tests/unit/cell and tests/acceptance "
                             "cover them with fakes)")
    lines, oks = [], []
    tiny = ["--longeff-profile", "tiny", "--longeff-device", "cuda", "--longeff-energy", "none", "--longeff-idle-s",
            "0", "-p", "no:cacheprovider", "-q", "-s"]
    (workdir / "placement").mkdir()
    (workdir / "placement" / "test_placement.py").write_text(PLACEMENT_TEST, encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "pytest", str(workdir / "placement"), *tiny], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    found = [line for line in run.stdout.splitlines() if line.startswith("PLACEMENT")]
    oks.append(run.returncode == 0)
    lines.append(f"- placement: pytest exit {run.returncode}; {found[0] if found else run.stdout[-800:]}")
    oom = workdir / "oom"
    oom.mkdir()
    (oom / "conftest.py").write_text(OOM_CONFTEST, encoding="utf-8")
    (oom / "test_cells.py").write_text((ROOT / "benchmarks" / "test_cells.py").read_text(encoding="utf-8"),
                                       encoding="utf-8")
    report = workdir / "oom.json"
    run = subprocess.run([sys.executable, "-m", "pytest", str(oom), *tiny, "--longeff-train-budget", "steps=2",
                          "--longeff-json", str(report), "-k", "led-base-1024-gov_report"],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    tunes = [line for line in run.stdout.splitlines() if line.startswith("TUNE")]
    record = json.loads(report.read_text(encoding="utf-8"))["records"][0] if report.is_file() else {}
    search = record.get("batch_search") or {}
    allocated = [int(t.rsplit("=", 1)[1]) for t in tunes]
    retried = (record.get("status") == "passed" and "out_of_memory" in search and len(allocated) == 2
               and allocated[1] <= allocated[0])
    oks.append(retried)
    lines.append(f"- out-of-memory retry: status {record.get('status')}, source {search.get('source')!r}, "
                 f"allocated at the start of each training run {allocated} (the retry must not hold the failed "
                 "step's gradients)")
    workers = gpus + 1
    run = subprocess.run([*_cells_command(False, workdir / "refused.json"), "-n", str(workers)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    refused = f"{workers} pytest-xdist workers for {gpus} GPU(s)" in run.stdout + run.stderr
    oks.append(refused and run.returncode != 0)
    lines.append(f"- -n {workers} on {gpus} GPU(s): {'refused with the reason' if refused else 'NOT refused'}; "
                 f"pytest exit {run.returncode}")
    return title, all(oks), "\n".join(lines)


def _recent_command(rehearse: bool, report: Path) -> list[str]:
    """One cell of each family added after the study, at real size on the GPU (8192 tokens; the decoder-only family
    at SDPA, its default), or tiny on the CPU in a rehearsal."""
    if rehearse:
        matrix = ["--longeff-profile", "tiny", "--longeff-tiny-weights", "random", "--longeff-lengths", "1024",
                  "--longeff-memory-budget", "512MiB", "--longeff-device", "cpu", "--longeff-energy", "none",
                  "--longeff-idle-s", "0"]
    else:
        matrix = ["--longeff-profile", "dims", "--longeff-lengths", "8192", "--longeff-memory-budget", "48GiB",
                  "--longeff-precision", "bf16"]
    return [sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_cells.py"), "-q", "-p", "no:cacheprovider",
            *matrix, "--longeff-families", "llama,longt5,pegasus_x", "--longeff-sizes", "base",
            "--longeff-tasks", "niah_single", "--longeff-train-budget", "steps=3", "--longeff-eval-samples", "2",
            "--longeff-repeats", "2", "--longeff-batch-reset", "--longeff-json", str(report)]


def _phase_row(r: dict[str, Any], budget: int) -> tuple[list[str], bool]:
    ph = r.get("phases") or {}
    kv = (ph.get("kv_cache") or {}).get("ratio")
    check = (ph.get("check") or {}).get("ratio")
    train = r.get("train") or {}
    peak = train.get("peak_memory_bytes")
    ok = (r.get("status") == "passed" and isinstance(peak, int) and peak <= budget and isinstance(kv, float)
          and abs(kv - 1) <= 0.05)
    fmt = lambda v, spec: "n/a" if not isinstance(v, (int, float)) else format(v, spec)  # noqa: E731
    return [str(r.get("id")), str(r.get("status")), str(r.get("batch_size")),
            fmt(peak / 2**30 if isinstance(peak, int) else None, ".2f"),
            fmt((ph.get("prefill") or {}).get("tokens_per_s"), ",.0f"),
            fmt((ph.get("decode") or {}).get("tokens_per_s"), ",.1f"),
            fmt(((ph.get("decode") or {}).get("ttft_s") or {}).get("p50"), ".4f"), fmt(kv, ".3f"),
            fmt(check, ".3f"), "PASS" if ok else f"FAIL ({r.get('reason') or 'see figures'})"], ok


def part_recent(rehearse: bool, workdir: Path) -> Part:
    title = ("(f) the families added after the study at real size: one cell each at 8192 tokens, within the budget, "
             "KV cache within 5 % of its formula; prefill + decode against the generation")
    report = workdir / "recent.json"
    t0 = time.perf_counter()
    run = subprocess.run(_recent_command(rehearse, report), capture_output=True, text=True, cwd=ROOT, check=False)
    if not report.is_file():
        return title, False, f"no report; pytest said:\n\n```\n{run.stdout[-3000:]}{run.stderr[-2000:]}\n```"
    doc = json.loads(report.read_text(encoding="utf-8"))
    budget = int(doc["settings"]["memory_budget_bytes"])
    rows, oks = [], []
    for record in doc["records"]:
        row, ok = _phase_row(record, budget)
        rows.append(row)
        oks.append(ok)
    table = ["| cell | status | batch | train peak GiB | prefill tok/s | decode tok/s | TTFT p50 s | KV / formula | "
             "(prefill + decode) / generation | result |", "|---|---|---|---|---|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    body = "\n".join(table) + f"\n\nwall time {time.perf_counter() - t0:.0f} s; pytest exit {run.returncode}"
    return title, None if rehearse else (len(oks) == 3 and all(oks)), body


def environment() -> list[str]:
    import platform

    import torch
    import transformers

    import pytest_longeff

    lines = [f"- date: {dt.date.today().isoformat()}", (f"- python {platform.python_version()}, torch "
             f"{torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
             f"pytest-longeff {pytest_longeff.__version__}")]
    for i in range(torch.cuda.device_count()):
        lines.append(f"- GPU {i}: {torch.cuda.get_device_name(i)}")
    try:
        import pynvml

        pynvml.nvmlInit()
        lines.append(f"- NVIDIA driver {pynvml.nvmlSystemGetDriverVersion()}")
    except Exception as exc:  # noqa: BLE001 - any NVML failure only means the driver line is missing
        lines.append(f"- NVIDIA driver: not readable ({type(exc).__name__})")
    return lines


def run_all(rehearse: bool, workdir: Path) -> tuple[list[Part], list[str]]:
    import torch

    parts: list[Part] = [part_energy(rehearse, workdir)]
    memory, doc = part_memory(rehearse, workdir)
    parts.append(memory)
    led: dict[str, Any] = next((r for r in doc.get("records", []) if str(r.get("id", "")).startswith("led-base")), {})
    parts.append(part_overhead(rehearse, int(led.get("batch_size") or 1)))
    parts.append(part_xdist(rehearse, workdir, torch.cuda.device_count()))
    parts.append(part_gpu_paths(rehearse, workdir, torch.cuda.device_count()))
    parts.append(part_recent(rehearse, workdir))
    return parts, environment()


def render(parts: list[Part], env: list[str], rehearse: bool) -> str:
    head = "GPU validation" + (" (CPU rehearsal: not a GPU result)" if rehearse else "")
    verdict = {True: "PASS", False: "FAIL", None: "not run"}
    lines = [f"# pytest-longeff {head}", "", *env, "", "| part | result |", "|---|---|"]
    lines += [f"| {title} | {verdict[ok]} |" for title, ok, _ in parts]
    for title, ok, body in parts:
        lines += ["", f"## {title}: {verdict[ok]}", "", body]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, runner: Callable[[bool, Path], tuple[list[Part], list[str]]] = run_all) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rehearse", action="store_true", help="run the steps at tiny size on the CPU")
    parser.add_argument("--out", type=Path, default=None, help="where the Markdown goes (default docs/...)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "docs" / f"gpu-validation-{dt.date.today().isoformat()}.md"
    with tempfile.TemporaryDirectory() as tmp:
        parts, env = runner(args.rehearse, Path(tmp))
    text = render(parts, env, args.rehearse)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written: {out}")
    return 1 if any(ok is False for _, ok, _ in parts) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
