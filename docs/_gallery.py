"""Helpers of the example gallery (named by string in ``conf.py`` so Sphinx can cache it)."""

from __future__ import annotations

from pathlib import Path

#: Order of the examples on the gallery page: solvers, training, then the gradient studies.
ORDER = [
    "plot_solvers.py",
    "plot_convergence_study.py",
    "plot_train_ep.py",
    "plot_persistent_particles.py",
    "plot_beta_sweep.py",
    "plot_ep_vs_bptt.py",
    "plot_gdu.py",
    "plot_dask_sweep.py",
]


class ExampleOrder:
    """Sort key of sphinx-gallery's ``within_subsection_order``: the order of ORDER."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)


_SEEN: set[int] = set()


def eqprop_figures(block, block_vars, gallery_conf):
    """Scrape figures made with ``matplotlib.figure.Figure`` (as ``eqprop plot`` does).

    Such figures are not registered with pyplot, so sphinx-gallery's matplotlib scraper
    does not see them; this one saves every new ``Figure`` bound to a name in the
    example's namespace, once.
    """
    from matplotlib import pyplot as plt
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    # runs before sphinx-gallery's matplotlib scraper (conf.py), which takes and closes
    # pyplot's figures: they are still open here, so they are never saved twice
    _SEEN.update(id(plt.figure(n)) for n in plt.get_fignums())
    paths = []
    for value in list(block_vars["example_globals"].values()):
        if not isinstance(value, Figure) or id(value) in _SEEN:
            continue
        _SEEN.add(id(value))
        path = next(block_vars["image_path_iterator"])
        value.savefig(path, dpi=100)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


def reset_seen(gallery_conf, fname):
    """Forget the figures of the previous example (sphinx-gallery ``reset_modules``)."""
    _SEEN.clear()
