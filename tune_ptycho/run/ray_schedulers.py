"""Ray's trial schedulers as the service runs them: what the builders of
:data:`.schedulers.TRIAL_SCHEDULERS` make.

Their classes are pickled by reference into ``tuner.pkl`` (``resume`` unpickles them, after
``storage.pickle_scan`` allowed them); experiments made before this module existed name them in
``tune_ptycho.run.tuner``, which still imports them.
"""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from .hyperband import ReproducibleHyperBand
from .relocation import place_new_trial


class _ServiceScheduler:
    """What every trial scheduler of the service adds to Ray's.

    * It keeps the metric it was built with. TuneConfig names the study's ``objective`` (and
      ``min``) so that Ray's readers of the experiment (``Tuner.restore(...).get_results()
      .get_best_result()``) need no arguments; Tune then offers that metric to the scheduler as
      well and refuses one built with its own. ASHA and HyperBand judge on the *current*
      val_loss (docs/design.md).
    * A trial added while a copied or moved experiment resumes goes where the experiment is
      now (:mod:`.relocation`)."""

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        place_new_trial(trial)
        super().on_trial_add(tune_controller, trial)


class ValLossASHA(_ServiceScheduler, ASHAScheduler):
    pass


class ValLossHyperBand(_ServiceScheduler, ReproducibleHyperBand):
    pass


class NoEarlyStop(_ServiceScheduler, FIFOScheduler):
    pass
