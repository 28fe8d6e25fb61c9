"""jointopt: joint architecture, token-merging and bit-width search for Vision Transformers.

The public API is what ``__all__`` lists; everything else may change.

The names are imported on first use (PEP 562 module ``__getattr__``): ``import jointopt`` and the
``jointopt`` command's ``--help`` then load neither torch nor optuna, which take seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jointopt.errors import UserError

if TYPE_CHECKING:  # the eager imports, for type checkers and editors
    from jointopt.evaluation import Metrics, evaluate
    from jointopt.space import JointConfig, SearchSpace
    from jointopt.study import Study
    from jointopt.supernet import SubnetViT, ViTSupernet

__all__ = ["JointConfig", "SearchSpace", "Study", "ViTSupernet", "SubnetViT", "UserError",
           "Metrics", "evaluate"]
__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "JointConfig": "jointopt.space", "SearchSpace": "jointopt.space", "Study": "jointopt.study",
    "ViTSupernet": "jointopt.supernet", "SubnetViT": "jointopt.supernet",
    "Metrics": "jointopt.evaluation", "evaluate": "jointopt.evaluation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jointopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    # Cache it, so the next access is a plain attribute. `evaluate` must be bound here even
    # though importing jointopt.evaluation binds the submodule under the same name.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
