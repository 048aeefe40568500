"""Command lines: the one runner every ``python -m scoresde.<cmd>`` goes through.

See :func:`scoresde.cli.runner.run_command` (compose, prepare, call one library function) and
:mod:`scoresde.cli.messages` (the exit codes and the one-line error messages).
"""

from scoresde.cli.messages import (
    EXIT_BAD_INPUT,
    EXIT_NON_FINITE,
    EXIT_OK,
    EXIT_OTHER,
    exit_code,
    message,
)
from scoresde.cli.runner import (
    DEBUG_ENV,
    RunContext,
    check_keys,
    check_threads,
    prepare,
    run_command,
)

__all__ = [
    "DEBUG_ENV",
    "EXIT_BAD_INPUT",
    "EXIT_NON_FINITE",
    "EXIT_OK",
    "EXIT_OTHER",
    "RunContext",
    "check_keys",
    "check_threads",
    "exit_code",
    "message",
    "prepare",
    "run_command",
]
