"""Names users type for the built-in strategies, known without importing the code behind them, so that the plugin's
options and help load in every pytest run without the gate or the energy meters."""

from __future__ import annotations

#: The built-in energy meters (``--longeff-energy``); hooks may register more.
ENERGY_CHOICES: tuple[str, ...] = ("auto", "nvml", "nvml-power", "rapl", "estimate", "none")
#: What ``--longeff-fail-on`` gates when a baseline is given and the option is not.
DEFAULT_FAIL_ON = ("train_samples_per_s:10%,inference_samples_per_s:10%,train_samples_per_kj:10%,"
                   "inference_j_per_sample:10%,work:0%")
