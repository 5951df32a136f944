"""Numba loops of the ``conv2d`` coupling: patch gather/scatter (im2col and its adjoint)
and pooling in the GEMM's row layout, with the max-pool routing.

Shared by the general graph kernels (:mod:`eqprop.graph.kernels`, the map that
:mod:`solvers` iterates) and the fast path (:mod:`eqprop.graph.conv_kernels`), so the two
compute each convolution with the same loops (and the same tie rule of the max pool).
Every function overwrites or accumulates into arrays it is given: no allocation. Layouts
(``M = batch * H_o * W_o`` convolution positions, ``K = C_in * kh * kw``): activities
``(batch, C*H*W)`` (images flattened in C order; any row stride, unit column stride),
patches transposed ``(K, M)``, convolution outputs ``(M, C_out)`` (the GEMM's rows).

Two orders of the ``M`` positions: *sample-major* ``m = (b*H_o + i)*W_o + j``
(:func:`im2col_into`, :func:`col2im_add`, :func:`pool_rows_add`, :func:`unpool_rows`;
the general graph kernels) and *position-major* ``m = (i*W_o + j)*batch + b``
(:func:`im2col_posmajor`, :func:`col2im_posmajor_add` and the ``_strided`` pooling
loops; the fast path :mod:`eqprop.graph.conv_kernels`). Position-major patches are read
from the activities transposed to ``(C*H*W, batch)`` (:func:`transpose_into`): at stride
1 a patch row's values for one output row ``i`` are then ``W_o * batch`` consecutive
values of the source (P-conv's ``h1 -> h2``: runs of 160, against runs of ``W_o = 8``
in the sample-major order), so the gather and the scatter are long unit-stride copies.
"""

from __future__ import annotations

from numba import njit

__all__ = [
    "add_transposed",
    "col2im_add",
    "col2im_posmajor_add",
    "im2col_into",
    "im2col_posmajor",
    "mean_pool_rows_add",
    "pool_rows_add",
    "pool_rows_strided_add",
    "pool_rows_vector_add",
    "transpose_into",
    "unpool_rows",
    "unpool_rows_strided",
    "unpool_rows_vector",
]


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
def transpose_into(a, aT):
    """``aT[i, b] = a[b, i]``: activities ``(batch, n)`` into ``(n, batch)``
    (C-contiguous), the source layout of :func:`im2col_posmajor`."""
    B, n = a.shape
    for i in range(n):
        for b in range(B):
            aT[i, b] = a[b, i]


@njit(cache=True)
def add_transposed(u, uT):
    """``u[b, i] += uT[i, b]``: a drive accumulated in the ``(n, batch)`` layout of
    :func:`col2im_posmajor_add` added to its ``(batch, n)`` drive."""
    B, n = u.shape
    for b in range(B):
        for i in range(n):
            u[b, i] += uT[i, b]


@njit(cache=True, inline="always")
def _copy_run(dst, src):
    """``dst[:] = src`` (1-d views of one length). Written on views indexed from 0:
    LLVM vectorises this form, not the same loop on offsets into the whole arrays
    (``row[d0 + t] = af[s0 + t]``: 2x slower at P-conv's sizes)."""
    for t in range(dst.shape[0]):
        dst[t] = src[t]


@njit(cache=True, inline="always")
def _add_run(dst, src, scale):
    """``dst += scale * src`` (1-d views of one length); ``scale == 1`` without the
    multiplication. On views indexed from 0, as :func:`_copy_run`: the same
    accumulation on offsets into the whole arrays stays scalar (``vaddss``, 5x slower
    on a run of 160)."""
    if scale == 1.0:
        for t in range(dst.shape[0]):
            dst[t] += src[t]
    else:
        for t in range(dst.shape[0]):
            dst[t] += scale * src[t]


@njit(cache=True)
def im2col_posmajor(aT, colsT, C, H, W, kh, kw, stride, pad, Ho, Wo, i0, i1):
    """Patches of the output rows ``i`` in ``[i0, i1)``, position-major: ``colsT[(c*kh +
    p)*kw + q, ((i - i0)*Wo + j)*B + b] = a[b, c, i*stride + p - pad, j*stride + q -
    pad]`` (0 outside the image), from ``aT`` (C*H*W, B) (:func:`transpose_into`);
    ``colsT`` (C*kh*kw, >= (i1 - i0)*Wo*B) C-contiguous, its first ``(i1 - i0)*Wo*B``
    columns overwritten. The same entries as :func:`im2col_into`'s columns ``(b*Ho +
    i)*Wo + j``. At stride 1 the valid ``(j, b)`` of one output row are one copy of
    ``(j1 - j0)*B`` consecutive values."""
    B = aT.shape[1]
    af = aT.reshape(-1)
    WB = Wo * B
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            for q in range(kw):
                row = colsT[(c * kh + p) * kw + q]
                j0, j1 = _valid_j(q, stride, pad, W, Wo)
                for i in range(i0, i1):
                    m0 = (i - i0) * WB
                    y = i * stride + p - pad
                    if y < 0 or y >= H:
                        for t in range(WB):
                            row[m0 + t] = 0.0
                        continue
                    for t in range(j0 * B):
                        row[m0 + t] = 0.0
                    for t in range(j1 * B, WB):
                        row[m0 + t] = 0.0
                    src = (base + y * W + q - pad) * B
                    if stride == 1:
                        d0, s0, n = m0 + j0 * B, src + j0 * B, (j1 - j0) * B
                        _copy_run(row[d0 : d0 + n], af[s0 : s0 + n])
                    else:
                        for j in range(j0, j1):
                            d0, s0 = m0 + j * B, src + j * stride * B
                            _copy_run(row[d0 : d0 + B], af[s0 : s0 + B])


@njit(cache=True)
def col2im_posmajor_add(colsT, outT, C, H, W, kh, kw, stride, pad, Ho, Wo, i0, i1, scale):
    """Adjoint of :func:`im2col_posmajor` (the rows ``[i0, i1)``): ``outT[c*H*W + y*W +
    x, b] += scale * colsT[(c*kh + p)*kw + q, ((i - i0)*Wo + j)*B + b]`` for every patch
    entry inside the image, ``outT`` (C*H*W, B) C-contiguous (add it to the drive with
    :func:`add_transposed`)."""
    B = outT.shape[1]
    of = outT.reshape(-1)
    WB = Wo * B
    for c in range(C):
        base = c * H * W
        for p in range(kh):
            for q in range(kw):
                row = colsT[(c * kh + p) * kw + q]
                j0, j1 = _valid_j(q, stride, pad, W, Wo)
                for i in range(i0, i1):
                    y = i * stride + p - pad
                    if y < 0 or y >= H:
                        continue
                    m0 = (i - i0) * WB
                    dst = (base + y * W + q - pad) * B
                    if stride == 1:
                        d0, s0, n = dst + j0 * B, m0 + j0 * B, (j1 - j0) * B
                        _add_run(of[d0 : d0 + n], row[s0 : s0 + n], scale)
                    else:
                        for j in range(j0, j1):
                            d0, s0 = dst + j * stride * B, m0 + j * B
                            _add_run(of[d0 : d0 + B], row[s0 : s0 + B], scale)


@njit(cache=True)
def pool_rows_strided_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp, sb, sp):
    """Pool ``z`` (M, O) (the GEMM's row layout; position ``(b, i, j)`` in row ``b*sb +
    (i*Wo + j)*sp``: ``(Ho*Wo, 1)`` sample-major, ``(1, batch)`` position-major) and add
    it to ``out`` (batch, O*Hp*Wp) (channel-major image layout). ``is_max``: window
    maximum (first in C order on ties, as ``numpy.argmax``; a NaN wins, as there), its
    position ``i*Wo + j`` in ``index`` (batch, O*Hp*Wp); else the window mean (``size =
    1``: no pooling). The channel loop runs inside the loop over windows, so that a
    window's ``size**2`` rows of ``z`` are read along their length, not one channel at
    a time down the columns (0.85-0.9x the time, position-major, float32, P-conv's
    ``h1 -> h2`` and the Laborieux-style layers)."""
    if not is_max:
        mean_pool_rows_add(z, out, O, Ho, Wo, size, step, Hp, Wp, sb, sp)
        return
    B = out.shape[0]
    HWp = Hp * Wp
    for b in range(B):
        for ip in range(Hp):
            for jp in range(Wp):
                i0, j0 = ip * step, jp * step
                k0 = ip * Wp + jp
                first = b * sb + (i0 * Wo + j0) * sp
                for o in range(O):
                    k = o * HWp + k0
                    at = i0 * Wo + j0
                    best = z[first, o]
                    for p in range(size):
                        for q in range(size):
                            pos = (i0 + p) * Wo + j0 + q
                            v = z[b * sb + pos * sp, o]
                            if best == best and (v > best or v != v):
                                best = v
                                at = pos
                    out[b, k] += best
                    index[b, k] = at


@njit(cache=True)
def mean_pool_rows_add(z, out, O, Ho, Wo, size, step, Hp, Wp, sb, sp):
    """Average-pool ``z`` (M, O) (the GEMM's row layout, position ``(b, i, j)`` in row
    ``b*sb + (i*Wo + j)*sp``, as :func:`pool_rows_strided_add`) and add it to ``out``
    (batch, O*Hp*Wp) (channel-major image layout):
    :math:`\\text{out}_{b,(o,i_p,j_p)} \\mathrel{+}= s^{-2} \\sum_{p,q<s}
    z_{(b, i_p t + p, j_p t + q), o}` (window ``s = size``, step ``t``; ``size = 1``: no
    pooling). Real or complex ``z`` (holomorphic EP's average pool): the sum starts from
    the window's first entry plus ``0.0``, so it needs no zero of ``z``'s type and sums in
    double precision (float32 windows as a sum started from ``0.0``, to the bit; complex64
    ones in complex128)."""
    B = out.shape[0]
    inv = 1.0 / (size * size)
    HWp = Hp * Wp
    for b in range(B):
        for ip in range(Hp):
            for jp in range(Wp):
                i0, j0 = ip * step, jp * step
                k0 = ip * Wp + jp
                first = b * sb + (i0 * Wo + j0) * sp
                for o in range(O):
                    tot = z[first, o] + 0.0
                    for p in range(size):
                        for q in range(size):
                            if p or q:
                                tot += z[b * sb + ((i0 + p) * Wo + j0 + q) * sp, o]
                    out[b, o * HWp + k0] += tot * inv


@njit(cache=True)
def pool_rows_vector_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp, sb, sp, best, at):
    """:func:`pool_rows_strided_add` (same arguments, same result, the same tie and NaN
    rule) vectorised over the channels: each window position's row of ``z`` is folded
    into the running maxima (or sums) ``best`` (O,) and positions ``at`` (O,) int64,
    scratch buffers of the caller, with selects instead of branches (the comparison is
    a coin flip on real data). 0.33-0.36x the time of the scalar loop (max pool,
    position-major,
    float32, P-conv's ``h1 -> h2`` and the Laborieux-style layers); the fast path's
    pooling, which owns the scratch (the general graph kernels keep the scalar loop,
    allocation-free without it)."""
    B = out.shape[0]
    inv = 1.0 / (size * size)
    HWp = Hp * Wp
    for b in range(B):
        for ip in range(Hp):
            for jp in range(Wp):
                i0, j0 = ip * step, jp * step
                k0 = ip * Wp + jp
                pos0 = i0 * Wo + j0
                if is_max:
                    r = z[b * sb + pos0 * sp]
                    for o in range(O):
                        best[o] = r[o]
                        at[o] = pos0
                else:
                    best[:] = 0.0
                for p in range(size):
                    for q in range(size):
                        pos = (i0 + p) * Wo + j0 + q
                        r = z[b * sb + pos * sp]
                        if is_max:
                            for o in range(O):
                                v = r[o]
                                bo = best[o]
                                take = (bo == bo) & ((v > bo) | (v != v))
                                best[o] = v if take else bo
                                at[o] = pos if take else at[o]
                        else:
                            for o in range(O):
                                best[o] += r[o]
                if is_max:
                    for o in range(O):
                        out[b, o * HWp + k0] += best[o]
                        index[b, o * HWp + k0] = at[o]
                else:
                    for o in range(O):
                        out[b, o * HWp + k0] += best[o] * inv


@njit(cache=True)
def pool_rows_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp):
    """:func:`pool_rows_strided_add` of a sample-major ``z`` (batch*Ho*Wo, O)."""
    pool_rows_strided_add(z, out, index, is_max, O, Ho, Wo, size, step, Hp, Wp, Ho * Wo, 1)


@njit(cache=True)
def unpool_rows_strided(a, index, g, is_max, O, Ho, Wo, size, step, Hp, Wp, sb, sp):
    """Adjoint of :func:`pool_rows_strided_add` (the same row strides ``sb``, ``sp``):
    ``g`` (M, O) overwritten with :math:`P'^\\top a`, ``a`` (batch, O*Hp*Wp): each value
    added at its window's argmax (``is_max``) or spread as ``a / size**2`` over its
    window."""
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
                        g[b * sb + index[b, k] * sp, o] += v
                    else:
                        share = v * inv
                        i0, j0 = ip * step, jp * step
                        for p in range(size):
                            for q in range(size):
                                g[b * sb + ((i0 + p) * Wo + j0 + q) * sp, o] += share


@njit(cache=True)
def unpool_rows_vector(a, index, g, is_max, O, Ho, Wo, size, step, Hp, Wp, sb, sp):
    """:func:`unpool_rows_strided` (same arguments, same result to the bit) with the
    channel loop innermost: :math:`g = P'^\\top a`, ``g`` (M, O) zeroed, then for each
    window ``(b, i_p, j_p)`` and channel ``o``, ``a_{b,(o,i_p,j_p)}`` added at row
    ``b*sb + index*sp`` (``is_max``: the window's argmax, Ernoult et al. 2019's routing of
    the feedback through the max-pool) or ``a / size**2`` along the window's rows (mean).
    Each ``g`` entry receives its additions in the scalar loop's order (windows in C
    order for a fixed ``(b, o)``), so overlapping windows sum identically. The mean's
    spread writes whole rows of ``g``; the max's scatter touches one window's ``size**2``
    rows (in cache) instead of striding down a column of ``g`` per channel. The fast
    path's unpool (the general graph kernels keep the scalar loop)."""
    B = a.shape[0]
    g[:, :] = 0.0
    inv = 1.0 / (size * size)
    HWp = Hp * Wp
    for b in range(B):
        ab = a[b]
        ib = index[b]
        for ip in range(Hp):
            for jp in range(Wp):
                k0 = ip * Wp + jp
                if is_max:
                    for o in range(O):
                        k = o * HWp + k0
                        g[b * sb + ib[k] * sp, o] += ab[k]
                else:
                    i0, j0 = ip * step, jp * step
                    for p in range(size):
                        for q in range(size):
                            r = g[b * sb + ((i0 + p) * Wo + j0 + q) * sp]
                            for o in range(O):
                                r[o] += ab[o * HWp + k0] * inv


@njit(cache=True)
def unpool_rows(a, index, g, is_max, O, Ho, Wo, size, step, Hp, Wp):
    """:func:`unpool_rows_strided` into a sample-major ``g`` (batch*Ho*Wo, O)."""
    unpool_rows_strided(a, index, g, is_max, O, Ho, Wo, size, step, Hp, Wp, Ho * Wo, 1)
