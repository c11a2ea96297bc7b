"""Search ranges declared as data, and the space that samples them define-by-run.

A :class:`Range` is one config path's range: a float (``low``, ``high``, ``log``), an int
(``low``, ``high``, ``int: true``) or ``choices``, with an optional condition ``when`` on
parameters suggested before it (``{"sched/name": "warmup_cosine"}``; a list of values means any
of them). A number range with ``low == high`` is that one value: a path whose conditional ranges
each pin one value (``clip/threshold`` 1.0 for norm, 0.01 for AGC) must be written so, since
Optuna refuses one parameter name with different categorical choices in a study, while float
ranges of one name may differ. One path may carry several conditional ranges; the first whose
condition holds is the one sampled. ``choices: "*"`` stands for every name of the path's registry
(:func:`ptycho_model.config.choices`), resolved when the space is resolved.

A :class:`DeclaredSpace` is an ordered tuple of ranges. Called with an Optuna trial it makes, in
order, the ``trial.suggest_*`` call of every range whose condition holds: the define-by-run calls
a hand-written space makes, so TPE sees conditional parameters as usual. It is plain data:
picklable by value (Ray snapshots the searcher with it), printable and written to ``spec.json``.

:func:`override` lays a spec file's ``search.params`` over a space; :func:`check` validates a
resolved space against the config validator. Both raise
:class:`ptycho_model.errors.ConfigError` naming ``search.params.<path>``, the value and what is
allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from ptycho_model.config import REGISTRIES, RunConfig, choices, closest, known_paths
from ptycho_model.errors import ConfigError

__all__ = ["ALL", "DeclaredSpace", "Range", "check", "override"]

ALL = "*"  # choices: every name of the path's registry
_KEYS = ("low", "high", "log", "int", "choices", "when")


def _where(path: str) -> str:
    return f"search.params.{path}"


@dataclass(frozen=True)
class Range:
    """One config path's range, optionally conditional on parameters suggested before it."""

    path: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    choices: tuple[Any, ...] | str | None = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def categorical(self) -> bool:
        return self.choices is not None

    def holds(self, chosen: dict[str, Any]) -> bool:
        """Whether this range applies, given the values suggested so far."""
        return all(p in chosen and chosen[p] in values for p, values in self.when)

    def options(self) -> tuple[Any, ...]:
        """A categorical range's choices, ``"*"`` read from the path's registry."""
        if self.choices is None:
            raise TypeError(f"{self.path}: a number range has no choices")
        return choices(self.path) if self.choices == ALL else tuple(self.choices)

    def bounds(self) -> tuple[float, float]:
        """A number range's ``(low, high)``."""
        if self.low is None or self.high is None:
            raise TypeError(f"{self.path}: a categorical range has no bounds")
        return self.low, self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.categorical:
            return trial.suggest_categorical(self.path, self.options())
        low, high = self.bounds()
        if self.int:
            return trial.suggest_int(self.path, int(low), int(high), log=self.log)
        return trial.suggest_float(self.path, float(low), float(high), log=self.log)

    def resolved(self) -> Range:
        """This range with ``choices: "*"`` replaced by the registry's names."""
        return replace(self, choices=choices(self.path)) if self.choices == ALL else self

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.categorical:
            d["choices"] = self.choices if self.choices == ALL else list(self.options())
        else:
            d.update(low=self.low, high=self.high)
            if self.log:
                d["log"] = True
            if self.int:
                d["int"] = True
        if self.when:
            d["when"] = {p: v[0] if len(v) == 1 else list(v) for p, v in self.when}
        return d

    def describe(self) -> str:
        """``[0.0001, 0.05] log`` / ``int [2, 12]`` / ``hybrid | stable_hybrid``, with its when."""
        if self.categorical:
            text = " | ".join(str(c) for c in self.options())
        else:
            text = f"{'int ' if self.int else ''}[{self.low:g}, {self.high:g}]"
            text += " log" if self.log else ""
        if self.when:
            text += "   when " + ", ".join(
                f"{p} in {{{', '.join(map(str, v))}}}" if len(v) > 1 else f"{p} = {v[0]}"
                for p, v in self.when)
        return text

    @classmethod
    def from_dict(cls, path: str, d: Any, base: Range | None = None) -> Range:
        """A range from its spec form; fields ``d`` does not give are taken from ``base`` (the
        named space's range being overridden), its condition included."""
        where = _where(path)
        if not isinstance(d, dict):
            raise ConfigError(f"{where}={d!r} must be a mapping of {', '.join(_KEYS)} "
                              "(or a list of such mappings, each with its when)")
        unknown = [k for k in d if k not in _KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}{closest(unknown[0], _KEYS)}; "
                              f"allowed: {', '.join(_KEYS)}")
        fields_: dict[str, Any] = {} if base is None else {
            k: getattr(base, k) for k in ("low", "high", "log", "int", "choices", "when")}
        if "choices" in d:  # a categorical now: numeric fields no longer apply
            fields_.update(low=None, high=None, log=False, int=False)
            c = d["choices"]
            if c != ALL and (not isinstance(c, (list, tuple)) or not c):
                raise ConfigError(f"{where}: choices={c!r} must be a non-empty list")
            fields_["choices"] = c if c == ALL else tuple(c)
        if "low" in d or "high" in d:
            fields_["choices"] = None
            for k in ("low", "high"):
                v = d.get(k, fields_.get(k))
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"{where}: {k}={v!r} must be a finite number")
                fields_[k] = v
        for k in ("log", "int"):
            if k in d:
                if not isinstance(d[k], bool):
                    raise ConfigError(f"{where}: {k}={d[k]!r} must be true or false")
                fields_[k] = d[k]
        if "when" in d:
            fields_["when"] = _parse_when(path, d["when"])
        r = cls(path=path, **fields_)
        if r.choices is None and (r.low is None or r.high is None):
            raise ConfigError(f"{where}: give low and high (a number range) or choices")
        if not r.categorical:
            low, high = r.bounds()
            if not low <= high:  # low == high: one value (see the module docstring)
                raise ConfigError(f"{where}: low={low!r} must be < high={high!r} (or equal "
                                  "to it: one value)")
            if r.log and low <= 0:
                raise ConfigError(f"{where}: log=true needs low > 0, got low={low!r}")
            if r.int and (low != int(low) or high != int(high)):
                raise ConfigError(f"{where}: int=true needs whole bounds, got "
                                  f"[{low!r}, {high!r}]")
            if r.int:
                r = replace(r, low=int(low), high=int(high))
        return r


def _parse_when(path: str, w: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    if not isinstance(w, dict) or not w:
        raise ConfigError(f"{_where(path)}: when={w!r} must map a searched path to a value or a "
                          "list of values")
    return tuple((p, tuple(v) if isinstance(v, (list, tuple)) else (v,)) for p, v in w.items())


@dataclass(frozen=True)
class DeclaredSpace:
    """A named search space: ranges suggested in order, each where its condition holds."""

    name: str
    ranges: tuple[Range, ...]
    doc: str = field(default="", compare=False)

    def __call__(self, trial: optuna.Trial) -> None:
        chosen: dict[str, Any] = {}
        for r in self.ranges:
            if r.path not in chosen and r.holds(chosen):
                chosen[r.path] = r.suggest(trial)

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(r.path for r in self.ranges))

    def resolved(self) -> DeclaredSpace:
        return replace(self, ranges=tuple(r.resolved() for r in self.ranges))

    def to_dict(self) -> dict[str, Any]:
        """``{path: range}`` or ``{path: [range, ...]}``: the form ``search.params`` takes."""
        out: dict[str, Any] = {}
        for path in self.paths:
            rs = [r.to_dict() for r in self.ranges if r.path == path]
            out[path] = rs[0] if len(rs) == 1 else rs
        return out

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any], doc: str = "") -> DeclaredSpace:
        return override(cls(name, (), doc), d)

    def lines(self) -> list[str]:
        """One line per range, as ``tune-ptycho spaces --show`` prints them."""
        width = max((len(r.path) for r in self.ranges), default=0)
        return [f"  {r.path:{width}s}  {r.describe()}" for r in self.ranges]


def override(space: DeclaredSpace, params: dict[str, Any] | None) -> DeclaredSpace:
    """``space`` with ``search.params`` laid over it: a path it has gets its range replaced
    (fields not given are kept, the condition included), a list replaces all of a path's
    conditional ranges, a path it lacks is added at the end."""
    if not params:
        return space
    if not isinstance(params, dict):
        raise ConfigError(f"search.params={params!r} must map config paths to ranges")
    known = known_paths()
    ranges = list(space.ranges)
    for path, spec in params.items():
        if path not in known:
            raise ConfigError(f"{_where(path)}: unknown config path {path!r}"
                              f"{closest(str(path), known)}; `tune-ptycho paths` lists them")
        mine = [r for r in ranges if r.path == path]
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{_where(path)}: an empty list; give at least one range")
            new = [Range.from_dict(path, s) for s in spec]
        elif len(mine) > 1 and "when" not in (spec if isinstance(spec, dict) else {}):
            conds = "; ".join(r.describe() for r in mine)
            raise ConfigError(f"{_where(path)} has {len(mine)} conditional ranges ({conds}): "
                              "give a list of ranges, each with its when")
        elif len(mine) > 1:
            when = _parse_when(path, spec["when"])
            match = [r for r in mine if r.when == when]
            new = [Range.from_dict(path, spec, base=match[0] if match else None)]
            if match:  # replace just that conditional range
                i = ranges.index(match[0])
                ranges[i] = new[0]
                continue
            new = mine + new
        else:
            new = [Range.from_dict(path, spec, base=mine[0] if mine else None)]
        if mine:
            i = ranges.index(mine[0])
            ranges = [r for r in ranges if r.path != path]
            ranges[i:i] = new
        else:
            ranges += new
    return replace(space, ranges=tuple(ranges))


def check(space: DeclaredSpace, base: RunConfig) -> None:
    """Refuse a space that could suggest a value the config validator rejects.

    Every ``when`` must name a parameter the space searches, declared before it; a registry
    path's choices must be registry names; each bound and each choice, applied to ``base`` with
    its range's condition, must pass :meth:`RunConfig.with_updates` (``optim/lr`` low 0, a warmup
    that does not fit ``train/max_epochs``, ...)."""
    seen: list[str] = []
    for r in space.ranges:
        where = _where(r.path)
        for p, _ in r.when:
            if p not in space.paths:
                raise ConfigError(f"{where}: when names {p!r}, which is not searched"
                                  f"{closest(p, space.paths)}; searched: {', '.join(space.paths)}")
            if p not in seen:
                raise ConfigError(f"{where}: when names {p!r}, which is declared after it; "
                                  "declare the condition's parameter first")
        if r.path in REGISTRIES and r.categorical and r.choices != ALL:
            bad = [c for c in r.options() if c not in choices(r.path)]
            if bad:
                raise ConfigError(f"{where}: choices {bad} are not {r.path} names; choose from "
                                  f"{list(choices(r.path))}")
        values = r.options() if r.categorical and r.choices != ALL else (
            () if r.categorical else r.bounds())
        cond = {p: v[0] for p, v in r.when}
        for v in values:
            try:
                base.with_updates({**cond, r.path: v})
            except ConfigError as e:
                raise ConfigError(f"{where}: the value {v!r} is not allowed: {e}") from None
        seen.append(r.path)
