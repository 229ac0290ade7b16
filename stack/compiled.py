"""The class attributes the optional compiled build reads (mypyc; see tests/bench/accel.py).

Interpreted, `mypyc_attr` changes nothing: the stack still needs nothing beyond the standard
library, and mypy_extensions is used only when it is installed. Compiled, mypyc reads it from the
source: `allow_interpreted_subclasses` on the role classes lets TcpConnection, which stays
interpreted so that a TIME_WAIT record can hold a weak reference to it, inherit from them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:

        def mypyc_attr(*_names: str, **_flags: Any) -> Callable[[T], T]:
            return lambda cls: cls


def compiled_modules() -> list[str]:
    """The stack's modules this process loaded from compiled extensions (empty when interpreted)."""
    return sorted(name for name, module in list(sys.modules.items())
                  if name.startswith("stack.") and str(getattr(module, "__file__", "") or "").endswith(".so"))
