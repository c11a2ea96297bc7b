"""The training step's kernels: the spectral layer against neuraloperator's, the step against the
core's peak.

* Peer: forward + backward of every spectral layer a preset's generator holds (its channels,
  modes, spatial size and the preset's batch) through :class:`ptycho_model.spectral.
  SpectralConv2d` and through neuraloperator's ``SpectralConv`` (``pip install -e ".[bench]"``)
  with the weights copied across, after checking both give the same output. Median seconds, and
  the ratio ours / theirs. On this CPU, and on CUDA when there is one.
* Peaks, two of them: the nominal fp32 peak of one core (flops per cycle from its vector flags,
  times its clock), and the measured BLAS peak (the best fp32 matmul GFLOP/s on one thread over
  a sweep of sizes, each the best of 5). The step's fraction of each is printed, with the
  copy bandwidth of one thread and the roofline's ridge point (peak / bandwidth).
* Step: one training step of each preset through the real ``Trainer._train_epoch`` (forward,
  fp32 physics, PINN loss, backward, clipping, optimizer step) on a batch of its
  ``train/batch_size``. FLOPs from ``torch.utils.flop_counter.FlopCounterMode`` (convolutions
  and real matmuls), plus what it does not count: every FFT the step runs (found by a dispatch
  mode, 5 n log2 n per complex transform of n points, 2.5 n log2 n per real one) and the
  complex part of complex matmuls (8 real flops per complex multiply-add, where the counter
  books 2). The achieved GFLOP/s and their fraction of the peak; a profile of the step's self
  time by kernel kind says where the rest goes.
* Options: the step again with the spectral layer's former FFT path and with
  ``train/channels_last``; with ``--options`` also two threads and ``torch.compile`` of the
  generator (tiny and cpu only: minutes of compilation). Each is checked for bit-for-bit
  reproducibility (two fresh runs from the same seed, same losses).

Run ``python bench/kernels.py`` (a few minutes on 2 cores), ``--quick`` for a smoke run.
No Ray.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import math
import statistics
import time
from collections import Counter
from pathlib import Path

import _common  # noqa: F401  (puts the repo on sys.path)
import torch
from _common import banner, table, verdict
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ptycho_model.spectral import SpectralConv2d, kept_rows

# ------------------------------------------------------------------ FLOPs the counter misses
_FFT_OPS = {"_fft_r2c": 2.5, "_fft_c2r": 2.5, "_fft_c2c": 5.0}  # flops / (n log2 n)
_MM_OPS = {"mm", "bmm", "addmm", "baddbmm"}


class HiddenFlops(TorchDispatchMode):
    """Counts what ``FlopCounterMode`` does not: FFTs (analytic, per transform actually run,
    backward included) and the extra real flops of complex matmuls (it books 2 m n k; a complex
    multiply-add is 8 real flops, so 6 m n k more)."""

    def __init__(self) -> None:
        super().__init__()
        self.fft = 0.0
        self.complex_mm = 0.0
        self.calls: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in _FFT_OPS:
            dims = args[1]
            shaped = out if name == "_fft_c2r" else args[0]  # c2r: n is the real output's size
            n = math.prod(shaped.shape[d] for d in dims)
            if n > 1:
                self.fft += _FFT_OPS[name] * shaped.numel() * math.log2(n)
            self.calls[name] += 1
        elif name in _MM_OPS and out.is_complex():
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            self.complex_mm += 6.0 * out.numel() * a.shape[-1]
            self.calls["complex " + name] += 1
        return out


def counted_flops(fn) -> tuple[float, dict[str, float], HiddenFlops]:
    """Run ``fn()`` under both counters: (FlopCounterMode total, its per-op totals, hidden)."""
    hidden = HiddenFlops()
    fc = FlopCounterMode(display=False)
    with fc, hidden:
        fn()
    per_op = {str(k): float(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
    return float(fc.get_total_flops()), per_op, hidden


# ------------------------------------------------------------------ the core's peaks
# fp32 flops per cycle per core by the widest vector FMA the flags show, assuming two FMA pipes
# (AMD Zen 2-4, Intel client and server cores since Haswell; a one-FMA-port AVX-512 part has
# half the avx512f figure): lanes x 2 (multiply-add) x 2 pipes.
_FLOPS_PER_CYCLE = (("avx512f", 64), ("fma", 32), ("avx", 16), ("sse", 8))


def cpu_flags_and_mhz() -> tuple[set[str], float | None, str]:
    """The CPU's flags, its clock in MHz and where the clock came from (the highest of: the
    cpufreq maximum, the model name's "@ x GHz", /proc/cpuinfo's "cpu MHz")."""
    flags: set[str] = set()
    mhz: list[tuple[float, str]] = []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return flags, None, "no /proc/cpuinfo"
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key == "flags" and not flags:
            flags = set(val.split())
        elif key == "cpu mhz" and val.strip():
            mhz.append((float(val), "/proc/cpuinfo cpu MHz"))
        elif key == "model name" and "GHz" in val:
            with contextlib.suppress(ValueError):
                mhz.append((1e3 * float(val.rsplit("@", 1)[-1].replace("GHz", "")),
                            "model name"))
    with contextlib.suppress(OSError, ValueError):
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        mhz.append((int(khz) / 1e3, "cpufreq max"))
    if not mhz:
        return flags, None, "no clock found"
    best = max(mhz)
    return flags, best[0], best[1]


def nominal_peak() -> tuple[float | None, str]:
    """One core's nominal fp32 peak in GFLOP/s from its flags and clock, and how it was got."""
    flags, mhz, source = cpu_flags_and_mhz()
    per_cycle = next(((f, n) for f, n in _FLOPS_PER_CYCLE if f in flags), None)
    if mhz is None or per_cycle is None:
        return None, f"unknown ({source}; flags {'found' if flags else 'not found'})"
    return (per_cycle[1] * mhz / 1e3,
            f"{per_cycle[1]} flop/cycle ({per_cycle[0]}, 2 FMA pipes) x {mhz:.0f} MHz ({source})")


def matmul_peak(n: int, repeats: int) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) fp32 matmul on the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def blas_peak(sizes: list[int], repeats: int) -> tuple[float, list[list]]:
    """The measured BLAS peak: the best GFLOP/s over a sweep of square matmul sizes, each the
    best of ``repeats``; and one table row per size."""
    rows = [[n, matmul_peak(n, repeats)] for n in sizes]
    return max(r[1] for r in rows), rows


def stream_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Best GB/s of one thread copying a ``mib`` MiB fp32 buffer (read + write counted)."""
    n = mib * 2**20 // 4
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * 4 * n / best / 1e9


# ------------------------------------------------------------------ peer: neuraloperator
def spectral_inputs(preset: str) -> list[tuple[str, int, int, int, int]]:
    """(layer name, channels, side, modes, corners) of every SpectralConv2d in the preset's
    generator, as a batch of its train/batch_size meets them (recorded by forward hooks)."""
    from ptycho_model.generators import build_generator
    from ptycho_model.presets import preset_config

    cfg = preset_config(preset)
    model = build_generator(cfg.model, N=cfg.data.N)
    seen: list[tuple[str, int, int, int, int]] = []
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, SpectralConv2d):
            def hook(mod, inp, name=name):
                seen.append((name.removesuffix(".spectral"), inp[0].shape[1], inp[0].shape[-1],
                             mod.modes, mod.corners))
            hooks.append(m.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(torch.zeros(1, 1, cfg.data.N, cfg.data.N))
    for h in hooks:
        h.remove()
    return seen


def neuralop_layer(ours: SpectralConv2d, H: int, W: int):
    """neuraloperator's ``SpectralConv`` with the same modes, parameter count and linear map as
    ``ours`` at (H, W), or (None, reason) when its mode layout cannot express ours.

    For ``n_modes=(m1, m2)`` neuraloperator holds one weight ``(in, out, m1, m2 // 2 + 1)``
    whose rows are the k_y of the fftshifted spectrum, ``-(m1 // 2) .. m1 - m1 // 2 - 1``, and
    whose columns are k_x ``0 .. m2 // 2`` of the rfft; on a spectrum smaller than that it uses
    the weight's centre rows and first columns. Ours holds ``weight_neg`` (k_y = -modes .. -1)
    and ``weight_pos`` (k_y = 0 .. modes-1), columns k_x = 0 .. modes-1, clamped the same way
    (:func:`~ptycho_model.spectral.kept_rows`). So ``n_modes = (2 modes, 2 modes - 1)`` with
    weight ``cat([weight_neg, weight_pos], rows)`` is the same layer, both paying for weight
    rows a small spectrum leaves unused, when the clamped corners are equal (``mh_pos ==
    mh_neg``: every even side here). ``corners=1`` keeps rows ``[0, modes)``, not centred: no
    neuraloperator layout matches it.
    """
    from neuralop.layers.spectral_convolution import SpectralConv

    if ours.corners != 2:
        return None, "corners=1 keeps rows [0, modes): no centred neuraloperator layout"
    (p0, p1, _), (n0, n1, _) = kept_rows(ours.modes, H, 2)
    if p1 - p0 != n1 - n0:
        return None, f"rows +{p1 - p0}/-{n1 - n0} are not centred"
    m = ours.modes
    theirs = SpectralConv(ours.in_channels, ours.out_channels, n_modes=(2 * m, 2 * m - 1),
                          bias=False)
    # factorization=None is tltorch's dense complex tensor: its parameter is ``.tensor``
    wt = getattr(theirs.weight, "tensor", theirs.weight)  # (in, out, 2 m, m) complex
    if tuple(wt.shape[-2:]) != (2 * m, m):
        return None, f"its weight holds {tuple(wt.shape[-2:])} modes, not {(2 * m, m)}"
    with torch.no_grad():  # fftshifted rows: k_y = -m .. -1 first, then 0 .. m - 1
        wt.copy_(torch.cat([ours.weight_neg.detach(), ours.weight_pos.detach()], dim=2))
    return theirs, ""


def time_fwd_bwd(layer, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of forward + backward (input and weight gradients) after a warm-up."""
    g = torch.randn_like(x)  # square layers: out channels = in channels
    times = []
    for i in range(repeats + 1):
        xx = x.detach().requires_grad_(True)
        layer.zero_grad(set_to_none=True)
        _sync(x.device)
        t0 = time.perf_counter()
        layer(xx).backward(g)
        _sync(x.device)
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peer_rows(presets: list[str], device: torch.device, repeats: int) -> list[list]:
    from ptycho_model.presets import preset_config

    rows = []
    for preset in presets:
        B = preset_config(preset).train.batch_size
        for name, ch, side, modes, corners in spectral_inputs(preset):
            torch.manual_seed(0)
            ours = SpectralConv2d(ch, ch, modes, corners).to(device)
            theirs, why = neuralop_layer(ours.cpu(), side, side)
            ours = ours.to(device)
            x = torch.randn(B, ch, side, side, device=device)
            t_ours = time_fwd_bwd(ours, x, repeats)
            if theirs is None:
                rows.append([preset, name, ch, side, modes, B, t_ours * 1e3, None, None, why])
                continue
            theirs = theirs.to(device)
            with torch.no_grad():
                a, b = ours(x), theirs(x)
            err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))
            t_theirs = time_fwd_bwd(theirs, x, repeats)
            rows.append([preset, name, ch, side, modes, B, t_ours * 1e3, t_theirs * 1e3,
                         t_ours / t_theirs, f"{err:.1e}"])
    return rows


# ------------------------------------------------------------------ the training step
def make_trainer(preset: str, data, updates: dict | None = None):
    from ptycho_model.presets import preset_config
    from ptycho_model.train import Trainer

    cfg = preset_config(preset, {"train/device": "cpu", **(updates or {})})
    return Trainer(cfg, data, device="cpu")


def run_steps(tr, x_all: torch.Tensor, steps: int) -> float:
    """Seconds of ``steps`` training steps through ``Trainer._train_epoch`` (one epoch)."""
    tr.x_train = x_all[: steps * tr.cfg.train.batch_size]
    t0 = time.perf_counter()
    tr._train_epoch(tr.epoch + 1)
    return time.perf_counter() - t0


def step_losses(preset: str, data, updates: dict | None, steps: int, prepare=None) -> list[float]:
    """Per-step losses of ``steps`` steps of a fresh Trainer (same seed every call)."""
    tr = make_trainer(preset, data, updates)
    if prepare is not None:
        prepare(tr)
    losses = []
    x_all = tr.x_train
    for s in range(steps):
        tr.x_train = x_all[: tr.cfg.train.batch_size]  # the first batch of a fresh shuffle
        loss, _, _ = tr._train_epoch(s + 1)
        losses.append(loss)
    return losses


def profile_step(tr, x_all: torch.Tensor) -> dict[str, float]:
    """Self CPU seconds of one step, by kernel kind."""
    from torch.profiler import ProfilerActivity, profile

    tr.x_train = x_all[: tr.cfg.train.batch_size]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tr._train_epoch(tr.epoch + 1)
    kinds: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for ev in prof.key_averages():
        kinds[_kind(ev.key)] += ev.self_cpu_time_total / 1e6
        if _kind(ev.key) == "other":
            other[ev.key.removeprefix("aten::")] += ev.self_cpu_time_total / 1e6
    return dict(kinds), other.most_common(4)


def _kind(op: str) -> str:
    name = op.removeprefix("aten::")
    if "conv" in name:
        return "conv"
    if name in _MM_OPS:
        return "matmul"
    if "fft" in name:
        return "fft"
    return "other"


def _op_kind(op: str) -> str:  # FlopCounterMode's op names: aten.convolution, aten.mm, ...
    return _kind(op.split(".")[-1])


# ------------------------------------------------------------------ options of the step
def fft_forward(self: SpectralConv2d, x: torch.Tensor) -> torch.Tensor:
    """The spectral layer's former forward (rfft2, per-corner einsum, Hermitian columns,
    irfft2), kept here to time the step before and after the change of path."""
    B, _, H, W = x.shape
    Wh = W // 2 + 1
    mw = min(self.modes, Wh)
    weights = [self.weight_pos] if self.weight_neg is None else [self.weight_pos, self.weight_neg]
    x_hat = torch.fft.rfft2(x.float(), norm="backward")
    y_hat = x_hat.new_zeros(B, self.out_channels, H, Wh)
    for weight, (r0, r1, w0) in zip(weights, kept_rows(self.modes, H, self.corners), strict=True):
        if r1 > r0:
            w = weight[:, :, w0:w0 + (r1 - r0), :mw]
            y_hat[:, :, r0:r1, :mw] = torch.einsum("bixy,ioxy->boxy", x_hat[:, :, r0:r1, :mw], w)
    neg = (-torch.arange(H)) % H

    def sym(col):
        return 0.5 * (col + col[..., neg, :].conj())

    if W % 2 == 0 and W // 2 < mw:
        y_hat = torch.cat([sym(y_hat[..., :1]), y_hat[..., 1:-1], sym(y_hat[..., -1:])], dim=-1)
    else:
        y_hat = torch.cat([sym(y_hat[..., :1]), y_hat[..., 1:]], dim=-1)
    return torch.fft.irfft2(y_hat, s=(H, W), norm="backward").to(x.dtype)


@contextlib.contextmanager
def former_fft_path():
    new = SpectralConv2d.forward
    SpectralConv2d.forward = fft_forward
    try:
        yield
    finally:
        SpectralConv2d.forward = new


def _compile(tr) -> None:
    tr.model = torch.compile(tr.model)


OPTIONS = {  # name -> (config updates, context, threads, prepare)
    "default": ({}, contextlib.nullcontext, 1, None),
    "former FFT path": ({}, former_fft_path, 1, None),
    "channels_last": ({"train/channels_last": True}, contextlib.nullcontext, 1, None),
    "2 threads": ({}, contextlib.nullcontext, 2, None),
    "torch.compile": ({}, contextlib.nullcontext, 1, _compile),
}


def option_row(preset: str, data, option: str, steps: int, base_s: float,
               base_losses: list[float], repro_steps: int) -> list:
    updates, ctx, threads, prepare = OPTIONS[option]
    torch.set_num_threads(threads)
    try:
        with ctx():
            tr = make_trainer(preset, data, updates)
            t_prep = time.perf_counter()
            if prepare is not None:
                prepare(tr)
            x_all = tr.x_train
            run_steps(tr, x_all, 1)  # warm-up (for torch.compile: the compilation)
            warm_s = time.perf_counter() - t_prep
            step_s = run_steps(tr, x_all, steps) / steps
            a = step_losses(preset, data, updates, repro_steps, prepare)
            b = step_losses(preset, data, updates, repro_steps, prepare)
    finally:
        torch.set_num_threads(1)
    same = a == b
    diff = max(abs(u - v) for u, v in zip(a, base_losses, strict=False)) if base_losses else 0.0
    return [preset, option, step_s * 1e3, base_s / step_s if base_s else 1.0,
            "yes" if same else "NO", f"{diff:.1e}", warm_s], a


# ------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="tiny,cpu,stage_a",
                   help="comma-separated presets (default: tiny,cpu,stage_a)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed forward+backward passes per spectral layer (median; default 7)")
    p.add_argument("--steps", type=int, default=6,
                   help="timed training steps per preset and option (stage_a: a third; "
                        "default 6)")
    p.add_argument("--peak-sizes", default="256,512,1024,2048,3072",
                   help="matmul sides swept for the measured BLAS peak")
    p.add_argument("--options", default="default,former FFT path,channels_last",
                   help="step options to time, of: " + ", ".join(OPTIONS) + " (default: the "
                        "first three; '2 threads' and 'torch.compile' take minutes here)")
    p.add_argument("--compile-presets", default="tiny,cpu",
                   help="presets that try '2 threads' and 'torch.compile' when asked for "
                        "(default tiny,cpu: compiling stage_a takes minutes on 2 cores)")
    p.add_argument("--no-peer", action="store_true", help="skip the neuraloperator comparison")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny only, 2 repeats, 2 steps, a 1024 matmul, no compile")
    return p.parse_args(argv)


_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:6.1f} s] {msg}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark with ``argv`` (the command line's by default); 0 when it ran."""
    args = parse(argv)
    torch.set_num_threads(1)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    options = [o.strip() for o in args.options.split(",") if o.strip()]
    for o in options:
        if o not in OPTIONS:
            raise SystemExit(f"--options: unknown option {o!r}; known: {', '.join(OPTIONS)}")
    compile_presets = {p.strip() for p in args.compile_presets.split(",") if p.strip()}
    if args.quick:
        presets, args.repeats, args.steps, args.peak_sizes = ["tiny"], 2, 2, "256,1024"
        compile_presets = set()
    try:
        import neuralop
        peer_version = neuralop.__version__
    except ImportError:
        peer_version = None
    banner("kernels: spectral layer vs neuraloperator, training step vs the core's peak",
           {"presets": ",".join(presets), "repeats": args.repeats, "steps": args.steps,
            "peak matmul sides": args.peak_sizes, "neuraloperator": peer_version or "not installed",
            "quick": args.quick})

    # ---- peer
    if not args.no_peer and peer_version:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available()
                                           else [])
        for dev in devices:
            say(f"peer: spectral layers on {dev.type} ...")
            rows = peer_rows(presets, dev, args.repeats)
            print()
            print(f"Spectral layer forward + backward on {dev.type} "
                  f"({torch.get_num_threads()} thread(s)), median ms; same weights, "
                  "max |ours - theirs| / max |theirs| as 'match'")
            print(table(["preset", "layer", "ch", "side", "modes", "batch", "ours ms",
                         "neuralop ms", "ours/theirs", "match"], rows))
            print()
            ratios = [r[8] for r in rows if r[8] is not None]
            for r in rows:
                if r[8] is not None:
                    verdict(f"spectral fwd+bwd ours/neuralop {dev.type} {r[0]} {r[1]} "
                            f"({r[2]} ch, {r[3]}x{r[3]}, modes {r[4]})", r[8], "<= 1.0",
                            r[8] <= 1.0)
            if ratios:
                verdict(f"spectral fwd+bwd ours/neuralop {dev.type}, worst shape", max(ratios),
                        "<= 1.0", max(ratios) <= 1.0)
            print(flush=True)
    elif not args.no_peer:
        print('[peer] neuraloperator is not installed: pip install -e ".[bench]"\n')

    # ---- peak
    sizes = [int(n) for n in args.peak_sizes.split(",") if n.strip()]
    say(f"peaks: fp32 matmul sides {sizes} on 1 thread, best of 5 each; copy bandwidth ...")
    peak, peak_rows = blas_peak(sizes, 5)
    nominal, nominal_how = nominal_peak()
    bw = stream_bandwidth()
    print(table(["matmul side", "GFLOP/s (best of 5)"], peak_rows))
    print(f"measured BLAS peak (1 thread): {peak:.1f} GFLOP/s")
    print("nominal fp32 peak (1 core): "
          + (f"{nominal:.1f} GFLOP/s = {nominal_how}" if nominal else nominal_how))
    if nominal:
        print(f"BLAS attains {100 * peak / nominal:.0f}% of nominal")
    ridge = f"{peak / bw:.1f} flop/byte (measured peak)"
    if nominal:
        ridge += f", {nominal / bw:.1f} (nominal)"
    print(f"copy bandwidth (1 thread, 256 MiB, read + write): {bw:.1f} GB/s; roofline ridge at "
          f"{ridge}: a kernel doing fewer flops per byte it moves is memory-bound\n", flush=True)

    # ---- steps
    from ptycho_model.data import simulate
    from ptycho_model.presets import preset_config

    flop_rows, kind_rows, opt_rows, fracs = [], [], [], {}
    for preset in presets:
        say(f"{preset}: simulating, FLOPs, profile ...")
        with contextlib.redirect_stdout(io.StringIO()):
            data = simulate(preset_config(preset).data)
        steps = max(1, args.steps // 3) if preset.startswith("stage_a") else args.steps
        tr = make_trainer(preset, data)
        x_all = tr.x_train
        run_steps(tr, x_all, 1)  # warm-up
        tr.x_train = x_all[: tr.cfg.train.batch_size]
        counted, per_op, hidden = counted_flops(functools.partial(tr._train_epoch, tr.epoch + 1))
        step_s = run_steps(tr, x_all, steps) / steps
        total = counted + hidden.fft + hidden.complex_mm
        gflops = total / step_s / 1e9
        fracs[preset] = gflops / peak
        flop_rows.append([preset, tr.cfg.train.batch_size, counted / 1e9, hidden.fft / 1e9,
                          hidden.complex_mm / 1e9, total / 1e9, step_s * 1e3, gflops,
                          f"{100 * gflops / peak:.1f}%",
                          f"{100 * gflops / nominal:.1f}%" if nominal else "-"])
        prof, top_other = profile_step(tr, x_all)
        prof_total = sum(prof.values())
        kflops: Counter[str] = Counter()
        for op, f in per_op.items():
            kflops[_op_kind(op)] += f
        kflops["fft"] += hidden.fft
        kflops["matmul"] += hidden.complex_mm
        for kind in ("conv", "matmul", "fft", "other"):
            s = prof.get(kind, 0.0)
            top = ", ".join(f"{op} {t * 1e3:.0f}" for op, t in top_other) if kind == "other" else ""
            kind_rows.append([preset, kind, f"{100 * s / prof_total:.0f}%", s * 1e3,
                              kflops[kind] / 1e9,
                              kflops[kind] / s / 1e9 if s and kflops[kind] else None, top])
        del tr
        gc.collect()

        base_s, base_losses = None, []
        for option in options:
            if option in ("torch.compile", "2 threads") and preset not in compile_presets:
                continue
            say(f"{preset}: option {option} ...")
            try:
                row, losses = option_row(preset, data, option, steps, base_s or 0.0,
                                         base_losses, repro_steps=2)
            except Exception as e:  # noqa: BLE001 - one failing option must not end the run
                print(f"[{preset}] {option} FAILED: {type(e).__name__}: {e}", flush=True)
                opt_rows.append([preset, option, None, None, "-", "-", None])
                continue
            if option == "default":
                base_s, base_losses = row[2] / 1e3, losses
                row[3] = 1.0
            opt_rows.append(row)
            gc.collect()
        del data
        gc.collect()

    print()
    print(f"One training step (forward, fp32 physics, PINN loss, backward, clip, optimizer), "
          f"1 thread; GFLOP per step; measured BLAS peak {peak:.1f} GFLOP/s, nominal "
          + (f"{nominal:.1f}" if nominal else "unknown"))
    print(table(["preset", "batch", "FlopCounter", "FFT (analytic)", "complex mm extra",
                 "total", "step ms", "GFLOP/s", "of BLAS peak", "of nominal"], flop_rows))
    print()
    print("Where one step's time goes: self CPU time by kernel kind (torch.profiler) and the "
          "GFLOP it does ('other': elementwise, reductions, copies, optimizer; not counted)")
    print(table(["preset", "kind", "share", "ms", "GFLOP", "GFLOP/s", "largest 'other' ops, ms"],
                kind_rows))
    print()
    print("Step options, 1 thread unless named; speedup vs default; 'repro': two runs from "
          "the same seed give the same losses; 'vs default': max |loss - default's| over 2 "
          "steps; 'warm-up s': first step (compilation included)")
    print(table(["preset", "option", "step ms", "speedup", "repro", "vs default",
                 "warm-up s"], opt_rows))
    print()
    for preset, frac in fracs.items():
        verdict(f"step GFLOP/s / measured 1-thread BLAS peak, {preset}", frac,
                "reported, see the kernel-kind table", None)
        if nominal:
            verdict(f"step GFLOP/s / nominal 1-core fp32 peak, {preset}", frac * peak / nominal,
                    "reported", None)
    for r in opt_rows:
        if r[1] == "former FFT path" and r[3]:
            verdict(f"step speedup of the matmul DFT path over the former FFT path, {r[0]}",
                    1.0 / r[3], "> 1.0", 1.0 / r[3] > 1.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
