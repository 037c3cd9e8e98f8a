"""lenet-edge: LeNet-5 from MNIST training to int8 C on a Cortex-M."""

__version__ = "0.1.0"
