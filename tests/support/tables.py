"""Where a name registered through a hook could linger: the package's module-level tables."""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping


def module_tables_holding(name: str) -> list[str]:
    """``module.attribute`` of every module-level mapping or collection of the package's loaded modules that holds
    ``name`` (as a key or an element); empty when the session's registry is the only place a name lives."""
    return [f"{module_name}.{attr}" for module_name, module in list(sys.modules.items())
            if module_name.split(".")[0] == "pytest_longeff" and module is not None
            for attr, value in list(vars(module).items())
            if isinstance(value, (Mapping, Collection)) and not isinstance(value, (str, bytes)) and name in value]
