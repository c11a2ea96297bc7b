"""Keep every result row of a trial that fails and is retried.

Ray writes a trial's ``result.json`` and ``progress.csv`` into a staging directory on the driver and
copies them to storage every ~10 s. When a trial fails and is retried, its loggers *restore those
files from storage* (``LoggerCallback._restore_from_remote`` in Ray 2.60), overwriting the staged
copy: every row reported since the last sync would be lost, although the checkpoint that the retry
resumes from was taken after them. This callback pushes the staged files to storage the moment a
trial is marked for recovery, which Tune does before it restarts the trial.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.fs
from ray import tune

LOG_FILES = ("result.json", "progress.csv")

logger = logging.getLogger(__name__)


class KeepLogsOnRetry(tune.Callback):
    def on_trial_recover(self, iteration, trials, trial, **info):
        for name in LOG_FILES:
            staged = Path(trial.local_path, name)
            if not staged.exists():
                continue
            try:
                pyarrow.fs.copy_files(staged.as_posix(), Path(trial.path, name).as_posix(),
                                      destination_filesystem=trial.storage.storage_filesystem)
            except Exception as e:  # a full disk or a lost bucket must not end the study
                logger.warning("could not save %s of trial %s before its retry (%s); rows "
                               "since the last sync may be missing from it", name, trial, e)
