"""The general graph kernels compile once per dtype, not once per topology (#11): their
``args`` hold records of arrays whose Numba type does not depend on the number of layers
or couplings; and the results equal those of the per-coupling tuples they replaced.

``test_bit_identical_to_a_baseline_tree`` runs only when ``EQPROP_BASELINE_TREE`` names
another checkout (e.g. ``git archive 5dc81c9 | tar -x -C /tmp/base``, the commit before
the change): it runs the same phases in both trees and compares every output bit for
bit (states, nudged states, ODE steady states, complex states, recorded energies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from eqprop.graph import chain
from eqprop.graph import kernels as GK
from eqprop.graph import reference as R
from eqprop.phases import Dynamics, clamp, free_phase


def _float64_signatures(fn) -> int:
    """Compiled float64 signatures of networks without conv couplings (the last entry of
    ``args``, the conv records, is then an empty tuple; conv networks compiled earlier in
    the same process add their own)."""
    return sum(
        1 for sig in fn.signatures if str(sig[0].dtype) == "float64" and len(sig[2].types[-1]) == 0
    )


def test_one_compiled_map_for_every_topology():
    nets = [
        chain([6, 5, 3], activation="sigmoid", skip=[(0, 2)]),
        chain([6, 5, 4, 3], activation="sigmoid", skip=[(1, 3)]),
        chain([6, 5, 4, 4, 3], activation="tanh", feedback="free", skip=[(1, 3), (2, 4)]),
        chain([6, 4, 3], kind="prototypical", activation="sigmoid", cost="cross-entropy"),
    ]
    x = np.random.default_rng(0).random((3, 6))
    for net in nets:
        s = free_phase(net, clamp(net, x, path="general"), Dynamics(T=25)).state
        ref = x, net.zero_state(3)
        for _ in range(25):
            ref = x, R.fixed_point_map(net, x, ref[1], eps=0.5)
        np.testing.assert_allclose(s, ref[1], atol=1e-13, rtol=0)
    assert _float64_signatures(GK.fixed_point_map) == 1
    assert all(len(t) == len(nets[2].couplings) - 1 for t in GK._records(nets[2])[1][:6])


_CASES = r"""
import json, sys
import numpy as np
import eqprop as E
import solvers
from eqprop.graph import chain
from eqprop.graph import kernels as GK
from eqprop.graph.holomorphic import as_complex

def biased(net, seed):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.bias is not None:
            layer.bias[:] = rng.normal(scale=0.3, size=layer.size)
    return net

rng = np.random.default_rng(0)
x = rng.random((4, 6))
d = np.eye(3)[[0, 1, 2, 0]]
nets = {
    "free-skip": biased(chain([6, 5, 4, 3], activation="sigmoid", feedback="free",
                              skip=[(0, 2), (1, 3)], gain=1.5), 1),
    "scaled-readout-f32": biased(chain([6, 5, 4, 3], kind="prototypical", activation="tanh",
                                       feedback="scaled", gamma=0.5, cost="cross-entropy",
                                       dtype="float32"), 2),
    "random-box-skip": biased(chain([6, 5, 4, 3], activation="hardsigmoid", feedback="random",
                                    skip=[(1, 3)]), 3),
    "pmlp": biased(chain([6, 5, 3], kind="prototypical", activation="sigmoid",
                         output_activation="identity", cost="cross-entropy"), 4),
}
out = {}
for name, net in nets.items():
    xc = x.astype(net.dtype)
    cx = E.clamp(net, xc, path="general")
    for dyn, beta, tag in (
        (E.Dynamics(T=30, K=10, eps=0.4), 0.0, "free"),
        (E.Dynamics(T=30, K=10, eps=0.4, damping=0.7, nudge="outside"), 0.5, "nudged"),
        (E.Dynamics(T=30, K=10, eps=0.2, method="euler"), 0.3, "euler"),
    ):
        ph = E.run_phase(net, cx, dyn, beta=beta, d=d if beta else None)
        out[f"{name}/{tag}"] = ph.state
    if net.output_layer.role == "output" and net.cost == "squared":
        ph = E.run_phase(net, cx, E.Dynamics(T=10), d=d, clamp_output=True)
        out[f"{name}/clamped"] = ph.state
tied = biased(chain([6, 5, 3], activation="sigmoid", skip=[(0, 2)], gain=2.0), 5)
ph = E.run_phase(tied, x, E.Dynamics(T=20, eps=0.1, record_energy=True), beta=0.2, d=d)
out["tied/energy"] = ph.result.observed
holo = as_complex(chain([6, 5, 3], activation="sigmoid", skip=[(0, 2)]))
res = GK.solve_phase(holo, x, beta=0.3 + 0.2j, d=d, fixed_steps=15)
out["holomorphic/complex-beta"] = res.x
np.savez(sys.argv[1], **out)
"""


@pytest.mark.skipif(
    not os.environ.get("EQPROP_BASELINE_TREE"),
    reason="set EQPROP_BASELINE_TREE to a checkout to compare with bit for bit",
)
def test_bit_identical_to_a_baseline_tree(tmp_path):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    got = {}
    for label, tree in (("new", here), ("base", os.environ["EQPROP_BASELINE_TREE"])):
        path = tmp_path / f"{label}.npz"
        env = dict(os.environ, PYTHONPATH=tree, NUMBA_CACHE_DIR=str(tmp_path / f"nc-{label}"))
        subprocess.run(  # cwd: "-c" puts the working directory first on sys.path
            [sys.executable, "-c", _CASES, str(path)], env=env, cwd=tree, check=True
        )
        got[label] = dict(np.load(path))
    assert sorted(got["new"]) == sorted(got["base"])
    differ = [k for k in got["new"] if not np.array_equal(got["new"][k], got["base"][k])]
    assert not differ, json.dumps(differ)
