"""Numba loops of the ``conv2d`` coupling: patch gather/scatter (im2col and its adjoint)
and pooling in the GEMM's row layout, with the max-pool routing.

Shared by the general graph kernels (:mod:`eqprop.graph.kernels`, the map that
:mod:`solvers` iterates) and the fast path (:mod:`eqprop.graph.conv_kernels`), so the two
compute each convolution with the same loops (and the same tie rule of the max pool).
Every function overwrites or accumulates into arrays it is given: no allocation. Layouts
(``M = batch * H_o * W_o`` convolution positions, ``K = C_in * kh * kw``): activities
``(batch, C*H*W)`` (images flattened in C order; any row stride, unit column stride),
patches transposed ``(K, M)``, convolution outputs ``(M, C_out)`` (the GEMM's rows).
"""

from __future__ import annotations

from numba import njit

__all__ = ["col2im_add", "im2col_into", "mean_pool_rows_add", "pool_rows_add", "unpool_rows"]


@njit(cache=True)
def _valid_j(q, stride, pad, W, Wo):
    """Output columns ``j`` whose input column ``j*stride + q - pad`` is inside [0, W)."""
    lo = 0 if q >= pad else (pad - q + stride - 1) // stride
    top = W - 1 + pad - q
    hi = 0 if top < 0 else min(Wo, top // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def im2col_into(a, colsT, C, H, W, kh, kw, stride, pad, Ho, Wo):
    """Patches of the images ``a`` (batch, C*H*W), zero-padded by ``pad``, into
    ``colsT`` (C*kh*kw, batch*Ho*Wo), overwritten: entry ``[(c*kh + p)*kw + q,
    (b*Ho + i)*Wo + j]`` is ``a[b, c, i*stride + p - pad, j*stride + q - pad]`` (0
    outside). The transpose of :func:`eqprop.graph.conv.im2col`'s matrix: each kernel
    offset ``(c, p, q)`` is one row, so the inner loop runs along an image row (branch
    free, contiguous for stride 1) rather than along a ``kw``-long kernel row; stride 1
    has its own loop nest (:func:`_im2col_unit`)."""
    if stride == 1:
        _im2col_unit(a, colsT, C, H, W, kh, kw, pad, Ho, Wo)
        return
    B = a.shape[0]
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            for q in range(kw):
                k = (c * kh + p) * kw + q
                j0, j1 = _valid_j(q, stride, pad, W, Wo)
                for b in range(B):
                    for i in range(Ho):
                        m0 = (b * Ho + i) * Wo
                        y = i * stride + p - pad
                        if y < 0 or y >= H:
                            for j in range(Wo):
                                colsT[k, m0 + j] = 0.0
                            continue
                        src = base + y * W + q - pad
                        for j in range(j0):
                            colsT[k, m0 + j] = 0.0
                        for j in range(j0, j1):
                            colsT[k, m0 + j] = a[b, src + j * stride]
                        for j in range(j1, Wo):
                            colsT[k, m0 + j] = 0.0


@njit(cache=True)
def _im2col_unit(a, colsT, C, H, W, kh, kw, pad, Ho, Wo):
    """:func:`im2col_into` at stride 1: the output rows ``i`` whose input row is in the
    padding are zeroed in two runs, so the loop over the others has no branch (10-25 %
    faster than testing each row, float32, P-conv and Laborieux-style sizes)."""
    B = a.shape[0]
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            ilo = min(Ho, max(0, pad - p))  # rows i in [ilo, ihi) read inside the image
            ihi = max(ilo, min(Ho, H + pad - p))
            for q in range(kw):
                row = colsT[(c * kh + p) * kw + q]
                j0, j1 = _valid_j(q, 1, pad, W, Wo)
                n = j1 - j0
                for b in range(B):
                    ab = a[b]
                    mb = b * Ho * Wo
                    for m in range(mb, mb + ilo * Wo):
                        row[m] = 0.0
                    for m in range(mb + ihi * Wo, mb + Ho * Wo):
                        row[m] = 0.0
                    for i in range(ilo, ihi):
                        m0 = mb + i * Wo
                        src = base + (i + p - pad) * W + q - pad
                        for j in range(j0):
                            row[m0 + j] = 0.0
                        for j in range(n):
                            row[m0 + j0 + j] = ab[src + j0 + j]
                        for j in range(j1, Wo):
                            row[m0 + j] = 0.0


@njit(cache=True)
def col2im_add(colsT, out, C, H, W, kh, kw, stride, pad, Ho, Wo, scale):
    """Adjoint of :func:`im2col_into`: ``out[b, c*H*W + y*W + x] += scale * colsT[(c*kh
    + p)*kw + q, (b*Ho + i)*Wo + j]`` for every patch entry inside the image (the
    padding is dropped). Stride 1 with ``scale = 1`` (the tied feedback) has its own
    loop nest, without the multiplication (float32, P-conv's and Laborieux-style
    sizes: 0.64-0.72x the time of the general nest)."""
    if stride == 1 and scale == 1.0:
        _col2im_unit(colsT, out, C, H, W, kh, kw, pad, Ho, Wo)
        return
    B = out.shape[0]
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            for q in range(kw):
                k = (c * kh + p) * kw + q
                j0, j1 = _valid_j(q, stride, pad, W, Wo)
                for b in range(B):
                    for i in range(Ho):
                        y = i * stride + p - pad
                        if y < 0 or y >= H:
                            continue
                        m0 = (b * Ho + i) * Wo
                        dst = base + y * W + q - pad
                        for j in range(j0, j1):
                            out[b, dst + j * stride] += scale * colsT[k, m0 + j]


@njit(cache=True)
def _col2im_unit(colsT, out, C, H, W, kh, kw, pad, Ho, Wo):
    """:func:`col2im_add` at stride 1 and scale 1 (no stride or scale multiplication in
    the inner loop)."""
    B = out.shape[0]
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            for q in range(kw):
                k = (c * kh + p) * kw + q
                j0, j1 = _valid_j(q, 1, pad, W, Wo)
                for b in range(B):
                    for i in range(Ho):
                        y = i + p - pad
                        if y < 0 or y >= H:
                            continue
                        m0 = (b * Ho + i) * Wo
                        dst = base + y * W + q - pad
                        for j in range(j0, j1):
                            out[b, dst + j] += colsT[k, m0 + j]


@njit(cache=True)
def pool_rows_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp):
    """Pool ``z`` (batch*Ho*Wo, O) (the GEMM's row layout) and add it to ``out`` (batch,
    O*Hp*Wp) (channel-major image layout). ``is_max``: window maximum (first in C order
    on ties, as ``numpy.argmax``; a NaN wins, as there), its position ``i*Wo + j`` in
    ``index`` (batch, O*Hp*Wp); else the window mean, :func:`mean_pool_rows_add`
    (``size = 1``: no pooling)."""
    if not is_max:
        mean_pool_rows_add(z, out, O, Ho, Wo, size, step, Hp, Wp)
        return
    B = out.shape[0]
    for b in range(B):
        for o in range(O):
            for ip in range(Hp):
                for jp in range(Wp):
                    k = (o * Hp + ip) * Wp + jp
                    i0, j0 = ip * step, jp * step
                    best = z[(b * Ho + i0) * Wo + j0, o]
                    at = i0 * Wo + j0
                    for p in range(size):
                        for q in range(size):
                            v = z[(b * Ho + i0 + p) * Wo + j0 + q, o]
                            if best == best and (v > best or v != v):
                                best = v
                                at = (i0 + p) * Wo + j0 + q
                    out[b, k] += best
                    index[b, k] = at


@njit(cache=True)
def mean_pool_rows_add(z, out, O, Ho, Wo, size, step, Hp, Wp):
    """Average-pool ``z`` (batch*Ho*Wo, O) (the GEMM's row layout) and add it to ``out``
    (batch, O*Hp*Wp) (channel-major image layout):
    :math:`\\text{out}_{b,(o,i_p,j_p)} \\mathrel{+}= s^{-2} \\sum_{p,q<s}
    z_{(b, i_p t + p, j_p t + q), o}` (window ``s = size``, step ``t``; ``size = 1``: no
    pooling). Real or complex ``z`` (holomorphic EP's average pool): the sum starts from
    the window's first entry plus ``0.0``, so it needs no zero of ``z``'s type and sums in
    double precision (float32 windows as a sum started from ``0.0``, to the bit; complex64
    ones in complex128)."""
    B = out.shape[0]
    inv = 1.0 / (size * size)
    for b in range(B):
        for o in range(O):
            for ip in range(Hp):
                for jp in range(Wp):
                    i0, j0 = ip * step, jp * step
                    tot = z[(b * Ho + i0) * Wo + j0, o] + 0.0
                    for p in range(size):
                        for q in range(size):
                            if p or q:
                                tot += z[(b * Ho + i0 + p) * Wo + j0 + q, o]
                    out[b, (o * Hp + ip) * Wp + jp] += tot * inv


@njit(cache=True)
def unpool_rows(a, index, g, is_max, O, Ho, Wo, size, step, Hp, Wp):
    """Adjoint of :func:`pool_rows_add`: ``g`` (batch*Ho*Wo, O) overwritten with
    :math:`P'^\\top a`, ``a`` (batch, O*Hp*Wp): each value added at its window's argmax
    (``is_max``) or spread as ``a / size**2`` over its window."""
    B = a.shape[0]
    g[:, :] = 0.0
    inv = 1.0 / (size * size)
    for b in range(B):
        for o in range(O):
            for ip in range(Hp):
                for jp in range(Wp):
                    k = (o * Hp + ip) * Wp + jp
                    v = a[b, k]
                    if is_max:
                        g[b * Ho * Wo + index[b, k], o] += v
                    else:
                        share = v * inv
                        i0, j0 = ip * step, jp * step
                        for p in range(size):
                            for q in range(size):
                                g[(b * Ho + i0 + p) * Wo + j0 + q, o] += share
