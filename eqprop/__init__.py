"""eqprop: learning in energy-based networks without backpropagation."""

__version__ = "0.1.0"
