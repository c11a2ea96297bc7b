"""Dependencies point one way: the model core never pulls in Ray or Optuna."""

import subprocess
import sys


def test_ptycho_model_imports_neither_ray_nor_optuna():
    code = (
        "import sys, ptycho_model.train, ptycho_model.evaluate, ptycho_model.presets;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'));"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
