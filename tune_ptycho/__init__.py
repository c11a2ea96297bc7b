"""tune-ptycho: Ray Tune + Optuna studies of PtychoPINN's FNO generators.

``cli`` is the command line; ``spec`` turns flags and spec files into a validated study; ``run``
drives it on Ray; ``storage`` holds what it leaves behind; ``cluster`` joins and checks clusters;
``analysis`` reads an experiment back offline; ``standalone`` trains one model without Ray.
The design notes are in the repository's ``docs/``.
"""
