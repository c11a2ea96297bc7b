"""Driving a study on Ray Tune: ``run`` and ``resume`` (:mod:`.launch`), the Tuner they build
(:mod:`.tuner`), its searcher, stopper and callbacks (:mod:`.searcher`, :mod:`.stoppers`,
:mod:`.trial_logs`, :mod:`.progress`) and the free-space policy (:mod:`.disk_guard`). Imports
ray: the commands that need no cluster never import this package."""
