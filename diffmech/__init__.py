"""diffmech: differentiable mechanism design in JAX."""

__version__ = "0.1.0"
