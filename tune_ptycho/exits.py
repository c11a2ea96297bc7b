"""The exit codes of every ``tune-ptycho`` command (docs/design.md, "Exit codes")."""

EXIT_OK = 0  # finished: collapsed and diverged trials are results, not errors
EXIT_TRIAL_ERRORS = 1  # trials errored past resources/max_failures, or the driver itself failed
EXIT_BAD_INPUT = 2  # input a user can fix (ptycho_model.errors.InputError), refused before work
EXIT_INTERRUPTED = 130  # interrupted (Ctrl+C, a low disk): the message names the resume command
