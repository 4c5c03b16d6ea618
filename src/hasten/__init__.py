"""hasten: make generative models produce their output faster without changing it."""

__version__ = "0.1.0"
