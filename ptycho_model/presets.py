"""Named presets: full sets of defaults (data, physics, model, training), not only sizes.

Costs are measured on a 2-core CPU (docs/calibration.md, BENCHMARKS.md). ``stage_a`` is the upstream
geometry with corrected physics — a GPU workload; ``stage_a_upstream`` switches upstream's quirks
back on (amplitude gain 16, probe / 4, single-corner spectral layer, no set_phi, val = test) to
reproduce the seed numbers (docs/physics.md §7-8).
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import RunConfig
from .errors import lookup


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    overrides: dict

    def config(self) -> RunConfig:
        return RunConfig().with_updates(self.overrides)


_TINY = {
    "data/size": 72, "data/n_lines": 73, "data/N": 32, "data/n_train": 1, "data/n_val": 1,
    "data/n_test": 1,
    "data/stride_train": 4, "data/stride_test": 10, "data/probe": "asymmetric",
    "model/width": 8, "model/blocks": 3, "model/modes": 4,
    "train/max_epochs": 3, "train/batch_size": 16, "train/eval_every": 0, "train/seed": 0,
    "train/val_subset": 16,
}

_CPU = {
    "data/size": 118, "data/n_lines": 120, "data/N": 32, "data/n_train": 1, "data/n_val": 1,
    "data/n_test": 1,
    "data/stride_train": 4, "data/stride_test": 10, "data/probe": "asymmetric",
    "model/width": 16, "model/blocks": 3, "model/modes": 8,
    "optim/lr": 1e-3, "train/max_epochs": 25, "train/batch_size": 16, "train/eval_every": 5,
    "train/seed": 0,
}

_STAGE_A = {
    "data/size": 392, "data/N": 64, "data/n_train": 2, "data/n_val": 1, "data/n_test": 2,
    "data/stride_train": 4, "data/stride_test": 10, "data/set_phi": True,
    "data/probe": "asymmetric",
    "model/width": 32, "model/blocks": 4, "model/modes": 12, "model/spectral_corners": 2,
    "train/max_epochs": 50, "train/batch_size": 16, "train/eval_every": 5, "train/loss": "mae",
    "train/seed": 20260128,
}

_STAGE_A_UPSTREAM = {
    **_STAGE_A,
    "data/set_phi": False, "data/probe": "ideal_disk", "data/val_is_test": True, "data/n_val": 0,
    "physics/amplitude_gain": 16.0, "physics/probe_scale": 4.0, "model/spectral_corners": 1,
}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("tiny", "tests: N=32, 72x72 object, width 8, 3 levels, 3 epochs; <1 s an epoch",
               _TINY),
        Preset("cpu", "a real small study: N=32, 118x118, width 16, modes 8, 25 epochs; ~45 s a "
               "trial on one core", _CPU),
        Preset("stage_a", "upstream Stage A geometry (N=64, 392x392, 2+2 images, width 32, 4 "
               "levels, modes 12, 50 epochs), corrected physics; a GPU workload", _STAGE_A),
        Preset("stage_a_upstream", "stage_a with upstream's quirks: gain 16, probe/4, one-corner "
               "spectral conv, set_phi off, val = test (reproduces the seed numbers)",
               _STAGE_A_UPSTREAM),
    )
}


def get_preset(name: str) -> Preset:
    return lookup(PRESETS, name, "preset")


def preset_config(name: str, updates: dict | None = None) -> RunConfig:
    cfg = get_preset(name).config()
    return cfg.with_updates(updates) if updates else cfg
