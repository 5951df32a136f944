"""Networks built from layers and couplings (issue 11).

* :mod:`eqprop.graph.model`: :class:`Layer`, :class:`Coupling`, :class:`GraphNetwork`
  (plain data and its checks);
* :mod:`eqprop.graph.dense`: the dense coupling (one module per coupling type);
* :mod:`eqprop.graph.reference`: NumPy reference of drives, energy, maps, gradients;
* :mod:`eqprop.graph.build`: :func:`chain` and :func:`from_network`;
* :mod:`eqprop.graph.kernels`: the Numba map for :mod:`solvers`;
* :mod:`eqprop.graph.backprop`: recurrent backprop with the non-symmetric Jacobian.

See ``docs/couplings.rst`` for the conventions.
"""

from eqprop.graph.build import chain, from_network
from eqprop.graph.model import Coupling, GraphNetwork, Layer

__all__ = ["Coupling", "GraphNetwork", "Layer", "chain", "from_network"]
