"""Driving a study on Ray Tune: ``run`` and ``resume`` (:mod:`.launch`), the Tuner they build
(:mod:`.tuner`), its trial schedulers (:mod:`.schedulers`, the registry; :mod:`.ray_schedulers`,
:mod:`.hyperband`), searcher, stopper and callbacks (:mod:`.searcher`, :mod:`.stoppers`,
:mod:`.trial_logs`, :mod:`.progress`, the trackers in :mod:`.trackers`), the free-space policy
(:mod:`.disk_guard`), the driver's error lines (:mod:`.driver_errors`), resuming a moved
experiment (:mod:`.relocation`), and the two commands that drive follow-up studies:
``crash-hunt`` (:mod:`.crash_hunt`, P_crash reruns of an experiment's best configurations) and
``cliff`` (:mod:`.cliff`, P(collapse) along one axis, seeds in rounds). Most of it imports ray;
the registries the spec and the CLI read before Ray starts (:mod:`.schedulers`,
:mod:`.trackers`) do not, and the commands that need no cluster import nothing else of it."""
