"""Tune's W&B logger without the API key in Ray's logs (``storage/log_to`` = wandb).

Its own module, imported only when W&B is asked for: it imports Ray's W&B integration, which the
spec validation importing :mod:`.trackers` must not pay for.
"""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback


class KeylessWandbCallback(WandbLoggerCallback):
    """Tune's ``WandbLoggerCallback``, except that the W&B API key is not handed to the
    logging actors through their ``runtime_env``.

    Tune copies ``WANDB_API_KEY`` from the driver's environment into the actors'
    ``runtime_env={"env_vars": ...}``, and Ray writes every runtime_env it sets up in plain
    text to ``<ray temp dir>/session_*/logs/runtime_env_agent.log`` (which the Ray dashboard
    serves). Here the actors start without it, pinned to the driver's node as Tune pins
    them. On one machine, where the driver starts Ray itself, they inherit the
    driver's environment, key included (Ray's processes start from it). On a cluster, or
    under a Ray the driver did not start (``ray start``, ``ray job submit``), run
    ``wandb login`` on the head node (the key then sits in ``~/.netrc`` there), or use
    ``WANDB_MODE=offline`` and ``wandb sync`` the runs later."""

    def _start_logging_actor(self, trial, exclude_results, **wandb_init_kwargs):
        if not self._remote_logger_class:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                  soft=False)
            self._remote_logger_class = ray.remote(
                num_cpus=0, scheduling_strategy=here, max_restarts=-1,
                max_task_retries=-1)(self._logger_actor_cls)
        super()._start_logging_actor(trial, exclude_results, **wandb_init_kwargs)
