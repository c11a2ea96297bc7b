"""Keep every result row of a trial that restarts: a retry after a failure, or a HyperBand trial
unpaused at a rung.

Ray writes a trial's ``result.json`` and ``progress.csv`` into a staging directory on the driver and
copies them to storage every ~10 s. When a trial restarts from a checkpoint, its loggers *restore
those files from storage* (``LoggerCallback._restore_from_remote`` in Ray 2.60), overwriting the
staged copy: every row reported since the last sync would be lost, although the checkpoint it
resumes from was taken after them. This callback pushes the staged files to storage the moment a
trial is marked for recovery, which Tune does before it restarts the trial, and when a trial with
a checkpoint starts again, before the loggers (which come after it in the callback list) look.
A driver that was itself restarted has no staged files: storage is then all there is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs
from ray import tune

from ..storage.layout import PROGRESS_FILE, RESULT_FILE

LOG_FILES = (RESULT_FILE, PROGRESS_FILE)

logger = logging.getLogger(__name__)


class KeepLogsOnRetry(tune.Callback):
    def on_trial_recover(self, iteration, trials, trial, **info):
        self._push(trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.checkpoint:
            self._push(trial)

    @staticmethod
    def _push(trial) -> None:
        for name in LOG_FILES:
            staged = Path(trial.local_path, name)
            if not staged.exists():
                continue
            try:
                pyarrow.fs.copy_files(staged.as_posix(), Path(trial.path, name).as_posix(),
                                      destination_filesystem=trial.storage.storage_filesystem)
            except Exception as e:  # a full disk or a lost bucket must not end the study
                logger.warning("could not save %s of trial %s before it restarts (%s); rows "
                               "since the last sync may be missing from it", name, trial, e)
