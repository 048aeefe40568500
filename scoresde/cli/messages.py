"""One ``error: ...`` line for an exception, and its exit code (the command lines' error path).

Exit codes: 0 done, 2 bad input or config (``ValueError``, ``TypeError``, a file that is missing,
unreadable or unwritable, a Hydra composition error: unknown key, unknown group option, a value
of the wrong type), 3 non-finite values (:class:`scoresde.errors.NonFiniteError`), 1 anything
else. Hydra's own errors are rewritten to name the key and the valid choices.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from scoresde.errors import NonFiniteError

__all__ = ["EXIT_BAD_INPUT", "EXIT_NON_FINITE", "EXIT_OK", "EXIT_OTHER", "exit_code", "message"]

EXIT_OK, EXIT_OTHER, EXIT_BAD_INPUT, EXIT_NON_FINITE = 0, 1, 2, 3

# a listing of the valid keys at a config path, for "unknown key" messages (set by the runner)
KeyLister = Callable[[str], Sequence[str] | None]


def exit_code(e: BaseException) -> int:
    """2 for bad input or config, 3 for non-finite values, 1 for anything else."""
    if isinstance(e, NonFiniteError):
        return EXIT_NON_FINITE
    if isinstance(e, (ConnectionError, TimeoutError, InterruptedError)):
        return EXIT_OTHER
    if isinstance(e, (ValueError, TypeError, OSError, HydraException, OmegaConfBaseException)):
        return EXIT_BAD_INPUT
    return EXIT_OTHER


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def _first_line(text: str) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def _causes(e: BaseException) -> list[BaseException]:
    out, seen = [], set()
    while e is not None and id(e) not in seen:
        out.append(e)
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return out


def _missing_option(e: MissingConfigException, command: str) -> str:
    missing = e.missing_cfg_file or ""
    group, _, name = missing.rpartition("/")
    options = sorted(e.options or [])
    if not group:
        return f"no config {missing!r} for {command}"
    choices = ", ".join(options) if options else "(none)"
    return f"{group}={name} is not an option of {command}; choose {group} from: {choices}"


def _override_key(text: str) -> str | None:
    m = re.search(r"Could not (?:override|append to config|delete from config)[^']*'([^']+)'", text)
    if m:
        return m.group(1)
    m = re.search(r"override (\+{0,2}~?[\w./@-]+)=", text)
    return m.group(1).lstrip("+~") if m else None


def _composition(e: BaseException, command: str, keys: KeyLister | None) -> str:
    chain = _causes(e)
    text = str(e)
    for c in chain:
        if isinstance(c, MissingConfigException):
            return _missing_option(c, command)
    omega = next((c for c in chain if isinstance(c, OmegaConfBaseException)), None)
    key = getattr(omega, "full_key", None) or _override_key(text)
    if "No match in the defaults list" in text and key:
        return (
            f"{key} is not a config group of {command}; "
            f"{_listing(keys, '', 'its groups and keys are')}"
        )
    if isinstance(omega, (ConfigKeyError, ConfigAttributeError)) or "not in struct" in str(
        omega or ""
    ):
        parent = (key or "").rpartition(".")[0]
        where = f" under {parent}" if parent else ""
        if not key:
            return f"unknown config key for {command}: {_one_line(text)}"
        free = "use +" in text and "not in struct" in str(omega or "")  # a dict, not a schema
        hint = " (prefix with + to add a new key)" if free else ""
        return (
            f"unknown config key {key!r} for {command}{where}: {command} does not use it, so it "
            f"is refused rather than ignored; {_listing(keys, parent, 'valid keys are')}{hint}"
        )
    if isinstance(omega, (ValidationError, MissingMandatoryValue)) and key:
        return f"{key}: {_first_line(omega)}"
    if isinstance(e, OverrideParseException):
        return f"cannot parse the command-line override: {_one_line(text)}"
    return _one_line(text if omega is None else f"{_first_line(text)}: {_first_line(omega)}")


def _listing(keys: KeyLister | None, path: str, label: str) -> str:
    found = keys(path) if keys is not None else None
    if not found:
        return "see --help for the valid keys"
    return f"{label}: {', '.join(found)}"


def message(e: BaseException, command: str, keys: KeyLister | None = None) -> str:
    """The one line (without the ``error: `` prefix) that explains ``e`` to the user."""
    if isinstance(e, (ConfigCompositionException, OverrideParseException)) or (
        isinstance(e, HydraException) and _causes(e)[-1] is not e
    ):
        return _composition(e, command, keys)
    if isinstance(e, MissingMandatoryValue):
        key = getattr(e, "full_key", None) or "a required key"
        return f"{key} is required: pass {key}=... on the command line"
    if isinstance(e, OmegaConfBaseException):
        key = getattr(e, "full_key", None)
        return f"{key}: {_first_line(e)}" if key else _one_line(e)
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in str(e):
        return f"{e.strerror or _one_line(e)}: {e.filename}"
    text = _one_line(e)
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    return text or type(e).__name__
