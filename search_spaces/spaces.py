"""Named search spaces over the run config's ``/``-joined paths, declared as data.

Each space is a :class:`~search_spaces.ranges.DeclaredSpace`: an ordered list of ranges, some
conditional, which Optuna samples define-by-run (calling the space with a trial makes the
``trial.suggest_*`` calls of every range whose condition holds). Presets and the experiment spec
own every value that is not searched; a preset may move a range to its own scale
(``ptycho_model.presets``: the cliff moves with model size) and a spec file's ``search.params``
overrides, narrows or adds ranges (:func:`resolve_space`). The parameter names are config paths
(``optim/lr`` arrives in a Tune trial as ``config["optim"]["lr"]``).

Each is registered by :func:`register_space` in :data:`SPACES` (docs/extending.md says how to
add one). They follow the upstream FNO stability study's plans, whose arms
:mod:`ptycho_model.upstream_arms` lists (:mod:`search_spaces.arms` projects them onto a space):

``stage_a``
    ``model/arch`` x ``clip/algorithm`` (the Stage A shoot-out), with ``model/stable_block`` for
    ``stable_hybrid``: Stage A ran the zero-gamma block (v1) and then reran its stable arm with
    LayerScale (v2), so both blocks are Stage A arms and both are searched.
``lr_guard``
    ``optim/lr``, the schedule (constant | warmup_cosine) and norm clipping. The upstream sweep
    held ``stable_hybrid`` + LayerScale fixed: the architecture comes from the preset or
    ``--set model/arch=stable_hybrid``.
``optimizer``
    adam | adamw | sgd with their own hyperparameters. The upstream sweep held WarmupCosine
    (warmup 5, min ratio 0.05) fixed: the schedule comes from the preset or ``--set``.
``full``
    all of the above, plus ``model/layerscale_init`` for ``stable_hybrid`` with the LayerScale
    block.

Ranges at upstream's scale (float ranges are log-uniform unless marked *uniform*; the cpu and
tiny presets move ``optim/lr`` and ``sched/warmup_epochs``: ``tune-ptycho spaces --show``):

=====================  ========================  =====================================
path                   range                     suggested when
=====================  ========================  =====================================
optim/lr               [1e-5, 3e-3]              always (lr_guard, optimizer, full)
optim/momentum         [0.5, 0.99] *uniform*     optim/name == sgd
optim/weight_decay     [1e-6, 1e-1]              optim/name in {adamw, sgd}
optim/beta1            [0.8, 0.95] *uniform*     optim/name in {adam, adamw}
optim/beta2            [0.9, 0.9999] *uniform*   optim/name in {adam, adamw}
sched/warmup_epochs    int [0, 5]                sched/name == warmup_cosine
sched/min_ratio        [0.01, 0.5]               sched/name == warmup_cosine
clip/threshold         [0.1, 10] (max norm)      clip/algorithm == norm
clip/threshold         [1e-3, 0.3] (AGC lambda)  clip/algorithm == agc
model/stable_block     zero_gamma | layerscale   model/arch == stable_hybrid
model/layerscale_init  [1e-5, 1e-1]              stable_hybrid + layerscale (full only)
=====================  ========================  =====================================

``clip/threshold`` means a different quantity per algorithm, so its range is conditional on the
algorithm; both ranges share the one config path and are log-scaled, which Optuna accepts for one
name (grouped multivariate TPE sees both scales under that name; a joint sample that falls outside
the current branch's range is redrawn by univariate TPE inside it). The config validator rejects
``sched/warmup_epochs >= train/max_epochs`` for warmup_cosine: :func:`resolve_space` refuses a
warmup range that does not fit the preset's epochs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ptycho_model.config import RunConfig
from ptycho_model.errors import lookup

from .ranges import ALL, DeclaredSpace, Range, check, override

__all__ = ["DESCRIPTIONS", "MAX_WARMUP_EPOCHS", "SPACES", "get_space", "register_space",
           "resolve_space"]

MAX_WARMUP_EPOCHS = 5  # upstream's scale: its arms warmed up over 5 epochs
MAX_SEED = 2**31 - 1


def _r(path: str, *, when: dict[str, Any] | None = None, **kw: Any) -> Range:
    return Range.from_dict(path, {**kw, **({"when": when} if when else {})})


# Building blocks, shared by the spaces
_ARCH = (
    _r("model/arch", choices=ALL),
    _r("model/stable_block", choices=ALL, when={"model/arch": "stable_hybrid"}),
)
_LAYERSCALE_INIT = (
    _r("model/layerscale_init", low=1e-5, high=1e-1, log=True,
       when={"model/stable_block": "layerscale"}),
)
_LR = (_r("optim/lr", low=1e-5, high=3e-3, log=True),)
_OPTIMIZER = (
    _r("optim/name", choices=ALL),
    *_LR,
    _r("optim/momentum", low=0.5, high=0.99, when={"optim/name": "sgd"}),
    _r("optim/weight_decay", low=1e-6, high=1e-1, log=True,
       when={"optim/name": ["adamw", "sgd"]}),
    _r("optim/beta1", low=0.8, high=0.95, when={"optim/name": ["adam", "adamw"]}),
    _r("optim/beta2", low=0.9, high=0.9999, when={"optim/name": ["adam", "adamw"]}),
)
_SCHEDULE = (
    _r("sched/name", choices=["constant", "warmup_cosine"]),
    _r("sched/warmup_epochs", low=0, high=MAX_WARMUP_EPOCHS, int=True,
       when={"sched/name": "warmup_cosine"}),
    _r("sched/min_ratio", low=0.01, high=0.5, log=True, when={"sched/name": "warmup_cosine"}),
)


def _clip(algorithms: list[str]) -> tuple[Range, ...]:
    # One path, two meanings: a max gradient norm for norm, the AGC ratio lambda for agc.
    return (
        _r("clip/algorithm", choices=algorithms),
        _r("clip/threshold", low=0.1, high=10.0, log=True, when={"clip/algorithm": "norm"}),
        _r("clip/threshold", low=1e-3, high=0.3, log=True, when={"clip/algorithm": "agc"}),
    )


SPACES: dict[str, DeclaredSpace] = {}  # the search/space names, in registration order
DESCRIPTIONS: dict[str, str] = {}  # name -> its one-line description (tune-ptycho spaces)


def register_space(space: DeclaredSpace) -> DeclaredSpace:
    """Register ``space`` as ``search/space=space.name``, with its ``doc`` as its description.

    ``--space``, ``tune-ptycho spaces``, the spec's validation and ``tune-ptycho paths`` read the
    names from :data:`SPACES` (docs/extending.md, "A search space"). Raises ``ValueError`` for a
    name already registered or a ``doc`` that is not one non-empty line."""
    if space.name in SPACES:
        raise ValueError(f"search/space={space.name!r} is already registered")
    if not space.doc or "\n" in space.doc:
        raise ValueError(f"search/space={space.name!r} needs a one-line doc, got {space.doc!r}")
    SPACES[space.name] = space
    DESCRIPTIONS[space.name] = space.doc
    return space


for _space in (
    DeclaredSpace("stage_a", (*_ARCH, *_clip(["none", "norm", "agc"])),
                  "model/arch (stable_hybrid: zero_gamma | layerscale block) x clip/algorithm "
                  "none | norm | agc, threshold per algorithm (upstream Stage A)"),
    DeclaredSpace("lr_guard", (*_LR, *_SCHEDULE, *_clip(["none", "norm"])),
                  "optim/lr, constant | warmup_cosine (warmup epochs, min ratio), none | norm "
                  "clip; architecture from the preset (upstream LR + gradient-guard sweep)"),
    DeclaredSpace("optimizer", _OPTIMIZER,
                  "adam | adamw | sgd with optim/lr, momentum (sgd), weight decay (adamw, sgd), "
                  "betas (adam, adamw); schedule from the preset (upstream optimizer sweep)"),
    DeclaredSpace("seeds", (_r("train/seed", low=0, high=MAX_SEED, int=True),),
                  "train/seed only: the preset's arm (plus --set overrides) repeated over seeds, "
                  "to measure how often it collapses (upstream's crash-probability protocol)"),
    DeclaredSpace("full", (*_ARCH, *_LAYERSCALE_INIT, *_OPTIMIZER, *_SCHEDULE,
                           *_clip(["none", "norm", "agc"])),
                  "all of stage_a, lr_guard and optimizer, plus model/layerscale_init for "
                  "stable_hybrid with the layerscale block"),
):
    register_space(_space)


def get_space(name: str) -> DeclaredSpace:
    """The named space as declared (upstream's scale, registry choices unresolved)."""
    return lookup(SPACES, name, "search/space")


def _fit_warmup(space: DeclaredSpace, max_epochs: int) -> DeclaredSpace:
    """The declared warmup range cut to ``max_epochs - 1`` (the config validator's bound), so
    that a shorter run (``--max-epochs 8``) still runs its default space; a range the spec's
    ``search.params`` gives is checked as given."""
    top = max(0, max_epochs - 1)
    fitted = []
    for r in space.ranges:
        if r.path == "sched/warmup_epochs" and not r.categorical:
            low, high = r.bounds()
            if high > top:
                r = replace(r, low=min(low, max(0, top - 1)), high=top)
        fitted.append(r)
    return replace(space, ranges=tuple(fitted))


def resolve_space(name: str, base: RunConfig, preset_ranges: dict[str, Any] | None = None,
                  params: dict[str, Any] | None = None) -> DeclaredSpace:
    """The space a study searches: the named space, the preset's ranges laid over the paths it
    has, then the spec's ``search.params`` (which may add paths), registry choices resolved, and
    every range checked against ``base`` (the study's run config)."""
    space = get_space(name)
    if preset_ranges:
        space = override(space, {p: r for p, r in preset_ranges.items() if p in space.paths})
    space = override(_fit_warmup(space, base.train.max_epochs), params).resolved()
    check(space, base)
    return space
