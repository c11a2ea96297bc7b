"""What a study leaves behind and where: files on any filesystem (:mod:`.fs`), the experiment
directory (:mod:`.experiment`), the Optuna study (:mod:`.study`) and the dataset cache
(:mod:`.dataset_cache`). Submodules are imported by name: this package re-exports nothing."""
