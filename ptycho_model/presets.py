"""Named presets: full sets of defaults (data, physics, model, training), not only sizes.

Costs are measured on a 2-core CPU (docs/calibration.md, BENCHMARKS.md). ``stage_a`` is the upstream
geometry with corrected physics — a GPU workload; ``stage_a_upstream`` switches upstream's quirks
back on (amplitude gain 16, probe / 4, single-corner spectral layer, no set_phi, val = test) to
reproduce the seed numbers (docs/physics.md §7-8).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import RunConfig
from .errors import lookup


@dataclass(frozen=True)
class Preset:
    """A preset: its run-config overrides, the search ranges that follow its scale, and its own
    study settings.

    ``search`` moves a named space's range to this scale where the space has that path (the
    learning-rate cliff moves with model size; the warmup must fit the preset's epochs):
    ``{path: {low, high, ...}}`` as a spec file's ``search.params``. ``study`` holds flat spec
    paths (``search/num_samples``, ``scheduler/grace_period``) that ``tune-ptycho run`` starts from.
    ``arms`` are seed arms measured at this scale (flat config paths), offered before upstream's.
    Plain data: the model core knows no search library.
    """

    name: str
    summary: str
    overrides: dict
    search: dict = field(default_factory=dict)
    study: dict = field(default_factory=dict)
    arms: dict = field(default_factory=dict)  # measured arms at this scale, offered first

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
    "optim/lr": 1e-3, "train/max_epochs": 14, "train/batch_size": 16, "train/eval_every": 5,
    "train/seed": 0,
}

# The small models' learning-rate cliff sits far above upstream's scale: at the cpu preset a
# warmup_cosine that climbs past ~1.3e-2 learns, spikes and outputs a constant for good
# (docs/calibration.md, "A real learn-then-collapse at CPU scale"). Their ranges reach past it,
# and their warmup ranges fit their epochs.
_TINY_SEARCH = {
    "optim/lr": {"low": 1e-4, "high": 5e-2, "log": True},
    "sched/warmup_epochs": {"low": 0, "high": 2},
}
_CPU_SEARCH = {
    "optim/lr": {"low": 1e-4, "high": 5e-2, "log": True},
    "sched/warmup_epochs": {"low": 2, "high": 8},
}
# The main job: two measured arms at the cliff, two of upstream's Stage A arms, four sampled
# (the default seed-arm rule: at most half the trials, so a smaller --num-samples gets fewer);
# ASHA's first rung (epoch 10) after the cliff arm's warmup peak (6), spike (7) and flag (8-9).
_CPU_STUDY = {"search/num_samples": 8, "search/n_startup_trials": 4,
              "scheduler/grace_period": 10}
# Upstream's Stage A pattern at this scale (docs/calibration.md): a warmup into a peak LR past
# the cliff learns (0.20 -> 0.12 by epoch 6), spikes at the peak (epoch 7) and outputs a
# constant for good; per-tensor AGC 0.01 on the same schedule survived it with the FFT spectral
# layer and goes flat too with the matmul one (past the cliff the trajectory is chaotic).
_CLIFF = {"model/arch": "hybrid", "optim/name": "adam", "optim/lr": 2e-2, "optim/beta1": 0.9,
          "optim/beta2": 0.999, "sched/name": "warmup_cosine", "sched/warmup_epochs": 6,
          "sched/min_ratio": 0.05}
_CPU_ARMS = {
    "cpu_warmup_cliff": {**_CLIFF, "clip/algorithm": "none"},
    "cpu_warmup_cliff_agc": {**_CLIFF, "clip/algorithm": "agc", "clip/threshold": 0.01},
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
               _TINY, search=_TINY_SEARCH),
        Preset("cpu", "a real small study: N=32, 118x118, width 16, modes 8, 14 epochs; ~40 s a "
               "trial on one core", _CPU, search=_CPU_SEARCH, study=_CPU_STUDY,
               arms=_CPU_ARMS),
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
