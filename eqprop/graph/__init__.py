"""Networks built from layers and couplings (issue 11).

* :mod:`eqprop.graph.model`: :class:`Layer`, :class:`Coupling`, :class:`GraphNetwork`
  (plain data and its checks);
* :mod:`eqprop.graph.dense`: the dense coupling (one module per coupling type);
* :mod:`eqprop.graph.reference`: NumPy reference of drives, energy, maps, gradients;
* :mod:`eqprop.graph.build`: :func:`chain` and :func:`from_network`;
* :mod:`eqprop.graph.kernels`: the Numba map for :mod:`solvers` (real and complex);
* :mod:`eqprop.graph.conv`, :mod:`eqprop.graph.pool`: conv2d and pooling couplings,
  :mod:`eqprop.graph.conv_kernels` their allocation-free CPU path;
* :mod:`eqprop.graph.gradient`: :class:`~eqprop.graph.gradient.GraphGradient`, the rules'
  gradient by parameter name;
* :mod:`eqprop.graph.backprop`: recurrent backprop with the non-symmetric Jacobian.

``docs/networks.rst`` gives the conventions (signs, shapes, feedback modes, what each
rule computes); ``docs/couplings.rst`` is the reference.
"""

from eqprop.graph.build import chain, from_network
from eqprop.graph.model import Coupling, GraphNetwork, Layer

__all__ = ["Coupling", "GraphNetwork", "Layer", "chain", "from_network"]
