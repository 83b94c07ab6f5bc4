from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_longeff.report.findings import (
    EXAMPLES_FIELD,
    MIN_REL_COST,
    MIN_SCORE_POINTS,
    NO_EXAMPLES_REASON,
    PERMUTATION_EXACT_UP_TO,
    PERMUTATION_SAMPLES,
    PERMUTATION_SEED,
    RANDOM_INIT_REASON,
    TOO_FEW_EXAMPLES,
    Finding,
    accuracy_meaningful,
    accuracy_words,
    cell_meaning,
    claim_line,
    cost_sign,
    example_scores,
    findings,
    paired_permutation,
    terminal_lines,
)

LED_CLAIM, ROUTE_CLAIM, SPEED_CLAIM, QA_CLAIM = "LED", "for summarization", "a bigger model", "for QA"
STEPS = {"kind": "steps", "steps": 4}


def _cell(family: str, size: str, seq_len: int, task: str, score: float, train: float, infer: float | None = None,
          *, profile: str = "paper", energy: bool = False, batch: int = 1, tput: float = 1.0,
          ci: tuple[float, float] | None = None, examples: Sequence[float] | None = (),
          samples: tuple[int, int] = (4, 3), budget: dict[str, Any] = STEPS, stopped_by: str = "steps",
          **extra: Any) -> dict[str, Any]:
    """A passed cell; ``train``/``infer`` are joules when ``energy`` else seconds (the other figure is 1.0), over
    ``samples`` (training, inference). ``examples``: per-example F1 (empty: eight examples scoring ``score``; None:
    no per-example scores recorded), whose mean must be ``score``."""
    infer = train if infer is None else infer
    per_example = [score] * 8 if examples is not None and not examples else examples
    assert per_example is None or math.isclose(sum(per_example) / len(per_example), score)

    def window(cost: float, n: int) -> dict[str, Any]:
        return {"time_s": 1.0 if energy else cost, "energy_j": cost if energy else None, "energy_valid": energy,
                "samples": n}

    stats = {"n": 5, "median": tput, "ci95": list(ci)} if ci is not None else None
    cell = {"family": family, "size": size, "seq_len": seq_len, "task": task, "status": "passed",
            "profile": profile, "batch_size": batch, "train_budget": budget, "accuracy": {"score": score},
            "train": {**window(train, samples[0]), "stopped_by": stopped_by},
            "inference": {**window(infer, samples[1]), "samples_per_s": tput, "samples_per_s_stats": stats}, **extra}
    if per_example is not None:
        cell[EXAMPLES_FIELD] = {f"{task}-{i}": {"f1": v} for i, v in enumerate(per_example)}
    return cell


def _finding(records: list[dict[str, Any]], prefix: str) -> Finding:
    (found,) = [f for f in findings(records) if f.claim.startswith(prefix)]
    return found


# -- the rules' building blocks -----------------------------------------------------------------------------------
def test_noise_thresholds_make_small_differences_ties() -> None:
    assert (MIN_SCORE_POINTS, MIN_REL_COST) == (1.0, 0.05)
    # relative to the larger: |1.0 - 1.04| / 1.04 = 3.8 % is a tie, |1.0 - 1.06| / 1.06 = 5.7 % is not
    assert [cost_sign(1.0, 1.04), cost_sign(1.0, 1.06), cost_sign(2.0, 1.0), cost_sign(0.0, 0.0)] == [0, 1, -1, 0]


def _f1(*values: float) -> dict[str, dict[str, float]]:
    return {f"ex{i}": {"f1": v} for i, v in enumerate(values)}


def _rouge(*rows: tuple[float, float, float]) -> dict[str, dict[str, float]]:
    return {f"ex{i}": {"rouge1": r1, "rouge2": r2, "rougeL": rl} for i, (r1, r2, rl) in enumerate(rows)}


def test_the_exact_p_value_is_the_share_of_swaps_as_extreme_as_observed() -> None:
    # 5 examples, each 10 points in A's favour: of the 2^5 = 32 ways to swap the examples' cells, only "none
    # swapped" (+10) and "all swapped" (-10) reach |10|; every other way mixes + and - and lands nearer 0
    d = paired_permutation(_f1(50, 20, 80, 35, 60), _f1(40, 10, 70, 25, 50))
    assert d is not None and (d.examples, d.exact) == (5, True)
    assert (d.difference, d.p_value) == pytest.approx((10.0, 2 / 32)) and d.sign == 0  # 0.0625: not below 0.05
    # differences +10, +20, +30, -5 (mean 13.75): |sum of +-10 +-20 +-30 +-5| >= 55 only for +-(10 + 20 + 30 + 5)
    # and +-(10 + 20 + 30 - 5), 4 of the 16 ways
    mixed = paired_permutation(_f1(10, 20, 30, 0), _f1(0, 0, 0, 5))
    assert mixed is not None and (mixed.difference, mixed.p_value) == pytest.approx((13.75, 4 / 16))
    six = paired_permutation(_f1(*[50.0] * 6), _f1(*[40.0] * 6))  # 2/64 = 0.03125: the fewest examples that can
    assert six is not None and six.p_value == pytest.approx(2 / 64) and six.sign == 1
    tiny = paired_permutation(_f1(*[30.5] * 8), _f1(*[30.0] * 8))  # beyond noise, under the 1-point minimum
    assert tiny is not None and tiny.p_value == pytest.approx(2 / 256) and tiny.sign == 0
    # floating-point ties count: 0.3 points apart in each of 12 examples is exactly as extreme both ways round
    ties = paired_permutation(_f1(*[0.1 * i for i in range(12)]), _f1(*[0.1 * i + 0.3 for i in range(12)]))
    assert ties is not None and ties.p_value == pytest.approx(2 / 4096)


def test_the_exact_p_value_of_rouge_matches_a_brute_force_over_the_geometric_mean() -> None:
    rng = random.Random(7)
    rows_a = [(rng.uniform(20, 60), rng.uniform(0, 20), rng.uniform(15, 50)) for _ in range(7)]
    rows_b = [(rng.uniform(20, 60), rng.uniform(0, 20), rng.uniform(15, 50)) for _ in range(7)]

    def score(rows: Sequence[tuple[float, float, float]]) -> float:
        return math.prod(sum(col) / len(rows) for col in zip(*rows, strict=True)) ** (1 / 3)

    observed = score(rows_a) - score(rows_b)
    stats = []
    for swapped in itertools.product((False, True), repeat=7):
        a = [rb if s else ra for ra, rb, s in zip(rows_a, rows_b, swapped, strict=True)]
        b = [ra if s else rb for ra, rb, s in zip(rows_a, rows_b, swapped, strict=True)]
        stats.append(score(a) - score(b))
    expected = sum(abs(s) >= abs(observed) - 1e-9 for s in stats) / 2 ** 7
    d = paired_permutation(_rouge(*rows_a), _rouge(*rows_b))
    assert d is not None and (d.difference, d.p_value) == pytest.approx((observed, expected))


def test_at_five_or_fewer_examples_no_difference_counts() -> None:
    # every example favouring A by 30 points: the smallest p there is, 2 / 2^n, is not below 0.05 up to n = 5
    assert TOO_FEW_EXAMPLES == 5
    for n in range(2, 6):
        d = paired_permutation(_f1(*[40.0] * n), _f1(*[10.0] * n))
        assert d is not None and d.p_value == pytest.approx(2 / 2 ** n) and d.sign == 0, n
    # 33 points, all from one example: swapping the two tied examples changes nothing, so half the 8 ways give +33
    # and half -33, every one as extreme as observed
    flipped = paired_permutation(_f1(100, 0, 0), _f1(0, 0, 0))
    assert flipped is not None and flipped.difference == pytest.approx(100 / 3)
    assert flipped.p_value == pytest.approx(1.0) and flipped.sign == 0


def _null_cell(rng: random.Random, n: int, metric: str) -> dict[str, dict[str, float]]:
    """Per-example scores of a cell drawn independently of any other: F1 with many 0s and 100s (ties), or ROUGE
    components with ROUGE-2 and ROUGE-L below ROUGE-1."""
    if metric == "f1":
        return _f1(*[rng.choice((0.0, 0.0, 100.0, rng.uniform(0, 100), rng.uniform(0, 100))) for _ in range(n)])
    rows = [(r1, r1 * rng.uniform(0, 0.6), r1 * rng.uniform(0.6, 1)) for r1 in (rng.uniform(10, 60) for _ in range(n))]
    return _rouge(*rows)


@pytest.mark.parametrize("metric", ["f1", "rouge"])
@pytest.mark.parametrize("n", [3, 5, 8, 20])
def test_with_no_real_difference_a_difference_counts_at_most_about_five_percent_of_the_time(n: int,
                                                                                             metric: str) -> None:
    """The false-positive rate, by simulation: two cells whose per-example scores are drawn from one distribution.
    On these very draws the paired bootstrap this test replaced called a difference real in 14 % (F1) and 25 %
    (ROUGE) of the runs at 3 examples, 17 and 16 % at 5, 11 and 13 % at 8, 7 % at 20."""
    rng, runs = random.Random(100 * n + len(metric)), 2000
    counted = 0
    for _ in range(runs):
        d = paired_permutation(_null_cell(rng, n, metric), _null_cell(rng, n, metric))
        assert d is not None and d.examples == n
        counted += d.sign != 0
    assert counted / runs <= 0.06, counted / runs
    if n <= TOO_FEW_EXAMPLES:
        assert counted == 0


def test_a_real_difference_over_twenty_examples_is_found() -> None:
    rng = random.Random(3)
    b = [rng.uniform(20, 60) for _ in range(20)]
    d = paired_permutation(_f1(*[x + 15 + rng.gauss(0, 5) for x in b]), _f1(*b))
    assert d is not None and not d.exact and d.p_value < 0.001 and d.sign == 1  # Monte Carlo: at least 1/10001
    rows = [(r1, r1 / 3, r1 * 0.8) for r1 in (rng.uniform(20, 50) for _ in range(20))]
    better = [(r1 + 8 + rng.gauss(0, 3), r2 + 4, rl + 6) for r1, r2, rl in rows]
    rouge = paired_permutation(_rouge(*better), _rouge(*rows))
    assert rouge is not None and rouge.p_value < 0.001 and rouge.sign == 1
    worse = paired_permutation(_rouge(*rows), _rouge(*better))
    assert worse is not None and worse.sign == -1


def test_the_monte_carlo_p_value_is_seeded_and_counts_the_observed_arrangement() -> None:
    rng = random.Random(4)
    a, b = _f1(*[rng.uniform(0, 100) for _ in range(30)]), _f1(*[rng.uniform(0, 100) for _ in range(30)])
    first, again = paired_permutation(a, b), paired_permutation(a, b)
    assert first is not None and first == again and not first.exact
    few = paired_permutation(_f1(*[50.0] * 30), _f1(*[40.0] * 30), samples=99)
    assert few is not None and few.p_value == pytest.approx(1 / 100)  # no random swap reaches it: (0 + 1) / (99 + 1)
    assert (PERMUTATION_EXACT_UP_TO, PERMUTATION_SAMPLES, PERMUTATION_SEED) == (16, 10000, 0)


def test_paired_permutation_combines_rouge_components_and_pairs_by_example_id() -> None:
    a = {"x": {"rouge1": 60.0, "rouge2": 0.0, "rougeL": 60.0}, "y": {"rouge1": 40.0, "rouge2": 40.0, "rougeL": 40.0},
         "only-a": {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}}
    b = {"y": {"rouge1": 20.0, "rouge2": 10.0, "rougeL": 20.0}, "x": {"rouge1": 20.0, "rouge2": 10.0, "rougeL": 20.0}}
    # SCROLLS' score: the geometric mean of the averaged components (not the mean of per-example geometric means,
    # which would be 20 for A); "only-a" is not shared, so it is left out
    expected = (50 * 20 * 50) ** (1 / 3) - (20 * 10 * 20) ** (1 / 3)
    d = paired_permutation(a, b)
    assert d is not None and d.examples == 2 and d.difference == pytest.approx(expected)
    assert paired_permutation(_f1(10), _f1(0)) is None  # one shared example: nothing to swap it with
    assert paired_permutation(_f1(10, 20), {"ex0": {"exact_match": 0.0}, "ex1": {"exact_match": 0.0}}) is None
    assert example_scores({EXAMPLES_FIELD: {"a": {"f1": "x"}}}) is None and example_scores({}) is None


def test_accuracy_is_meaningful_for_paper_or_by_the_records_own_flag() -> None:
    assert accuracy_meaningful({"profile": "paper"}) and not accuracy_meaningful({"profile": "tiny"})
    assert not accuracy_meaningful({"profile": "dims"}) and not accuracy_meaningful({})
    assert accuracy_meaningful({"profile": "tiny", "accuracy_meaningful": True})
    assert not accuracy_meaningful({"profile": "paper", "accuracy_meaningful": False})


# -- LED vs Big Bird: each verdict path -----------------------------------------------------------------------------
def test_led_beats_bigbird_holds_when_it_scores_higher_for_less() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0)],
                 LED_CLAIM)
    assert (f.verdict, f.pairs, f.support, f.against, f.ties) == ("holds", 1, 1, 0, 0)
    assert f.cost == ("training: wall time per training sample (s; energy not valid in every compared cell); "
                      "inference: wall time per inference sample (s; energy not valid in every compared cell)")
    assert "1 compared: 1 for, 0 against" in f.evidence and "5%" in f.evidence
    assert "exact paired permutation test over 8 shared validation examples" in f.evidence and "1 point" in f.evidence


def test_led_beats_bigbird_does_not_hold_when_it_scores_lower_for_more() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 20, 2.0), _cell("bigbird", "base", 1024, "qasper", 30, 1.0)],
                 LED_CLAIM)
    assert (f.verdict, f.support, f.against) == ("does not hold", 0, 1)


def test_one_pair_for_and_one_against_is_mixed() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0),
               _cell("led", "base", 2048, "qasper", 20, 2.0), _cell("bigbird", "base", 2048, "qasper", 30, 1.0)]
    f = _finding(records, LED_CLAIM)
    assert (f.verdict, f.pairs, f.support, f.against) == ("mixed", 2, 1, 1)


def test_differences_within_noise_are_ties_and_only_ties_cannot_tell() -> None:
    # 0.5 point < 1 point; 1.04 s vs 1.0 s is 3.8 % < 5 %: every figure tied
    f = _finding([_cell("led", "base", 1024, "qasper", 30.5, 1.04),
                  _cell("bigbird", "base", 1024, "qasper", 30.0, 1.0)], LED_CLAIM)
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "within noise in 1" in f.evidence


def test_random_init_weights_are_not_judged_on_accuracy() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0, profile="tiny"),
               _cell("bigbird", "base", 1024, "qasper", 20, 2.0, profile="tiny")]
    f = _finding(records, LED_CLAIM)
    assert (f.verdict, f.pairs, f.support) == ("not judged", 1, 0) and not f.decided
    assert f.evidence.startswith(RANDOM_INIT_REASON) and "2 of 2 compared cells, profile tiny" in f.evidence
    # a tiny profile with pretrained checkpoints opts in through its records
    opted = [{**r, "accuracy_meaningful": True} for r in records]
    assert _finding(opted, LED_CLAIM).verdict == "holds"


def test_training_and_inference_energy_are_compared_separately_never_summed() -> None:
    # LED: 35 points, 100 J training, 60 J inference; Big Bird: 30 points, 200 J, 50 J.
    # Summed, LED costs 160 J < 250 J and the claim would "hold"; separately LED is cheaper to train (100 < 200)
    # but dearer to run (60 vs 50 J: 16.7 % > 5 %), so the pair's figures disagree: mixed.
    f = _finding([_cell("led", "base", 1024, "gov_report", 35, 100.0, 60.0, energy=True),
                  _cell("bigbird", "base", 1024, "gov_report", 30, 200.0, 50.0, energy=True)], LED_CLAIM)
    assert (f.verdict, f.support, f.against, f.ties) == ("mixed", 0, 0, 0)
    assert f.cost == "training: energy per training sample (J); inference: energy per inference sample (J)"
    assert "train cost LED lower in 1, higher in 0" in f.evidence
    assert "inference cost LED lower in 0, higher in 1" in f.evidence


def test_each_window_uses_energy_only_where_every_compared_cell_measured_it() -> None:
    led = _cell("led", "base", 1024, "qasper", 30, 100.0, energy=True)
    bigbird = _cell("bigbird", "base", 1024, "qasper", 20, 200.0, energy=True)
    bigbird["inference"] = {**bigbird["inference"], "energy_j": None, "energy_valid": False}
    f = _finding([led, bigbird], LED_CLAIM)
    # inference falls back to wall time, 1.0 s in both cells: a tie there, LED better on score and training energy
    assert f.cost == ("training: energy per training sample (J); "
                      "inference: wall time per inference sample (s; energy not valid in every compared cell)")
    assert (f.verdict, f.support) == ("holds", 1)


def test_a_score_gap_from_one_example_flipping_is_within_noise() -> None:
    # 12.5 points apart on average over 8 examples, but all of it is one example: as likely either way round
    f = _finding([_cell("led", "base", 1024, "qasper", 12.5, 1.0, examples=(100, 0, 0, 0, 0, 0, 0, 0)),
                  _cell("bigbird", "base", 1024, "qasper", 0, 1.0, examples=(0,) * 8)], LED_CLAIM)
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "at 5 or fewer examples" not in f.evidence


def test_three_examples_all_favouring_one_cell_cannot_tell() -> None:
    # LED 10 points ahead on each of 3 examples, and cheaper: by chance alone all 3 agree 1 time in 4
    f = _finding([_cell("led", "base", 1024, "qasper", 30, 1.0, examples=(30, 30, 30)),
                  _cell("bigbird", "base", 1024, "qasper", 20, 1.0, examples=(20, 20, 20))], LED_CLAIM)
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert ("scores by an exact paired permutation test over 3 shared validation examples" in f.evidence and
            "at 5 or fewer examples no score difference can be told from noise" in f.evidence)


def test_cells_without_per_example_scores_are_not_judged() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0, examples=None),
               _cell("bigbird", "base", 1024, "qasper", 20, 2.0)]
    f = _finding(records, LED_CLAIM)
    assert (f.verdict, f.pairs, f.support) == ("not judged", 1, 0) and f.evidence.startswith(NO_EXAMPLES_REASON)
    assert "(1 of 2 compared cells have none; 1 comparisons not made)" in f.evidence
    assert claim_line(f).endswith("(no per-example scores: 1 comparison(s) not made)")


def test_costs_are_compared_per_sample_so_that_the_work_is_equal() -> None:
    # LED at batch 4 trains 16 samples in 2 s (0.125 s each), Big Bird at batch 1 trains 4 in 1 s (0.25 s each);
    # LED generates 6 samples in 2 s (0.33 s each), Big Bird 3 in 1.5 s (0.5 s each): LED is cheaper per sample
    # in both windows although its windows are longer
    f = _finding([_cell("led", "base", 1024, "qasper", 30, 2.0, 2.0, batch=4, samples=(16, 6)),
                  _cell("bigbird", "base", 1024, "qasper", 20, 1.0, 1.5, samples=(4, 3))], LED_CLAIM)
    assert (f.verdict, f.support) == ("holds", 1)
    assert "train cost LED lower in 1" in f.evidence and "inference cost LED lower in 1" in f.evidence


def test_training_cost_under_an_epochs_budget_is_per_epoch() -> None:
    epochs = {"kind": "epochs", "epochs": 2, "patience": 3}
    records = [_cell("led", "base", 1024, "qasper", 30, 2.0, 1.0, samples=(16, 3), budget=epochs, stopped_by="epochs"),
               _cell("bigbird", "base", 1024, "qasper", 20, 1.0, 1.0, budget=epochs, stopped_by="epochs"),
               _cell("led", "base", 2048, "qasper", 30, 1.0, 1.0, budget=epochs, stopped_by="patience"),
               _cell("bigbird", "base", 2048, "qasper", 20, 1.0, 1.0, budget=epochs, stopped_by="epochs")]
    f = _finding(records, LED_CLAIM)
    # per epoch LED's 2 s / 2 epochs is dearer than Big Bird's 1 s / 2 (per sample it would be cheaper); an
    # early-stopped cell's epochs are not recorded, so its training cost per epoch is unknown
    assert f.cost.startswith("training: wall time per epoch (s; ")
    assert "train cost LED lower in 0, higher in 1, within noise in 0, unknown in 1" in f.evidence
    assert (f.verdict, f.support, f.against) == ("mixed", 1, 0)


def test_an_early_stopped_cell_is_compared_per_epoch_it_trained() -> None:
    epochs = {"kind": "epochs", "epochs": 4, "patience": 1}
    led = _cell("led", "base", 1024, "qasper", 30, 3.0, 1.0, budget=epochs, stopped_by="patience")
    led["train"]["epochs"] = 1.5  # stopped early: 3 s over 1.5 epochs is 2 s per epoch
    bigbird = _cell("bigbird", "base", 1024, "qasper", 20, 4.0, 1.0, budget=epochs, stopped_by="epochs")
    bigbird["train"]["epochs"] = 4.0  # 1 s per epoch
    f = _finding([led, bigbird], LED_CLAIM)
    assert "train cost LED lower in 0, higher in 1, within noise in 0" in f.evidence and "unknown" not in f.evidence


def test_under_an_energy_budget_the_finding_says_what_energy_per_sample_means() -> None:
    budget = {"kind": "energy", "energy_j": 100.0}
    f = _finding([_cell("led", "base", 1024, "qasper", 30, 100.0, energy=True, samples=(20, 3), budget=budget),
                  _cell("bigbird", "base", 1024, "qasper", 20, 100.0, energy=True, samples=(10, 3), budget=budget)],
                 LED_CLAIM)
    assert f.cost.startswith("training: energy per training sample (J; energy budget: each cell spends about the "
                             "budget, so this says how many samples it bought)")
    assert (f.verdict, f.support) == ("holds", 1)  # 5 J per sample vs 10 J


# -- bigger model vs longer input -----------------------------------------------------------------------------------
def _route(start: float, longer: float, bigger: float, costs: tuple[float, float, float] = (1.0, 3.0, 2.0),
           infer: tuple[float, float, float] | None = None, profile: str = "paper") -> Finding:
    infer = infer or costs
    return _finding([_cell("led", "base", 1024, "gov_report", start, costs[0], infer[0], profile=profile),
                     _cell("led", "base", 2048, "gov_report", longer, costs[1], infer[1], profile=profile),
                     _cell("led", "large", 1024, "gov_report", bigger, costs[2], infer[2], profile=profile)],
                    ROUTE_CLAIM)


def test_bigger_model_is_the_cheaper_route_when_it_buys_more_per_extra_cost() -> None:
    # bigger: +4 points for +1 s = 4 points/s; longer: +2 points for +2 s = 1 point/s (training and inference)
    f = _route(10, 12, 14)
    assert (f.verdict, f.pairs, f.support) == ("holds", 1, 1)


def test_longer_input_only_gaining_accuracy_goes_against_the_claim() -> None:
    f = _route(10, 15, 10.5)  # bigger +0.5 (noise), longer +5
    assert (f.verdict, f.against) == ("does not hold", 1)


def test_neither_route_gaining_accuracy_cannot_tell() -> None:
    f = _route(10, 10.5, 10.9)  # +0.5 and +0.9: both under 1 point, nothing to rank
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "neither route gained beyond the noise in 1" in f.evidence


def test_route_ranked_differently_by_training_and_inference_cost_is_mixed() -> None:
    # gains: bigger +4, longer +2. Training extra: bigger 1 s, longer 2 s -> 4 vs 1 point/s (bigger wins).
    # Inference extra: bigger 4 s, longer 1 s -> 1 vs 2 points/s (longer wins).
    f = _route(10, 12, 14, costs=(1.0, 3.0, 2.0), infer=(1.0, 2.0, 5.0))
    assert (f.verdict, f.support, f.against) == ("mixed", 0, 0)


def test_a_route_gain_from_one_example_flipping_is_no_gain() -> None:
    f = _finding([_cell("led", "base", 1024, "gov_report", 0, 1.0, examples=(0,) * 8),
                  _cell("led", "base", 2048, "gov_report", 0, 3.0, examples=(0,) * 8),
                  _cell("led", "large", 1024, "gov_report", 10, 2.0, examples=(80, 0, 0, 0, 0, 0, 0, 0))], ROUTE_CLAIM)
    assert (f.verdict, f.pairs, f.ties) == ("cannot tell", 1, 1)
    assert "neither route gained beyond the noise in 1" in f.evidence


def test_route_claim_is_not_judged_on_random_weights() -> None:
    assert _route(10, 12, 14, profile="dims").verdict == "not judged"


# -- inference speed: scope and intervals ---------------------------------------------------------------------------
def _speed(task: str, base: float, large: float, base_ci: tuple[float, float] | None = None,
           large_ci: tuple[float, float] | None = None) -> Finding:
    return _finding([_cell("led", "base", 1024, task, 0, 1.0, profile="tiny", tput=base, ci=base_ci),
                     _cell("led", "large", 1024, task, 0, 1.0, profile="tiny", tput=large, ci=large_ci)],
                    SPEED_CLAIM)


def test_speed_claim_holds_without_intervals_beyond_the_minimum_effect() -> None:
    f = _speed("gov_report", 4.0, 1.0)  # not accuracy-based: judged even on random weights
    assert (f.verdict, f.pairs, f.support) == ("holds", 1, 1) and "ratio median 4.00" in f.evidence
    assert _speed("gov_report", 4.0, 3.9).verdict == "cannot tell"  # 2.5 % < 5 %


def test_speed_claim_uses_the_intervals_where_both_cells_have_them() -> None:
    overlapping = _speed("gov_report", 4.0, 3.0, (3.0, 5.0), (2.5, 3.5))  # 25 % apart, but 3.0..3.5 overlaps
    assert (overlapping.verdict, overlapping.ties) == ("cannot tell", 1)
    assert "1 of 1 pairs by 95% intervals" in overlapping.evidence
    apart = _speed("gov_report", 4.0, 3.0, (3.8, 4.2), (2.8, 3.2))
    assert apart.verdict == "holds"
    faster = _speed("gov_report", 3.0, 4.0, (2.8, 3.2), (3.8, 4.2))
    assert faster.verdict == "does not hold"


def test_speed_claim_is_about_summarization_only() -> None:
    f = _speed("qasper", 4.0, 1.0)
    assert (f.verdict, f.pairs) == ("cannot tell", 0) and f.scope.startswith("summarization")


# -- QA: smaller model ------------------------------------------------------------------------------------------------
def test_qa_smaller_model_wins_with_bigger_batches() -> None:
    f = _finding([_cell("led", "base", 1024, "qasper", 20, 1.0, batch=8),
                  _cell("led", "large", 1024, "qasper", 15, 3.0, batch=2)], QA_CLAIM)
    assert (f.verdict, f.pairs) == ("holds", 1) and "base's batch larger in 1 of 1" in f.evidence
    assert f.scope.startswith("QA tasks")


def test_qa_claim_ignores_summarization_pairs() -> None:
    f = _finding([_cell("led", "base", 1024, "gov_report", 20, 1.0), _cell("led", "large", 1024, "gov_report", 15,
                                                                            3.0)], QA_CLAIM)
    assert (f.verdict, f.pairs) == ("cannot tell", 0)


# -- records and the report ----------------------------------------------------------------------------------------
def test_skipped_cells_are_not_evidence() -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0),
               {**_cell("bigbird", "base", 1024, "qasper", 0, 9.0), "status": "skipped"}]
    assert [f.verdict for f in findings(records)] == ["cannot tell"] * 4


@pytest.mark.parametrize("prefix", [LED_CLAIM, ROUTE_CLAIM, SPEED_CLAIM, QA_CLAIM])
def test_to_dict_keeps_the_printed_fields_and_adds_the_evidence_fields(prefix: str) -> None:
    records = [_cell("led", "base", 1024, "qasper", 30, 1.0), _cell("bigbird", "base", 1024, "qasper", 20, 2.0)]
    d = _finding(records, prefix).to_dict()
    assert list(d) == ["claim", "verdict", "evidence", "cost", "pairs", "ties", "support", "against", "scope",
                       "thresholds"]
    assert d["thresholds"] == {"score_points": 1.0, "relative_cost": 0.05, "score_significance": 0.05,
                               "permutation_exact_up_to": 16, "permutation_samples": 10000}
    assert d["claim"].startswith(prefix) and isinstance(d["pairs"], int)


# -- the terminal: one line per claim ---------------------------------------------------------------------------------
def _decided_matrix() -> list[dict[str, Any]]:
    return [_cell("led", "base", 1024, "qasper", 30, 1.0, batch=8), _cell("bigbird", "base", 1024, "qasper", 20, 2.0),
            _cell("led", "large", 1024, "qasper", 20, 2.0, batch=2)]


@pytest.mark.parametrize("form", ["objects", "dicts"])
def test_terminal_lines_are_one_line_per_claim_with_verdict_and_counts(form: str) -> None:
    found = findings(_decided_matrix())
    lines = terminal_lines(found if form == "objects" else [f.to_dict() for f in found])
    assert len(lines) == 1 + len(found) and "session.findings" in lines[0] and "HTML page" in lines[0]
    for f, line in zip(found, lines[1:], strict=True):
        assert line.strip().startswith(f"{f.verdict}: ") and len(line) <= 120, line
        assert f.evidence not in line and f.scope not in line  # the detail stays in the JSON and on the page
    led = next(line for line in lines if "LED beats Big Bird" in line)
    assert led.strip() == ("holds: LED beats Big Bird on accuracy at lower energy (1 compared: 1 for, 0 against, "
                           "0 within noise)")
    assert "cannot tell: a bigger model makes inference much slower (no comparable cells)" in lines[3]
    assert claim_line(found[0]) == claim_line(found[0].to_dict())


def test_terminal_lines_of_a_matrix_that_decides_nothing_are_one_line() -> None:
    random = [{**r, "profile": "tiny"} for r in _decided_matrix()]
    (line,) = terminal_lines(findings(random))
    assert line == ("  the seed study's findings: these cells cannot tell (2 cannot tell, 2 not judged; evidence in "
                    "the JSON's session.findings and on the HTML page)")
    not_judged = next(f for f in findings(random) if f.verdict == "not judged")
    assert claim_line(not_judged).endswith("(random-init weights: 1 comparison(s) not made)")


# -- what the scores mean, in the records' words ----------------------------------------------------------------------
def test_accuracy_words_follow_the_records_weights() -> None:
    from pytest_longeff.profiles import PROFILES, TINY_PRETRAINED_MEANING

    pretrained = [{"profile": "tiny", "family": "led", "size": "base", "accuracy_meaning": TINY_PRETRAINED_MEANING,
                   "accuracy_meaningful": True}]
    random = [{"profile": "tiny", "family": "bigbird", "size": "large",
               "accuracy_meaning": PROFILES["tiny"].accuracy_meaning, "accuracy_meaningful": False}]
    assert accuracy_words(pretrained) == f"tiny profile: {TINY_PRETRAINED_MEANING}"
    assert cell_meaning(pretrained[0]) == (True, TINY_PRETRAINED_MEANING)
    words = accuracy_words(random)
    assert "random-init" in words and "not the study's models" in words and "pretrained" not in words
    both = accuracy_words(pretrained * 3 + random)
    assert "[led-base: 3 of 4 cells]" in both and "[bigbird-large: 1 of 4 cells]" in both
    old = {"profile": "tiny", "family": "led", "size": "base"}  # an older record: its profile's words
    assert accuracy_words([old]) == accuracy_words(random) and accuracy_words([]) == ""
    assert accuracy_words([{"profile": "paper"}]).startswith("paper profile: the study reproduced: pretrained")
