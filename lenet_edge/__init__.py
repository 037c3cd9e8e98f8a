"""lenet-edge: LeNet-5 from MNIST training to int8 C on a Cortex-M."""

from firmware_export import __version__

__all__ = ["__version__"]
