"""jointopt: joint architecture, token-merging and bit-width search for Vision Transformers.

The public API is what ``__all__`` lists; everything else may change.
"""

from __future__ import annotations

from jointopt.errors import UserError
from jointopt.evaluation import Metrics, evaluate
from jointopt.space import JointConfig, SearchSpace
from jointopt.study import Study
from jointopt.supernet import SubnetViT, ViTSupernet

__all__ = ["JointConfig", "SearchSpace", "Study", "ViTSupernet", "SubnetViT", "UserError",
           "Metrics", "evaluate"]
__version__ = "0.1.0"
