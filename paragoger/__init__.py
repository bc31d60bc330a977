"""Paragoger SD: an offline Stable Diffusion studio."""

__version__ = "0.1.0"
