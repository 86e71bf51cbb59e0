"""Progress bars for long attacks: tqdm when it is installed, silent otherwise.

adv_attacks depends on torch only; ``tqdm`` (installed with the workspace) is optional.
"""

from __future__ import annotations

from typing import Any

try:  # pragma: no cover - the workspace installs tqdm
    from tqdm.auto import tqdm as _tqdm
except ImportError:  # pragma: no cover
    _tqdm = None


class _Silent:
    """Stands for a tqdm bar when there is none."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool, **kwargs: Any) -> Any:
    """A tqdm bar (``leave=False``) or a silent stand-in with ``update``/``close``."""
    if not enabled or _tqdm is None:
        return _Silent()
    return _tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
