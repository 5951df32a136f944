"""Equilibrium solvers for batched dynamical systems (no notion of networks)."""
