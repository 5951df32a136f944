"""The ``conv2d`` coupling: a 2-d convolution between image layers, optionally pooled.

A coupling ``c`` from layer ``src`` of shape ``(C_in, H, W)`` to layer ``dst`` of shape
``(C_out, H_d, W_d)`` with ``c.W`` of shape ``(C_out, C_in, kh, kw)`` (PyTorch's layout of
``conv2d`` weights, kept so that weights port without transposition, and because
``W.reshape(C_out, C_in * kh * kw)`` is directly the GEMM operand below) and geometry
``c.conv`` (:class:`ConvSpec`: stride, zero padding, pooling). Its maps, with
activities flattened in C order (batch first):

* convolution (cross-correlation, as ``torch.nn.functional.conv2d``):
  :math:`\\mathrm{conv}(a)_{o,i,j} = \\sum_{k,p,q} W_{o,k,p,q}\\,
  \\bar a_{k,\\,i s + p,\\,j s + q}` with :math:`\\bar a` the input zero-padded by
  ``padding`` on each side, output :math:`H_o = (H + 2\\,\\mathrm{pad} - k_h) // s + 1`;
* forward drive into ``dst``: :math:`f(a_{src}) = P(\\mathrm{conv}(a_{src}))` with
  :math:`P` the pooling stage (:mod:`eqprop.graph.pool`; identity when ``pool`` is None);
* term of F (tied): :math:`-\\langle a_{dst}, P(\\mathrm{conv}(a_{src}))\\rangle` per
  sample (the dense convention, :math:`-\\langle a_{src} W, a_{dst}\\rangle`), i.e. minus
  the coupling's term :math:`s_{l+1}\\cdot P(\\mathrm{conv}(s_l))` of the primitive
  function of Laborieux et al. 2021 (their P-conv; Ernoult et al. 2019);
* feedback drive into ``src`` (tied): the gradient of that term with respect to
  :math:`a_{src}` with the sign of a drive, :math:`\\mathrm{conv}^\\top(P'(z)^\\top
  a_{dst})` where :math:`z = \\mathrm{conv}(a_{src})` and :math:`\\mathrm{conv}^\\top` is
  the transposed convolution (the adjoint, ``conv_transpose2d``). With max pooling
  :math:`P'(z)^\\top` routes each :math:`a_{dst}` value to the argmax position of its
  window in :math:`z`, so the feedback depends on the source's own activity through the
  argmax (piecewise: it is the exact gradient wherever the maxima are unique);
  ``scaled`` multiplies it by ``gamma``; ``free`` and ``random`` use a kernel ``B`` of
  ``W``'s shape instead, :math:`\\mathrm{conv}_B^\\top(P'(z)^\\top a_{dst})` with the
  routing still that of :math:`z = \\mathrm{conv}_W(a_{src})` (no energy then: a vector
  field; ``B`` learned or fixed, as for dense couplings);
* :math:`\\partial F/\\partial W_{o,k,p,q} = -\\overline{\\sum_{i,j} (P'^\\top a_{dst})_{o,i,j}\\,
  \\bar a_{src,k,is+p,js+q}}` (batch mean).

Implementation (the reference, NumPy): **im2col + GEMM**. The padded input's patches are
gathered once into a matrix ``cols`` of shape ``(batch * H_o * W_o, C_in * kh * kw)``
(:func:`im2col`); the convolution is then one matrix product ``cols @ W2.T`` with
``W2 = W.reshape(C_out, -1)``, the weight gradient ``g2.T @ cols`` and the transposed
convolution ``g2 @ W2`` followed by a scatter-add of the patches (:func:`col2im`), with
``g2`` the ``(batch * H_o * W_o, C_out)`` matrix of the target-side values. Each of the
three is one large GEMM in BLAS (all of the batch and all positions at once, inner
dimension ``C_in * kh * kw``), which runs near the machine's peak floating-point rate;
the patch gather and scatter are ``kh * kw`` strided copies, memory-bound, O(batch *
positions * C_in * kh * kw), cheaper than the product by a factor ``C_out``. The Numba
kernels (allocation-free, for the solvers) are the next step; this module is the
reference they will be tested against, and a GPU implementation of the coupling is one
more module with the same five functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from eqprop.graph import pool as P
from eqprop.graph.model import Coupling, Layer

__all__ = [
    "ConvSpec",
    "check",
    "col2im",
    "conv2d",
    "conv2d_transpose",
    "conv_output_hw",
    "energy_term",
    "feedback_drive",
    "feedback_gradient",
    "feedback_kernel",
    "forward_drive",
    "im2col",
    "weight_gradient",
]


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of a ``conv2d`` coupling (the kernel size is ``W``'s last two axes).

    Parameters
    ----------
    stride : int
        Step of the kernel, both axes (>= 1).
    padding : int
        Zeros added on each side of both axes (>= 0).
    pool : {"max", "avg"} or None
        Pooling of the convolution's output before it reaches the target.
    pool_size : int
        Square pooling window (>= 1).
    pool_stride : int or None
        Step of the pooling window; None: ``pool_size`` (no overlap).
    input_hw : (int, int) or None
        Height and width of the source image, filled in by the network's check (from the
        source layer's shape); leave None.
    """

    stride: int = 1
    padding: int = 0
    pool: str | None = None
    pool_size: int = 2
    pool_stride: int | None = None
    input_hw: tuple[int, int] | None = None

    @property
    def pool_step(self) -> int:
        return self.pool_size if self.pool_stride is None else self.pool_stride


def conv_output_hw(hw: tuple[int, int], kernel: tuple[int, int], stride: int, padding: int):
    """Height and width of the convolution's output (before pooling)."""
    return (
        (hw[0] + 2 * padding - kernel[0]) // stride + 1,
        (hw[1] + 2 * padding - kernel[1]) // stride + 1,
    )


def _int(value, lo: int, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"{where}: {what} must be an integer >= {lo}, got {value!r}")
    return int(value)


def check(c: Coupling, src: Layer, dst: Layer, dtype: np.dtype) -> None:
    """Check a ``conv2d`` coupling against its layers; cast ``W``, resolve ``c.conv``.

    Raises a one-line ``ValueError`` naming the coupling.
    """
    where = f"coupling {c.name!r}"
    for end, layer in (("source", src), ("target", dst)):
        if layer.shape is None:
            raise ValueError(
                f"{where}: a conv2d coupling needs a {end} layer with a shape (channels, "
                f"height, width); layer {layer.name!r} has none"
            )
    spec = ConvSpec() if c.conv is None else c.conv
    if not isinstance(spec, ConvSpec):
        raise ValueError(f"{where}: conv must be a ConvSpec, got {type(spec).__name__}")
    stride = _int(spec.stride, 1, "stride", where)
    padding = _int(spec.padding, 0, "padding", where)
    if spec.pool is not None and spec.pool not in P.POOLS:
        raise ValueError(f"{where}: unknown pool {spec.pool!r}; choose 'max', 'avg' or None")
    pool_size = _int(spec.pool_size, 1, "pool_size", where)
    pool_stride = (
        None if spec.pool_stride is None else _int(spec.pool_stride, 1, "pool_stride", where)
    )
    if spec.pool == "max" and dtype.kind == "c":
        raise ValueError(f"{where}: max pooling is undefined for dtype {dtype.name}; use 'avg'")
    assert src.shape is not None and dst.shape is not None
    w = np.asarray(c.W)
    c_in, H, Wd = src.shape
    if w.ndim != 4 or w.shape[0] != dst.shape[0] or w.shape[1] != c_in:
        raise ValueError(
            f"{where}: W must have shape (target channels, source channels, kh, kw) = "
            f"({dst.shape[0]}, {c_in}, kh, kw), got {w.shape}"
        )
    if spec.input_hw is not None and tuple(spec.input_hw) != (H, Wd):
        raise ValueError(
            f"{where}: conv.input_hw {spec.input_hw} differs from the source shape's "
            f"({H}, {Wd}); leave it None"
        )
    ho, wo = conv_output_hw((H, Wd), w.shape[2:], stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{where}: kernel {w.shape[2:]} with padding {padding} does not fit the "
            f"source image ({H}, {Wd})"
        )
    want = (ho, wo)
    if spec.pool is not None:
        step = pool_size if pool_stride is None else pool_stride
        want = P.pool_output_hw((ho, wo), pool_size, step)
        if want[0] < 1 or want[1] < 1:
            raise ValueError(
                f"{where}: pool_size {pool_size} is larger than the convolution's output "
                f"({ho}, {wo})"
            )
    if dst.shape != (w.shape[0], *want):
        raise ValueError(
            f"{where}: target layer {dst.name!r} must have shape {(w.shape[0], *want)} "
            f"(convolution{' and pooling' if spec.pool else ''} of {src.shape}), got "
            f"{dst.shape}"
        )
    if c.feedback in ("free", "random"):
        if c.B is None:
            raise ValueError(f"{where}: feedback {c.feedback!r} needs B")
        bm = np.asarray(c.B)
        if bm.shape != w.shape:
            raise ValueError(
                f"{where}: B must have W's shape (target channels, source channels, kh, "
                f"kw) = {w.shape}, got {bm.shape}"
            )
        c.B = np.array(bm, dtype=dtype)
    elif c.B is not None:
        raise ValueError(f"{where}: feedback {c.feedback!r} takes no B (it uses W)")
    c.W = np.array(w, dtype=dtype)
    c.conv = replace(
        spec,
        stride=stride,
        padding=padding,
        pool_size=pool_size,
        pool_stride=pool_stride,
        input_hw=(H, Wd),
    )


# ----------------------------------------------------------------------------- im2col
def _image(c: Coupling, a: np.ndarray) -> np.ndarray:
    """Flat activity (batch, C_in*H*W) as an image (batch, C_in, H, W) (a view)."""
    H, W = c.conv.input_hw
    return a.reshape(a.shape[0], c.W.shape[1], H, W)


def im2col(img: np.ndarray, kernel: tuple[int, int], stride: int, padding: int) -> np.ndarray:
    """Patches of ``img`` (batch, C, H, W), zero-padded: (batch * Ho * Wo, C * kh * kw).

    Row ``(b * Ho + i) * Wo + j`` holds the patch whose top-left corner is at
    ``(i * stride, j * stride)`` of the padded image, in the order ``(c, p, q)`` of
    ``W.reshape(C_out, -1)``'s columns.
    """
    if padding:
        img = np.pad(img, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(img, kernel, axis=(2, 3))[:, :, ::stride, ::stride]
    B, C, Ho, Wo, kh, kw = win.shape
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B * Ho * Wo, C * kh * kw)


def col2im(
    cols: np.ndarray,
    image_shape: tuple[int, int, int, int],
    kernel: tuple[int, int],
    stride: int,
    padding: int,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: patches scatter-added back into an image of
    ``image_shape`` (batch, C, H, W) (padding cropped)."""
    B, C, H, W = image_shape
    kh, kw = kernel
    Ho, Wo = conv_output_hw((H, W), kernel, stride, padding)
    patches = cols.reshape(B, Ho, Wo, C, kh, kw)
    out = np.zeros((B, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for p in range(kh):
        for q in range(kw):
            out[
                :, :, p : p + stride * (Ho - 1) + 1 : stride, q : q + stride * (Wo - 1) + 1 : stride
            ] += patches[:, :, :, :, p, q].transpose(0, 3, 1, 2)
    if padding:
        out = out[:, :, padding:-padding, padding:-padding]
    return out


def _rows(img: np.ndarray) -> np.ndarray:
    """(batch, K, Ho, Wo) -> (batch * Ho * Wo, K), the GEMM layout of target values."""
    K = img.shape[1]
    return np.ascontiguousarray(img.transpose(0, 2, 3, 1)).reshape(-1, K)


def conv2d(img: np.ndarray, W: np.ndarray, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation of ``img`` (batch, C_in, H, W) with ``W`` (C_out, C_in, kh, kw):
    (batch, C_out, Ho, Wo), as ``torch.nn.functional.conv2d`` without bias."""
    B = img.shape[0]
    Ho, Wo = conv_output_hw(img.shape[2:], W.shape[2:], stride, padding)
    out = im2col(img, W.shape[2:], stride, padding) @ W.reshape(W.shape[0], -1).T
    return out.reshape(B, Ho, Wo, W.shape[0]).transpose(0, 3, 1, 2)


def conv2d_transpose(
    g: np.ndarray, W: np.ndarray, hw: tuple[int, int], stride: int = 1, padding: int = 0
) -> np.ndarray:
    """Adjoint of :func:`conv2d` (the transposed convolution): ``g`` (batch, C_out, Ho,
    Wo) -> (batch, C_in, H, W) with ``(H, W) = hw``, so that
    :math:`\\langle \\mathrm{conv}(x), g\\rangle = \\langle x, \\mathrm{conv}^\\top(g)\\rangle`."""
    cols = _rows(g) @ W.reshape(W.shape[0], -1)
    return col2im(cols, (g.shape[0], W.shape[1], *hw), W.shape[2:], stride, padding)


# ----------------------------------------------------------------------------- pooling
def _pool(c: Coupling, z: np.ndarray, route: np.ndarray | None):
    """Pooled ``z`` and the max-pool routing (argmax of ``route`` if given, else of z)."""
    spec = c.conv
    if spec.pool is None:
        return z, None
    if spec.pool == "avg":
        return P.avg_pool(z, spec.pool_size, spec.pool_step), None
    _, index = P.max_pool(z if route is None else route, spec.pool_size, spec.pool_step)
    flat = z.reshape(z.shape[0], z.shape[1], -1)
    pooled = np.take_along_axis(flat, index.reshape(*index.shape[:2], -1), axis=2)
    return pooled.reshape(index.shape), index


def _unpool(c: Coupling, g: np.ndarray, index, hw: tuple[int, int]) -> np.ndarray:
    """:math:`P'^\\top g`: pooled-shape values back to the convolution's output shape."""
    spec = c.conv
    if spec.pool is None:
        return g
    if spec.pool == "avg":
        return P.avg_pool_adjoint(g, spec.pool_size, spec.pool_step, hw)
    return P.max_pool_adjoint(g, index, hw)


def _conv_hw(c: Coupling) -> tuple[int, int]:
    return conv_output_hw(c.conv.input_hw, c.W.shape[2:], c.conv.stride, c.conv.padding)


def _target_image(c: Coupling, a_dst: np.ndarray, a_src: np.ndarray | None, at) -> np.ndarray:
    """:math:`P'(z)^\\top a_{dst}` as an image (batch, C_out, Ho, Wo), z the convolution of
    ``at`` (default ``a_src``), which sets the max-pool routing."""
    spec = c.conv
    index = None
    if spec.pool == "max":
        route = a_src if at is None else at
        assert route is not None
        z = conv2d(_image(c, route), c.W, spec.stride, spec.padding)
        _, index = P.max_pool(z, spec.pool_size, spec.pool_step)
        shape = index.shape
    else:
        Ho, Wo = _conv_hw(c)
        if spec.pool is None:
            shape = (a_dst.shape[0], c.W.shape[0], Ho, Wo)
        else:
            shape = (
                a_dst.shape[0],
                c.W.shape[0],
                *P.pool_output_hw((Ho, Wo), spec.pool_size, spec.pool_step),
            )
    return _unpool(c, a_dst.reshape(shape), index, _conv_hw(c))


# ----------------------------------------------------------------------------- the five
def forward_drive(c: Coupling, a_src: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """:math:`P(\\mathrm{conv}(a_{src}))` flattened, (batch, n_dst). ``at`` (same shape as
    ``a_src``): take the max-pool argmax from ``conv(at)`` instead (the coupling's
    linearisation at ``at``, for Jacobians); ignored without max pooling."""
    spec = c.conv
    z = conv2d(_image(c, a_src), c.W, spec.stride, spec.padding)
    route = None
    if at is not None and spec.pool == "max":
        route = conv2d(_image(c, at), c.W, spec.stride, spec.padding)
    pooled, _ = _pool(c, z, route)
    return pooled.reshape(a_src.shape[0], -1)


def feedback_kernel(c: Coupling) -> np.ndarray:
    """The kernel the feedback's transposed convolution uses, (C_out, C_in, kh, kw):
    ``W`` (tied, scaled) or ``B`` (free, random)."""
    if c.feedback in ("free", "random"):
        assert c.B is not None
        return c.B
    return c.W


def feedback_drive(c: Coupling, a_dst: np.ndarray, a_src: np.ndarray | None = None) -> np.ndarray:
    """What the source receives, (batch, n_src):
    :math:`\\mathrm{conv}_K^\\top(P'(z)^\\top a_{dst})` with
    :math:`z = \\mathrm{conv}_W(a_{src})` and :math:`K` = ``W`` (tied), ``W`` times
    :math:`\\gamma` (scaled) or ``B`` (free, random: :func:`feedback_kernel`).

    ``a_src`` is needed with max pooling only: it sets the argmax routing, always that of
    the forward convolution with ``W`` (the feedback runs back through the positions the
    forward pass selected, as feedback alignment replaces only the transposed weights,
    Lillicrap et al. 2016)."""
    if c.conv.pool == "max" and a_src is None:
        raise ValueError(
            f"coupling {c.name!r}: the feedback of a max-pooled conv2d coupling needs the "
            "source activity a_src (the argmax routing)"
        )
    g = _target_image(c, a_dst, a_src, None)
    K = feedback_kernel(c)
    back = conv2d_transpose(g, K, c.conv.input_hw, c.conv.stride, c.conv.padding)
    back = back.reshape(a_dst.shape[0], -1)
    return c.gamma * back if c.feedback == "scaled" else back


def energy_term(c: Coupling, a_src: np.ndarray, a_dst: np.ndarray) -> np.ndarray:
    """:math:`-\\langle a_{dst}, P(\\mathrm{conv}(a_{src}))\\rangle` per sample (tied only)."""
    if c.feedback != "tied":
        raise ValueError(
            f"coupling {c.name!r}: feedback {c.feedback!r} has no energy term; only "
            "feedback='tied' has one"
        )
    return -np.sum(forward_drive(c, a_src) * a_dst, axis=1)


def weight_gradient(
    c: Coupling, a_src: np.ndarray, a_dst: np.ndarray, at: np.ndarray | None = None
) -> np.ndarray:
    """:math:`\\partial F/\\partial W` (C_out, C_in, kh, kw), batch mean:
    :math:`-\\overline{\\mathrm{rows}(P'^\\top a_{dst})^\\top\\,\\mathrm{im2col}(a_{src})}`.
    ``at``: the max-pool routing from ``conv(at)`` instead of ``conv(a_src)``."""
    spec = c.conv
    g = _rows(_target_image(c, a_dst, a_src, at))
    cols = im2col(_image(c, a_src), c.W.shape[2:], spec.stride, spec.padding)
    return -(g.T @ cols).reshape(c.W.shape) / a_src.shape[0]


def feedback_gradient(
    c: Coupling, a_src: np.ndarray, a_dst: np.ndarray, at: np.ndarray | None = None
) -> np.ndarray | None:
    """Local term of a free ``B`` (C_out, C_in, kh, kw), batch mean; None unless
    ``feedback="free"``.

    The conv counterpart of the dense :math:`-a_{dst}^\\top a_{src}/\\mathrm{batch}`: the
    product of the activities the feedback connects, in ``B``'s shape. The feedback drive
    :math:`\\mathrm{conv}_B^\\top(P'^\\top a_{dst})` into the source is linear in ``B``,
    and :math:`\\langle a_{src}, \\mathrm{conv}_B^\\top(g)\\rangle = \\langle
    \\mathrm{conv}_B(a_{src}), g\\rangle`, so the term is
    :math:`-\\overline{\\mathrm{rows}(P'^\\top a_{dst})^\\top\\,\\mathrm{im2col}(a_{src})}`,
    :func:`weight_gradient`'s formula (with ``W``'s max-pool routing at ``at``, default
    ``a_src``). With ``B = W`` it equals ``W``'s term, so EP's contrast gives ``B`` the
    same update as ``W`` (the dense rule gives ``B`` the transpose of ``W``'s; a conv
    ``B`` is stored in ``W``'s layout, its adjoint taken by the transposed convolution).
    """
    if c.feedback != "free":
        return None
    return weight_gradient(c, a_src, a_dst, at)
