"""Backbones; importing this package registers them in ``models.registry.BACKBONES``."""

from models.backbones import dinov2, dinov3, resnet, vgg  # noqa: F401
