"""Pretrain the tiny profile's checkpoints, one per (family, size), and print how well each reads at each length.

    .venv/bin/python benchmarks/pretrain_tiny.py                          # the study's four, into the package
    .venv/bin/python benchmarks/pretrain_tiny.py --models led-base --out ckpt-out
    .venv/bin/python benchmarks/pretrain_tiny.py --steps-scale 0.01 --out ckpt-out   # a smoke run
    .venv/bin/python benchmarks/pretrain_tiny.py --models llama-large --score-only --eval-docs 32 \
        --eval-seed wide --eval-lengths 4096                              # score what ships, on other documents
    .venv/bin/python benchmarks/pretrain_tiny.py --models llama-large --schedule-of llama-base \
        --threads 2 --out ckpt-out                                       # try another model's schedule

Each model starts from its fixed seed and trains by the curriculum of ``pytest_longeff.models.pretrain.SCHEDULES`` on
generated examples of the four default tasks, drawn from seed streams the benchmark's splits never use. The result
(safetensors, tokenizer, ``pretraining.json``) goes to ``OUT/<family>-<size>/``; the default ``OUT`` is the folder
the package ships (``pytest_longeff/models/checkpoints``). Afterwards each model's score at 1024/2048/3072/4096 tokens on
fresh 4,000-word documents is printed (SCROLLS metrics, 8 documents per task).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pytest_longeff.data.tokenizer import lexicon_tokenizer  # noqa: E402
from pytest_longeff.models import pretrain  # noqa: E402 - importable only once ROOT is on sys.path
from pytest_longeff.models.checkpoints import CHECKPOINTS, load_tiny  # noqa: E402
from pytest_longeff.models.families import BUILTIN_FAMILIES  # noqa: E402

LENGTHS = (1024, 2048, 3072, 4096)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="led-base,bigbird-base,led-large,bigbird-large",
                    help="comma-separated family-size pairs (default: the study's four; also longt5-base, "
                         "longt5-large, pegasus_x-base, pegasus_x-large, llama-base, llama-large)")
    ap.add_argument("--out", type=Path, default=CHECKPOINTS, help="where the checkpoints go (default: the package)")
    ap.add_argument("--steps-scale", type=float, default=1.0,
                    help="multiply every stage's steps (at least 1 each): 0.01 for a smoke run")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--eval-docs", type=int, default=8, help="documents per task in the length table")
    ap.add_argument("--eval-seed", default="eval",
                    help="the stream the length table's documents come from (default %(default)s, the one "
                         "length_scores.json was written with)")
    ap.add_argument("--eval-lengths", default=",".join(map(str, LENGTHS)),
                    help="comma-separated input lengths of the length table (default %(default)s)")
    ap.add_argument("--score-only", action="store_true",
                    help="train nothing: print the length table of the checkpoints in --out (by default the "
                         "package's), without writing length_scores.json")
    ap.add_argument("--continue-from", type=Path, default=None,
                    help="a folder holding checkpoints this script made (<family>-<size>/): start each model from its "
                         "checkpoint there and run only its continuation stages (pretrain.CONTINUATIONS)")
    ap.add_argument("--schedule-of", default=None, metavar="PAIR",
                    help="train every model by this family-size pair's schedule instead of its own (a model's own "
                         "continuation, if any, still follows; an experiment: needs an --out other than the "
                         "package's, whose checkpoints each follow their own)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        lengths = tuple(int(n) for n in args.eval_lengths.split(","))
    except ValueError:
        lengths = ()
    if not lengths or any(not 1 <= n <= pretrain.MAX_LEN for n in lengths):
        ap.error(f"--eval-lengths takes comma-separated lengths from 1 to {pretrain.MAX_LEN} (what the checkpoints "
                 f"were pretrained at), not {args.eval_lengths!r}")
    if args.eval_docs < 1:
        ap.error(f"--eval-docs must be at least 1, not {args.eval_docs}")
    # length_scores.json beside a new checkpoint is always the table of the documents the README pages quote.
    other = [o for o, v, d in (("--eval-seed", args.eval_seed, "eval"),
                               ("--eval-lengths", lengths, LENGTHS)) if v != d]
    if other and not args.score_only:
        ap.error(f"{', '.join(other)} only with --score-only (a new checkpoint's length_scores.json is always "
                 f"scored on the default stream at {','.join(map(str, LENGTHS))} tokens)")
    if args.score_only and args.continue_from is not None:
        ap.error("--score-only and --continue-from do not go together: --score-only trains nothing and scores the "
                 "checkpoints in --out")
    if args.schedule_of is not None:
        if args.schedule_of not in pretrain.SCHEDULES:
            ap.error(f"--schedule-of: {args.schedule_of!r} is not one of {', '.join(pretrain.SCHEDULES)}")
        if args.score_only or args.continue_from is not None:
            ap.error("--schedule-of trains from scratch: not with --score-only or --continue-from")
        if args.out.resolve() == CHECKPOINTS.resolve():
            ap.error("--schedule-of needs an --out other than the package's folder: the package's checkpoints each "
                     "follow their own schedule (pretrain.SCHEDULES, checked by the tests)")
    families = {f.name: f for f in BUILTIN_FAMILIES}
    for pair in args.models.split(","):
        name, _, size = pair.partition("-")
        if name not in families or pair not in pretrain.SCHEDULES:
            ap.error(f"--models: {pair!r} is not one of {', '.join(pretrain.SCHEDULES)}")
        stages = tuple(dataclasses.replace(s, steps=max(1, round(s.steps * args.steps_scale)))
                       for s in pretrain.SCHEDULES[args.schedule_of or pair])
        config = pretrain.PretrainConfig(name, size, stages, tasks=pretrain.tasks_for(families[name]),
                                         dropout=pretrain.PRETRAIN_DROPOUT.get(pair))
        if args.score_only:
            if not (args.out / pair / "model.safetensors").is_file():
                ap.error(f"--score-only: no checkpoint of {pair} in {args.out / pair}")
            shipped = load_tiny(families[name], size, len(lexicon_tokenizer()), args.out / pair)
            _print_table(pair, pretrain.length_scores(families[name], shipped, lengths, tasks=config.tasks,
                                                      n=args.eval_docs, seed=args.eval_seed), lengths, args)
            continue
        t0 = time.perf_counter()

        def progress(step: int, total: int, loss: float, pair: str = pair, t0: float = t0) -> None:
            if step % 100 == 0 or step == total:
                print(f"{pair}: step {step}/{total}  loss {loss:.3f}  {time.perf_counter() - t0:.0f} s", flush=True)

        if args.continue_from is not None:
            earlier = args.continue_from / pair
            model = load_tiny(families[name], size, len(lexicon_tokenizer()), earlier)
            made = json.loads((earlier / "pretraining.json").read_text())
            log = pretrain.PretrainLog(seconds=made["seconds"], params=made["params"])
            log.losses = [made["final_loss"]]
            # The record says what the earlier run trained (it may have used --steps-scale or --schedule-of), not
            # this pair's schedule: a checkpoint trained off its schedule cannot pass for a shipped one.
            config = dataclasses.replace(config, stages=tuple(
                pretrain.Stage(s["doc_words"], s["steps"], s["batch"], tuple(s["tasks"]))
                for s in made["config"]["stages"]))
            print(f"{pair}: continuing from {earlier}", flush=True)
        else:
            model, log = pretrain.pretrain(families[name], config, progress)
        continuation = None
        if pair in pretrain.CONTINUATIONS:
            # (No pair is in both PRETRAIN_DROPOUT and CONTINUATIONS: a continuation trains the model it is given,
            # and one loaded with --continue-from has the family's dropout; a test keeps the two apart.)
            more = pretrain.PretrainConfig(name, size, tuple(
                dataclasses.replace(s, steps=max(1, round(s.steps * args.steps_scale)))
                for s in pretrain.CONTINUATIONS[pair]), lr=pretrain.CONTINUATION_LR, warmup=20, tasks=config.tasks)
            model.train()
            model, more_log = pretrain.pretrain(families[name], more, progress, model=model)
            continuation = (more, more_log)
        folder = pretrain.save(model, config, log, args.out / pair, continuation)
        print(f"{pair}: {log.params:,} parameters, {log.seconds:.0f} s of training, saved to {folder}", flush=True)
        shipped = load_tiny(families[name], size, len(lexicon_tokenizer()), folder)  # what ships, as it loads
        table = pretrain.length_scores(families[name], shipped, lengths, tasks=config.tasks, n=args.eval_docs,
                                       seed=args.eval_seed)
        _print_table(pair, table, lengths, args)
        (folder / "length_scores.json").write_text(json.dumps(table, indent=2) + "\n")
    return 0


def _print_table(pair: str, table: dict[str, dict[int, float]], lengths: tuple[int, ...],
                 args: argparse.Namespace) -> None:
    print(f"{pair}: score by input length (SCROLLS metric, or RULER's for the needle tasks; {args.eval_docs} fresh "
          f"documents per task from stream {args.eval_seed!r})")
    print("  task            " + "".join(f"{n:>8}" for n in lengths))
    for task, row in table.items():
        print(f"  {task:<16}" + "".join(f"{row[n]:8.1f}" for n in lengths))


if __name__ == "__main__":
    raise SystemExit(main())
