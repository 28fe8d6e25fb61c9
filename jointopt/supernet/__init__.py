"""Weight-sharing ViT supernet (AutoFormer-style) and its extracted subnets."""

from jointopt.supernet.model import SubnetViT, ViTSupernet

__all__ = ["ViTSupernet", "SubnetViT"]
