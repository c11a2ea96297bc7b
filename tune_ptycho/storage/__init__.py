"""What a study leaves behind and where: files on any filesystem (:mod:`.fs`), their names
(:mod:`.layout`), the experiment directory (:mod:`.experiment`), Ray Tune's own files read back
(:mod:`.tune_files`), the Optuna study (:mod:`.study`) and the dataset cache
(:mod:`.dataset_cache`). Submodules are imported by name: this package re-exports nothing."""
