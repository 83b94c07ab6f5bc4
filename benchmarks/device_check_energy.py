"""Device check: do the ``nvml`` (energy counter) and ``nvml-power`` (sampled power) meters agree on a real GPU?

Runs a short long-context training load -- a randomly initialised ``LEDForConditionalGeneration`` (d_model 256,
2 encoder + 2 decoder layers, attention window 128, 4 x 4096 input tokens) doing forward+backward+AdamW steps
for about 15 s -- and measures that one window with both meters at once, plus a 2-s idle window first. Prints
both energies, durations, sample counts, their ratio and the GPU's name, driver and power limit.

Run on a machine with an NVIDIA GPU, from the repository root:

    python benchmarks/device_check_energy.py [--seconds 15] [--sample-hz 20]

Exit status: 0 when both readings are valid, 1 when one is not, 2 when there is no usable GPU. Takes < 60 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

# A script run as `python benchmarks/x.py` has benchmarks/ on sys.path, not the repository root; the package
# need not be installed on the GPU machine.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_longeff.energy import EnergyReading, MeterUnavailable, make_meter, measure_idle

BATCH = 4
INPUT_TOKENS = 4096
LABEL_TOKENS = 128
VOCAB = 8192  # small vocabulary: the embedding and LM head are not what this load is about


def build_model(device: str) -> Any:
    """A randomly initialised LED with the shape given in the module docstring, on ``device``."""
    from transformers import LEDConfig, LEDForConditionalGeneration

    config = LEDConfig(
        vocab_size=VOCAB,
        d_model=256,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        attention_window=128,
        max_encoder_position_embeddings=INPUT_TOKENS,
        max_decoder_position_embeddings=LABEL_TOKENS * 2,
    )
    model: Any = LEDForConditionalGeneration(config)
    return model.to(device)


def make_batch(device: str, batch: int = BATCH, tokens: int = INPUT_TOKENS) -> dict[str, Any]:
    """Random token ids with global attention on the first token, as LED summarisation uses."""
    import torch

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, VOCAB, (batch, tokens), generator=generator)
    global_mask = torch.zeros_like(input_ids)
    global_mask[:, 0] = 1
    labels = torch.randint(4, VOCAB, (batch, LABEL_TOKENS), generator=generator)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "global_attention_mask": global_mask.to(device),
        "labels": labels.to(device),
    }


def train_step(model: Any, optimizer: Any, batch: dict[str, Any]) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()


def _line(label: str, reading: EnergyReading) -> str:
    energy = "None" if reading.energy_j is None else f"{reading.energy_j:10.1f} J"
    mean_w = (
        f"{reading.energy_j / reading.time_s:7.1f} W"
        if reading.energy_j is not None and reading.time_s > 0
        else "    n/a"
    )
    gap = "" if reading.max_gap_s is None else f"  max gap {reading.max_gap_s * 1000:.0f} ms"
    legacy = "" if reading.legacy_j is None else f"  legacy (seed formula) {reading.legacy_j:.4f}"
    return (
        f"{label:<11} energy {energy}  time {reading.time_s:7.3f} s  mean {mean_w}  "
        f"samples {reading.samples:4d}{gap}{legacy}  valid={reading.valid}  note: {reading.note}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="length of the measured load (default 15)"
    )
    parser.add_argument("--sample-hz", type=float, default=20.0, help="nvml-power sampling rate (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=2.0, help="idle baseline window (default 2)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            "device_check_energy: no CUDA GPU visible to PyTorch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); run this on an NVIDIA GPU machine.",
            file=sys.stderr,
        )
        return 2
    try:
        counter, counter_warnings = make_meter("nvml", "cuda")
        power, power_warnings = make_meter("nvml-power", "cuda", sample_hz=args.sample_hz)
    except MeterUnavailable as exc:
        print(f"device_check_energy: NVML meters unavailable: {exc}", file=sys.stderr)
        return 2
    for warning in counter_warnings + power_warnings:
        print(f"warning: {warning}")

    try:
        facts = power.describe()
        gpus = facts.get("gpus") or [{}]
        gpu = gpus[0] if isinstance(gpus, list) else {}
        print(f"GPU          {gpu.get('name')} (NVML index {gpu.get('nvml_index')})")
        print(f"driver       {facts.get('driver_version')}")
        print(f"power limit  {gpu.get('power_limit_w')} W")
        print(
            f"clocks       SM {gpu.get('sm_clock_mhz')} MHz, memory {gpu.get('mem_clock_mhz')} MHz (before load)"
        )
        print(f"torch        {torch.__version__}, device {torch.cuda.get_device_name(0)}")
        print(f"counter meter method: {counter.method} (a fallback to nvml-power is reported above)")

        device = "cuda"
        build_start = time.perf_counter()
        model = build_model(device)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = make_batch(device)
        for _ in range(2):  # warm-up: kernel selection and allocator growth stay out of the window
            train_step(model, optimizer, batch)
        torch.cuda.synchronize()
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"model        LED {params_m:.1f} M parameters, built and warmed up in "
            f"{time.perf_counter() - build_start:.1f} s"
        )

        idle = measure_idle(counter, args.idle_seconds)
        idle_w = "n/a" if idle.power_w is None else f"{idle.power_w:.1f} W"
        print(
            f"idle         {idle_w} over {idle.time_s:.2f} s ({idle.method}, valid={idle.valid}): {idle.note}"
        )

        torch.cuda.synchronize()
        counter.start()
        power.start()
        steps = 0
        deadline = time.perf_counter() + args.seconds
        while time.perf_counter() < deadline:
            train_step(model, optimizer, batch)
            steps += 1
            if steps % 4 == 0:
                # Without a sync the CPU races ahead of the queue and the window would end before the work.
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        power_reading = power.stop()
        counter_reading = counter.stop()
    finally:
        counter.close()
        power.close()

    print(f"load         {steps} training steps of {BATCH} x {INPUT_TOKENS} tokens")
    print(_line(counter.method, counter_reading))
    print(_line(power.method, power_reading))
    if counter_reading.energy_j and power_reading.energy_j is not None:
        ratio = power_reading.energy_j / counter_reading.energy_j
        print(f"ratio        nvml-power / {counter.method} = {ratio:.4f} ({(ratio - 1) * 100:+.2f} %)")
    else:
        print("ratio        n/a (a reading is missing)")
    both_valid = counter_reading.valid and power_reading.valid
    print(
        "result       " + ("both readings valid" if both_valid else "a reading is INVALID, see notes above")
    )
    return 0 if both_valid else 1


if __name__ == "__main__":
    sys.exit(main())
