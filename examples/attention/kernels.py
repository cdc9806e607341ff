"""The cmlang kernels of the attention examples.

The CM way: a kernel instance (a CM thread) holds tiles in registers: a tile of
query rows ``matrix[f32, M, D]``, a tile of transposed keys ``matrix[f32, D, KB]`` and
of values ``matrix[f32, KB, D]``, loaded with 2-D block loads; matrix products are
``cm.dpas``; row maxima and sums are ``cm.reduce_max/sum(..., axis=1)``; masks are
``cm.merge``.  Softmax runs in base 2: queries are pre-scaled by log2(e)/sqrt(d), so
``exp2(s - m)`` is ``exp(scale * q.k - m')``.

Layouts: the user's q/k/v are [N, H, d] (token-major).  K is packed once into
transposed, zero-padded, head-major form kt [Hkv, d, Np] (columns are keys, so a
key tile is one block load and the right operand of dpas), V into vp [Hkv, Np, d] and,
where a kernel streams them, the queries into qs/qp [Hq, Np, d].  A dpas whose operands
are loads used only there runs as a loop over k reading them from memory (see the
README's "Operands in memory"), so kernels load operands right before the dpas.
Outputs go to the user's layout with per-row stores guarded by ``t < n``.
"""
from __future__ import annotations

import cmlang as cm
from cmlang import f32, i32, vector, matrix

NEG_INF = float("-inf")
POS_INF = float("inf")
NO_BLOCK = 1 << 30        # larger than any block index
K_CHUNK = 16              # the K of each dpas: a product over d or over keys runs in 16-wide slices,
                          # so one slice of the right operand is live at a time (register pressure)

# A for loop may take a bound computed with a scalar cm.min/cm.max (infllm_select does): the
# SIMT code generator broadcasts a computed bound (and a while condition made with a scalar
# min/max/abs) from lane 0, so the Intel OpenCL CPU runtime's vectorizer sees it as uniform
# and does not predicate the loop.


# --------------------------------------------------------------------------- layout

TOKENS = 16               # tokens per CM thread of the pack kernels (one 16 x 16 tile of kt)


@cm.func
def transpose_keys(k, kt, t0: i32, g: i32, n: i32, hkv: i32, padded: i32, D: cm.constexpr, P: cm.constexpr):
    """kt[g, :, t0:t0+TOKENS] = k[t0:t0+TOKENS, g, :]^T, zero for tokens >= n.  With all
    tokens valid: 16 x 16 tiles loaded by rows and transposed in registers (column moves);
    otherwise one masked gather per row of kt (about 1.4x slower)."""
    if t0 + TOKENS <= n and D % 16 == 0:
        for c0 in cm.static_range(0, D, 16):
            tile = cm.load(k, (t0 * hkv + g) * D + c0, (TOKENS, 16), hkv * D)
            columns = cm.zeros(matrix[P, 16, TOKENS])
            for c in cm.static_range(16):
                columns[c] = tile.column(c)
            cm.store(kt, (g * D + c0) * padded + t0, columns, padded)
    else:
        tokens = cm.iota(i32, TOKENS) + t0
        rows = (tokens * hkv + g) * D
        for c in cm.static_range(D):
            cm.store(kt, (g * D + c) * padded + t0, cm.gather(k, rows + c, tokens < n).astype(P))


@cm.kernel(simd=16)
def pack_keys(k: cm.ptr[T], kt: cm.ptr[P], n: i32, hkv: i32, padded: i32, D: cm.constexpr, T: cm.constexpr,
              P: cm.constexpr):
    """kt[g, :, t] = k[t, g, :] for TOKENS tokens, zeros for n <= t < padded.  T: the input's
    element type (f32, f16, bf16); P: the packed one (T, or f32 where the device has no
    systolic unit for T: the CPU runtime multiplies f32 fastest)."""
    transpose_keys(k, kt, cm.thread_id(0) * TOKENS, cm.thread_id(1), n, hkv, padded, D, P)


@cm.kernel(simd=16)
def pack_values(v: cm.ptr[T], vp: cm.ptr[P], n: i32, hkv: i32, padded: i32, D: cm.constexpr, T: cm.constexpr,
                P: cm.constexpr):
    """vp[g, t, :] = v[t, g, :] for TOKENS tokens, zeros for n <= t < padded.  (Apart from
    pack_keys: one kernel writing both ran at half the speed of the two.)"""
    t0 = cm.thread_id(0) * TOKENS
    g = cm.thread_id(1)
    for r in cm.static_range(TOKENS):
        row = cm.zeros(vector[P, D])
        if t0 + r < n:
            row = cm.load(v, ((t0 + r) * hkv + g) * D, D).astype(P)
        cm.store(vp, (g * padded + t0 + r) * D, row)


@cm.kernel(simd=16)
def compress_keys(k: cm.ptr[T], kct: cm.ptr[P], hkv: i32, length: i32, stride: i32, padded: i32,
                  D: cm.constexpr, T: cm.constexpr, P: cm.constexpr):
    """kct[g, :, j] = mean of k[stride*j + r, g, :] over r < length (transposed like kt), summed
    in f32 from element type T, stored in P (as pack_keys)."""
    j = cm.thread_id(0)
    g = cm.thread_id(1)
    total = cm.zeros(vector[f32, D])
    for r in range(length):
        total += cm.load(k, ((stride * j + r) * hkv + g) * D, D).astype(f32)
    cm.scatter(kct, g * D * padded + cm.iota(i32, D) * padded + j, (total * (1.0 / length)).astype(P))


@cm.func
def load_rows(p, first: i32, count: i32, pitch: i32, offset: i32, scale: f32, M: cm.constexpr,
              D: cm.constexpr):
    """matrix[f32, M, D] of rows first..first+M-1 of p (row r at r*pitch + offset), times
    scale; rows at or past count are zero (never read)."""
    tile = cm.zeros(matrix[f32, M, D])
    for r in cm.static_range(M):
        if first + r < count:
            tile[r] = cm.load(p, (first + r) * pitch + offset, D).astype(f32) * scale
    return tile


@cm.func
def store_rows(p, tile, first: i32, count: i32, pitch: i32, offset: i32, M: cm.constexpr):
    """Rows first.. of p (row r at r*pitch + offset) = the rows of tile that are < count."""
    for r in cm.static_range(M):
        if first + r < count:
            cm.store(p, (first + r) * pitch + offset, tile[r])


@cm.func
def scale_rows(tile, factors, M: cm.constexpr):
    """tile[r, :] *= factors[r]."""
    for r in cm.static_range(M):
        tile[r] = tile[r] * factors[r]
    return tile


@cm.func
def operand_tile(p, row: i32, col: i32, pitch: i32, rows_end: i32, R: cm.constexpr, C: cm.constexpr,
                 BLOCK2D: cm.constexpr):
    """The R x C tile at (row, col) of the matrix p (rows ``pitch`` elements apart): with
    BLOCK2D a 2-D block load from the surface of rows < rows_end (PVC's block messages; the
    b operand of a systolic dpas is read VNNI-packed by the load), else rows by cm.load (a
    dpas then streams it from memory on the CPU runtime)."""
    if BLOCK2D:
        return cm.load_2d(p, (R, C), col, row, pitch, rows_end, pitch)
    return cm.load(p, row * pitch + col, (R, C), pitch)


@cm.func
def matmul_tiles(acc, a, b_ptr, b_row: i32, b_pitch: i32, b_rows_end: i32, K: cm.constexpr, N: cm.constexpr,
                 NC: cm.constexpr, BLOCK2D: cm.constexpr):
    """acc + a @ B, B the K x N matrix at row b_row of b_ptr (rows b_pitch apart, b_rows_end
    rows in all), in column tiles of NC (dividing N) and K_CHUNK rows: one K_CHUNK x NC slice
    of B is live at a time (a systolic dpas reads it from registers; NC = N and whole-K slices
    where K_CHUNK does not divide K).  Slices come by ``operand_tile``."""
    KC = K_CHUNK if K % K_CHUNK == 0 else K
    for n0 in cm.static_range(0, N, NC):
        for k in cm.static_range(0, K, KC):
            acc[:, n0:n0 + NC] = cm.dpas(acc[:, n0:n0 + NC], a[:, k:k + KC].astype(b_ptr.dtype),
                                         operand_tile(b_ptr, b_row + k, n0, b_pitch, b_rows_end, KC, NC, BLOCK2D))
    return acc


@cm.func
def matmul_chunked(acc, a, b_ptr, b_offset: i32, b_pitch: i32, K: cm.constexpr, N: cm.constexpr):
    """acc + a @ B where a is matrix[f32, M, K] in registers and B [K, N] is in memory
    (rows b_pitch apart): one dpas per K_CHUNK rows of B (all K when K_CHUNK does not divide
    it), each slice loaded where it is used.  The dpas multiplies in B's element type: a
    bf16/f16 B takes a rounded to it (the systolic unit's inputs), f32 in f32."""
    KC = K_CHUNK if K % K_CHUNK == 0 else K
    for k in cm.static_range(0, K, KC):
        acc = cm.dpas(acc, a[:, k:k + KC].astype(b_ptr.dtype), cm.load(b_ptr, b_offset + k * b_pitch, (KC, N), b_pitch))
    return acc


@cm.func
def staged_times_values(acc, p, staged, vp, v_row: i32, M: cm.constexpr, KB: cm.constexpr, D: cm.constexpr,
                        VN: cm.constexpr):
    """acc + p @ V[v_row:v_row + KB] (rows of D elements) with p [M, KB] stored first in the
    SLM buffer ``staged`` (of V's element type: the product's input type, as matmul_tiles
    rounds a): each VN-column product then reads both operands from memory
    (the CPU profile's form: one loop over the KB keys per column tile, its accumulators
    in registers and nothing else; picking p's elements from registers there spills)."""
    cm.store(staged, 0, p.astype(vp.dtype))
    for n0 in cm.static_range(0, D, VN):
        acc[:, n0:n0 + VN] = cm.dpas(acc[:, n0:n0 + VN], cm.load(staged, 0, (M, KB), KB),
                                     cm.load(vp, v_row * D + n0, (KB, VN), D))
    return acc


@cm.func
def softmax_step(s, m, l, M: cm.constexpr):
    """One online-softmax step over the score tile s (base 2, masked entries -inf):
    returns (p, m_new, l_new, alpha), alpha being the factor that rescales what was
    accumulated so far.  Rows with nothing unmasked yet keep m = -inf."""
    m_new = cm.max(m, cm.reduce_max(s, axis=1))
    m_safe = cm.merge(m_new, 0.0, m_new > NEG_INF)
    alpha = cm.exp2(m - m_safe)
    for r in cm.static_range(M):
        s[r] = cm.exp2(s[r] - m_safe[r])
    return s, m_new, l * alpha + cm.reduce_sum(s, axis=1), alpha


# --------------------------------------------------------------------------- dense

@cm.kernel(simd=16)
def pack_queries(q: cm.ptr[T], qs: cm.ptr[P], n: i32, hq: i32, padded: i32, scale: f32, D: cm.constexpr,
                 T: cm.constexpr, P: cm.constexpr):
    """qs[h, t, :] = q[t, h, :] * scale for TOKENS tokens, zero for n <= t < padded: the query
    rows of a head as one block, so a dpas can read its left operand where it lies.  Scaled
    in f32, stored in P (as pack_keys; one more rounding of a bf16/f16 query)."""
    t0 = cm.thread_id(0) * TOKENS
    h = cm.thread_id(1)
    for r in cm.static_range(TOKENS):        # row by row: a 16 x d f32 tile spills on GPUs
        row = cm.zeros(vector[P, D])
        if t0 + r < n:
            row = (cm.load(q, (t0 + r) * hq * D + h * D, D).astype(f32) * scale).astype(P)
        cm.store(qs, (h * padded + t0 + r) * D, row)


@cm.kernel(simd=16)
def flash_attention(qs: cm.ptr[T], kt: cm.ptr[T], vp: cm.ptr[T], o: cm.ptr[O], n: i32, hq: i32,
                    group: i32, padded: i32,
                    D: cm.constexpr, M: cm.constexpr, KB: cm.constexpr, KD: cm.constexpr, VN: cm.constexpr,
                    CAUSAL: cm.constexpr, BLOCK2D: cm.constexpr, STAGE_P: cm.constexpr, T: cm.constexpr,
                    O: cm.constexpr):
    """Flash attention: a CM thread owns M query rows of one head; K/V tiles of KB keys.
    qs holds the queries pre-scaled (pack_queries); the S = Q K^T dpas reads its query
    operand from memory (Q is not kept in registers: picking its elements there spills),
    as one product over all of d (KD = D: the CPU runtime streams it as one loop) or in
    KD-wide slices of d (KD = 16 for the systolic unit, whose operands are registers: a
    whole 128 x 64 key tile would not fit the register file); likewise P V in VN-column
    tiles of V (VN = D on the CPU).  BLOCK2D: the K^T and V slices come by 2-D block loads
    (PVC: kt's rows are d, so a K^T slice is a plain block, for bf16/f16 the VNNI-packing
    load of the dpas's b), else by rows (operand_tile).  T: the element type of the packed
    Q, K, V (f32, f16 or bf16: the dpas input type, so bf16/f16 products go to the systolic
    unit); softmax state and accumulator are f32; O: the output's element type.
    STAGE_P: P goes through SLM, so that P V reads it from memory as Q K^T reads Q
    (staged_times_values, the CPU profile's form), in VN-column tiles over all KB keys.
    The block loads' surfaces are given as hq * D rows of kt and hq * padded of vp (at least
    the hkv groups' rows; no tile reaches past its group's): sizes of scalar arguments, so
    the launch proves that they fit the block messages, and IGC builds the messages alone,
    without the per-element fallback of a surface checked at run time (a height computed
    from the thread's group, (g + 1) * D, kept it: ten times the key loop's code)."""
    t0 = cm.thread_id(0) * M
    h = cm.thread_id(1)
    g = h // group
    m = cm.full(vector[f32, M], NEG_INF)
    l = cm.zeros(vector[f32, M])
    acc = cm.zeros(matrix[f32, M, D])
    if STAGE_P:
        staged = cm.slm(T, M * KB)
    end = n
    if CAUSAL:
        end = t0 + M              # keys past n are zero padding, masked like the future
    kt_pitch = padded             # kt's rows; padded is a multiple of 16 (dense_attention pads so):
    if not BLOCK2D and T.bits == 16:      # spelled so, 16-bit rows of K^T start on whole dwords
        kt_pitch = (padded >> 4) << 4     # for the compiler: sub-group block reads, not gathers
    for j0 in range(0, end, KB):
        s = cm.zeros(matrix[f32, M, KB])
        for d0 in cm.static_range(0, D, KD):
            s = cm.dpas(s, cm.load(qs, (h * padded + t0) * D + d0, (M, KD), D),
                        operand_tile(kt, g * D + d0, j0, kt_pitch, hq * D, KD, KB, BLOCK2D))
        keys = cm.iota(i32, KB) + j0
        for r in cm.static_range(M):
            if CAUSAL:
                s[r] = cm.merge(s[r], NEG_INF, keys <= t0 + r)
            else:
                s[r] = cm.merge(s[r], NEG_INF, keys < n)
        p, m, l, alpha = softmax_step(s, m, l, M)
        acc = scale_rows(acc, alpha, M)
        if STAGE_P:
            acc = staged_times_values(acc, p, staged, vp, g * padded + j0, M, KB, D, VN)
        else:
            acc = matmul_tiles(acc, p, vp, g * padded + j0, D, hq * padded, KB, D, VN, BLOCK2D)
    store_rows(o, scale_rows(acc, 1.0 / l, M).astype(O), t0, n, hq * D, h * D, M)


# --------------------------------------------------------------------------- Lightning

@cm.func
def lightning_tile(p, row: i32, col: i32, rows: i32, pitch: i32, R: cm.constexpr, N: cm.constexpr,
                   B2D: cm.constexpr):
    """The [R, N] tile at (row, col) of p, an array of ``rows`` rows ``pitch`` elements long,
    for a dpas that takes it from registers: a 2-D block load where B2D (PVC's block messages;
    the b operand of a systolic dpas is then read VNNI-packed), else R row loads (one
    message each, where a 2-D load of 16-bit data is one per element and its per-lane
    addresses spill)."""
    if B2D:
        return cm.load_2d(p, (R, N), col, row, pitch, rows, pitch)
    tile = cm.zeros(matrix[p.dtype, R, N])
    for r in cm.static_range(R):
        tile[r] = cm.load(p, (row + r) * pitch + col, N)
    return tile


@cm.kernel(simd=16)
def lightning_intra(q: cm.ptr[T], kt: cm.ptr[P], decay_mask: cm.ptr[f32], powers: cm.ptr[f32],
                    p_out: cm.ptr[P], qp: cm.ptr[P], ktw: cm.ptr[P], n: i32, hq: i32, group: i32,
                    padded: i32, n_chunks: i32, D: cm.constexpr, C: cm.constexpr, M: cm.constexpr,
                    NC: cm.constexpr, KC: cm.constexpr, R: cm.constexpr, B2D: cm.constexpr, T: cm.constexpr,
                    P: cm.constexpr):
    """What one chunk (C tokens) of head h needs that does not depend on the state, for
    all chunks in parallel: p_out[h, chunk] = (Q K^T) (.) decay_mask[h] (decay_mask[h, i, j]
    = lambda^(i-j) for j <= i, else 0); qp[h] = the chunk's query rows, head-major and zero
    past n; ktw[h] = K^T diag(lambda^(L-1-j)) of the chunk (L its length, zero past L): the
    left factor of its contribution to the state.  powers[h, p] = lambda_h^p, p <= C.
    T: the element type of q; P: that of the packed operands (as pack_keys), computed in f32.
    Tiles: M query rows; Q K^T in KC-wide slices of d (KC = 0: one product streamed from
    memory, the CPU's form and f32's on GPUs; 16: the systolic unit's, from registers, in
    tiles of NC keys where NC > 0 divides C, the K tiles by 2-D block loads where B2D); ktw
    R rows per loop step."""
    chunk = cm.thread_id(0)
    h = cm.thread_id(1)
    g = h // group
    c0 = chunk * C
    KN = NC if KC > 0 and NC > 0 and C % NC == 0 else C       # keys per Q K^T tile
    for i0 in range(0, C, M):
        q_row = h * padded + c0 + i0
        for r in cm.static_range(M):                # row by row: an M x d f32 tile spills on DG2
            row = cm.zeros(vector[P, D])
            if c0 + i0 + r < n:
                row = cm.load(q, ((c0 + i0 + r) * hq + h) * D, D).astype(P)
            cm.store(qp, (q_row + r) * D, row)
        for n0 in cm.static_range(0, C, KN):
            s = lightning_product(cm.zeros(matrix[f32, M, KN]), qp, q_row, 0, hq * padded, D,   # kt has hkv*D
                                  kt, g * D, c0 + n0, hq * D, padded, D, KC, B2D, M, KN)     # <= hq*D rows
            for r in cm.static_range(M):
                s[r] = s[r] * cm.load(decay_mask, (h * C + i0 + r) * C + n0, KN)
            cm.store(p_out, ((h * n_chunks + chunk) * C + i0) * C + n0, s.astype(P), C)
    length = cm.min(C, n - c0)
    jj = cm.iota(i32, C)
    weights = cm.gather(powers, h * (C + 1) + length - 1 - jj, jj < length)      # lambda^(L-1-j), 0 past L
    for r0 in range(0, D, R):                   # R rows of 1-D loads and stores (a 16-bit
        for r in cm.static_range(R):            # 2-D tile is one message per element on GPUs)
            row = cm.load(kt, (g * D + r0 + r) * padded + c0, C).astype(f32) * weights
            cm.store(ktw, (h * D + r0 + r) * padded + c0, row.astype(P))


@cm.func
def lightning_product(acc, a, a_row: i32, a_col: i32, a_rows: i32, a_pitch: i32, b, b_row: i32, b_col: i32,
                      b_rows: i32, b_pitch: i32, K: cm.constexpr, KC: cm.constexpr, B2D: cm.constexpr,
                      M: cm.constexpr, N: cm.constexpr):
    """acc [M, N] + A[a_row:+M, a_col:+K] @ B[b_row:+K, b_col:+N] of two arrays in memory
    (a_rows x a_pitch, b_rows x b_pitch), one dpas per KC of K (KC = 0: one product over all
    of K, streamed from memory; 16: the systolic unit's tiles, in registers).  B is rounded
    to A's element type (an f32 state times bf16 queries: the dpas inputs)."""
    if KC == 0:                          # 2-D loads used only here: read where they lie
        acc = cm.dpas(acc, cm.load(a, a_row * a_pitch + a_col, (M, K), a_pitch),
                      cm.load(b, b_row * b_pitch + b_col, (K, N), b_pitch).astype(a.dtype))
    else:
        for k0 in range(0, K, KC):      # a loop: IGC hoists the loads of unrolled slices, and spills
            acc = cm.dpas(acc, lightning_tile(a, a_row, a_col + k0, a_rows, a_pitch, M, KC, False),
                          lightning_tile(b, b_row + k0, b_col, b_rows, b_pitch, KC, N, B2D).astype(a.dtype))
    return acc


@cm.func
def scan_output(o, qp, state, powers, intra, q_row: i32, c0: i32, i0: i32, n: i32, hq: i32, pw: i32,
                h: i32, e0: i32, q_rows: i32, scale: f32, D: cm.constexpr, M: cm.constexpr,
                NT: cm.constexpr, KC: cm.constexpr, B2D: cm.constexpr, O: cm.constexpr):
    """Rows i0..i0+M-1 of O_n = s [P V + diag(lambda^(i+1)) Q H], given their intra part
    (the state rounded to the packed operands' type, as the right operand of Q H)."""
    inter = lightning_product(cm.zeros(matrix[f32, M, NT]), qp, q_row, 0, q_rows, D, state, h * D, e0,
                              (h + 1) * D, D, D, KC, False, M, NT)
    out = intra + scale_rows(inter, cm.load(powers, pw + i0 + 1, M), M)
    store_rows(o, (out * scale).astype(O), c0 + i0, n, hq * D, h * D + e0, M)


@cm.kernel(simd=16)
def lightning_scan(qp: cm.ptr[P], vp: cm.ptr[P], p: cm.ptr[P], ktw: cm.ptr[P], powers: cm.ptr[f32],
                   state: cm.ptr[f32], o: cm.ptr[O], n: i32, hq: i32, group: i32, padded: i32,
                   n_chunks: i32, scale: f32,
                   D: cm.constexpr, C: cm.constexpr, M: cm.constexpr, NT: cm.constexpr, KS: cm.constexpr,
                   KC: cm.constexpr, B2D: cm.constexpr, P: cm.constexpr, O: cm.constexpr):
    """The chunk scan: a CM thread owns NT columns of one head's state H [D, D], kept in
    ``state`` itself (updated in place, chunk by chunk).  Per chunk n (length L):
    O_n = s [P_n V_n + diag(lambda^(i+1)) Q_n H] and H <- lambda^L H + ktw_n V_n.
    Every operand is loaded right before the dpas that uses it, from the packed, padded
    arrays (rows D floats apart: the user's [N, H, d] rows are H*d apart, 4 KiB at
    H*d = 1024, and such a tile's rows all fall in one set of the CPU's L1 cache), so the
    products stream from memory into M x NT accumulators and nothing big stays live.

    P is lower triangular: rows i0..i0+M-1 have nothing past key i0+M-1.  KS = 0 unrolls
    the chunk's row tiles, each product as wide as its triangle row (the CPU runtime's
    fastest form); KS > 0 walks the row tiles and their keys in loops, KS keys per dpas
    (on Intel GPUs the unrolled form spills registers); a last KS past the triangle reads
    P's zeros (C % KS == 0).  The Q H and state products take KC of their K (D, C) per dpas
    (KC = 0: all, streamed from memory; 16: the systolic unit's).  B2D: the V tiles (right
    operands) by 2-D block loads.

    P: the packed operands' element type (the dpas inputs; the f32 state is rounded to it
    as the right operand of Q H); O: the output's."""
    e0 = cm.thread_id(0) * NT
    h = cm.thread_id(1)
    g = h // group
    pw = h * (C + 1)
    hd = h * D * D + e0
    p_rows = hq * n_chunks * C
    for chunk in range(n_chunks):
        c0 = chunk * C
        v_row = g * padded + c0
        p_row = (h * n_chunks + chunk) * C
        q_row = h * padded + c0
        if KS == 0:
            for i0 in cm.static_range(0, C, M):     # rows past the chunk's end are not stored
                intra = cm.dpas(cm.zeros(matrix[f32, M, NT]), cm.load(p, (p_row + i0) * C, (M, i0 + M), C),
                                cm.load(vp, v_row * D + e0, (i0 + M, NT), D))
                scan_output(o, qp, state, powers, intra, q_row + i0, c0, i0, n, hq, pw, h, e0, hq * padded,
                            scale, D, M, NT, KC, B2D, O)
        else:
            for i0 in range(0, C, M):
                intra = cm.zeros(matrix[f32, M, NT])
                for k0 in range(0, i0 + M, KS):
                    intra = cm.dpas(intra, lightning_tile(p, p_row + i0, k0, p_rows, C, M, KS, False),
                                    lightning_tile(vp, v_row + k0, e0, (g + 1) * padded, D, KS, NT, B2D))
                scan_output(o, qp, state, powers, intra, q_row + i0, c0, i0, n, hq, pw, h, e0, hq * padded,
                            scale, D, M, NT, KC, B2D, O)
        decay = cm.load(powers, pw + cm.min(C, n - c0), 1)[0]
        for r0 in range(0, D, M):
            rows = lightning_product(cm.load(state, hd + r0 * D, (M, NT), D) * decay, ktw, h * D + r0, c0,
                                     (h + 1) * D, padded, vp, v_row, e0, (g + 1) * padded, D, C, KC, B2D, M, NT)
            cm.store(state, hd + r0 * D, rows, D)


@cm.kernel(simd=16)
def lightning_step(q: cm.ptr[T], k: cm.ptr[T], v: cm.ptr[T], decay: cm.ptr[f32], state: cm.ptr[f32],
                   o: cm.ptr[O], group: i32, scale: f32, D: cm.constexpr, NT: cm.constexpr,
                   T: cm.constexpr, O: cm.constexpr):
    """One decode step on NT state columns of head h: H = lambda H + k^T v, o = s q H, in
    f32 (q, k, v of element type T, the state f32, o of type O)."""
    e0 = cm.thread_id(0) * NT
    h = cm.thread_id(1)
    g = h // group
    hs = cm.load(state, h * D * D + e0, (D, NT), D)
    hs = cm.dpas(hs * cm.load(decay, h, 1)[0], cm.load(k, g * D, (D, 1), 1).astype(f32),
                 cm.load(v, g * D + e0, (1, NT), NT).astype(f32))
    out = cm.dpas(cm.zeros(matrix[f32, 1, NT]), cm.load(q, h * D, (1, D), D).astype(f32), hs)
    cm.store(state, h * D * D + e0, hs, D)
    cm.store(o, h * D + e0, (out[0] * scale).astype(O))


# --------------------------------------------------------------------------- InfLLM-V2

@cm.func
def load_tile(p, x: i32, y: i32, width: i32, height: i32, pitch: i32, ROWS: cm.constexpr, COLS: cm.constexpr,
              BLOCK2D: cm.constexpr):
    """matrix[ROWS, COLS] at column x, row y of the surface p (width x height elements, rows
    pitch apart; the block lies inside it).  BLOCK2D: as a 2-D block load (on PVC a block
    message; as the right operand of a 16-bit dpas, one that packs it for the systolic
    unit), else as rows (the CPU runtime streams those into the dpas)."""
    if BLOCK2D:
        return cm.load_2d(p, (ROWS, COLS), x, y, width, height, pitch)
    return cm.load(p, y * pitch + x, (ROWS, COLS), pitch)


@cm.func
def rows_times_keys(acc, a, a_offset: i32, a_pitch: i32, kt, x: i32, y: i32, width: i32, height: i32,
                    M: cm.constexpr, K: cm.constexpr, N: cm.constexpr, KD: cm.constexpr,
                    BLOCK2D: cm.constexpr):
    """acc + A @ B in KD-deep slices: A the M rows of K elements at a_offset of a (a_pitch
    apart), B the (K, N) block of transposed keys at column x, row y of kt (width x height,
    pitch = width; the kernels give a height of hq * D for compressed keys of hkv * D <= hq * D
    rows: a form of scalar arguments a launch can prove fit for 2-D block messages, and the
    block never reaches past hkv * D).  KD = K: one product, both operands read where the dpas uses them (the
    CPU runtime streams them from memory); KD = 16: the systolic unit's form, the rows of A
    loaded into registers once, then one dpas per 16-row slice of B."""
    if KD == K:
        return cm.dpas(acc, cm.load(a, a_offset, (M, K), a_pitch).astype(kt.dtype),
                       load_tile(kt, x, y, width, height, width, K, N, BLOCK2D))
    rows = cm.zeros(matrix[kt.dtype, M, K])
    for r in cm.static_range(M):
        rows[r] = cm.load(a, a_offset + r * a_pitch, K).astype(kt.dtype)
    for k0 in cm.static_range(0, K, KD):
        acc = cm.dpas(acc, rows[:, k0:k0 + KD], load_tile(kt, x, y + k0, width, height, width, KD, N, BLOCK2D))
    return acc


@cm.kernel(simd=16)
def infllm_lse(q: cm.ptr[T], k2t: cm.ptr[P], lse: cm.ptr[f32], rows: i32, pos0: i32, hq: i32,
               group: i32, n2: i32, padded2: i32, lse_pitch: i32, l2: i32, s2: i32, qscale: f32,
               D: cm.constexpr, M: cm.constexpr, JT: cm.constexpr, KD: cm.constexpr, B2D: cm.constexpr,
               T: cm.constexpr, P: cm.constexpr):
    """Base-2 log-sum-exp of each query row over its visible second-level keys
    (s2*j + l2 - 1 <= t).  Rows that see none get +inf, so that every exp2(z - lse) is 0.
    q has whole tiles of M rows (the host pads it); z = q K2 reads its operands where they
    lie (rows_times_keys; KD, B2D: its slices and loads) and is scaled after."""
    r0 = cm.thread_id(0) * M
    h = cm.thread_id(1)
    g = h // group
    # windows visible to the tile's last row (padding rows included; <= 0: none, as // truncates)
    j_end = (pos0 + r0 + M - 1 - l2 + 1 + s2) // s2
    m = cm.full(vector[f32, M], NEG_INF)
    l = cm.zeros(vector[f32, M])
    for j0 in range(0, j_end, JT):
        z = rows_times_keys(cm.zeros(matrix[f32, M, JT]), q, r0 * hq * D + h * D, hq * D,
                            k2t, j0, g * D, padded2, hq * D, M, D, JT, KD, B2D) * qscale
        js = cm.iota(i32, JT) + j0
        ends = js * s2 + (l2 - 1)
        for r in cm.static_range(M):
            z[r] = cm.merge(z[r], NEG_INF, (ends <= pos0 + r0 + r) & (js < n2))
        p, m, l, alpha = softmax_step(z, m, l, M)
    out = cm.merge(m + cm.log2(l), POS_INF, l > 0.0)
    cm.store(lse, h * lse_pitch + r0, out)


@cm.kernel(simd=16)
def infllm_block_scores(q: cm.ptr[T], k1t: cm.ptr[P], lse: cm.ptr[f32], scores: cm.ptr[f32],
                        rows: i32, pos0: i32, hq: i32, group: i32, n1: i32, padded1: i32,
                        lse_pitch: i32, score_pitch: i32, rows_padded: i32, block: i32, l1: i32, s1: i32,
                        qscale: f32,
                        D: cm.constexpr, M: cm.constexpr, JT: cm.constexpr, R: cm.constexpr,
                        O: cm.constexpr, KD: cm.constexpr, B2D: cm.constexpr, T: cm.constexpr,
                        P: cm.constexpr):
    """Block scores of M query rows for KV head g.  S(t, j) = sum over the group's heads of
    exp2(z - lse) for visible j (0 for invisible j, -inf past the last window); the score of
    block b is the max of S over the windows overlapping it: its own R = block/s1 windows and
    the last O = l1/s1 - 1 windows of block b-1.  Writes blocks 0..(last row's block).
    q has whole tiles of M rows (the host pads it): z = q K1 reads its operands where they
    lie (rows_times_keys; KD, B2D: its slices and loads) and is scaled after."""
    r0 = cm.thread_id(0) * M
    g = cm.thread_id(1)
    j_end = ((pos0 + r0 + M - 1) // block + 1) * R     # windows of the blocks up to the last row's
    carry = cm.full(vector[f32, M], NEG_INF)     # tail max of the block before this tile
    for j0 in range(0, j_end, JT):
        js = cm.iota(i32, JT) + j0
        ends = js * s1 + (l1 - 1)
        total = cm.zeros(matrix[f32, M, JT])
        for i in range(group):
            h = g * group + i
            # the key tile's rows as h // group * D (= g * D): written from h, IGC keeps its
            # addresses in the head loop (hoisted out, they filled the register file)
            z = rows_times_keys(cm.zeros(matrix[f32, M, JT]), q, r0 * hq * D + h * D, hq * D,
                                k1t, j0, h // group * D, padded1, hq * D, M, D, JT, KD, B2D) * qscale
            lse_h = cm.load(lse, h * lse_pitch + r0, M)
            for r in cm.static_range(M):
                total[r] = total[r] + cm.merge(cm.exp2(z[r] - lse_h[r]), 0.0, ends <= pos0 + r0 + r)
        for r in cm.static_range(M):
            total[r] = cm.merge(total[r], NEG_INF, js < n1)
        windows = total.format(f32, M * (JT // R), R)                 # one row per (token, block)
        own = cm.reduce_max(windows, axis=1).format(f32, M, JT // R)
        best = own
        if O > 0:
            tail = cm.reduce_max(windows[:, R - O:R], axis=1).format(f32, M, JT // R)
            before = cm.zeros(matrix[f32, M, JT // R])
            before[:, 1:JT // R] = tail[:, 0:JT // R - 1]
            before[:, 0] = carry
            carry = tail[:, JT // R - 1]
            best = cm.max(own, before)
        cm.store(scores, (g * rows_padded + r0) * score_pitch + j0 // R, best, score_pitch)


@cm.kernel(simd=16)
def infllm_select(scores: cm.ptr[f32], selected: cm.ptr[i32], pos0: i32, hkv: i32, rows_padded: i32,
                  score_pitch: i32, n_blocks: i32, block: i32, init_blocks: i32, local_blocks: i32,
                  topk: i32, CB: cm.constexpr):
    """Top-k blocks of one (token, KV head) in the order (score desc, index asc); forced blocks
    score +inf.  Blocks after the token's own (bq) rank after every block <= bq unless they
    are forced init blocks, so only b <= max(bq, init-1) compete.  Picks are written in pick
    order, those > bq dropped, the rest of the row -1."""
    r = cm.thread_id(0)
    g = cm.thread_id(1)
    t = pos0 + r
    bq = t // block
    last = cm.min(n_blocks - 1, cm.max(bq, init_blocks - 1))
    row = (g * rows_padded + r) * score_pitch
    out = (r * hkv + g) * topk
    prev_s = POS_INF
    prev_b = -1
    count = 0
    for pick in range(cm.min(topk, last + 1)):
        best_s = NEG_INF
        best_b = NO_BLOCK
        for b0 in range(0, last + 1, CB):
            bs = cm.iota(i32, CB) + b0
            forced = (bs < init_blocks) | ((bs >= bq - local_blocks) & (bs <= bq))
            s = cm.merge(POS_INF, cm.load(scores, row + b0, CB), forced)
            after = (bs <= last) & ((s < prev_s) | ((s == prev_s) & (bs > prev_b)))
            s = cm.merge(s, NEG_INF, after)
            top = cm.reduce_max(s)
            first = cm.reduce_min(cm.merge(bs, NO_BLOCK, after & (s == top)))
            if top > best_s or (top == best_s and first < best_b):
                best_s = top
                best_b = first
        prev_s = best_s
        prev_b = best_b
        if best_b <= bq:
            cm.store(selected, out + count, best_b)
            count += 1
    for i in range(count, topk):
        cm.store(selected, out + i, -1)


@cm.kernel(simd=16)
def infllm_attend(q: cm.ptr[T], kt: cm.ptr[P], vp: cm.ptr[P], selected: cm.ptr[i32], o: cm.ptr[OT],
                  pos0: i32, hq: i32, hkv: i32, padded: i32, block: i32, topk: i32, qscale: f32,
                  D: cm.constexpr, G: cm.constexpr, KB: cm.constexpr, GR: cm.constexpr, KD: cm.constexpr,
                  VN: cm.constexpr, B2D: cm.constexpr, STAGE_P: cm.constexpr, T: cm.constexpr, P: cm.constexpr,
                  OT: cm.constexpr):
    """Block-sparse attention of GR of one token's G query heads (one KV head's group: they
    share the selection, so they are the rows of every dpas) over its selected blocks; a CM
    thread per (token, GR heads).  The S = q Kt dpas reads both operands where they lie, in
    KD-deep slices of d (rows_times_keys), and S is scaled after; P V runs in VN-column tiles
    of V, 16 keys per dpas (KD = VN = D: whole products streamed from memory, the CPU's form;
    KD = 16 and VN < D: the slices the systolic unit reads from registers; a VN that does
    not divide D means all of D).  B2D: K and V
    tiles by 2-D block loads.  STAGE_P: P V reads P from SLM (staged_times_values, the CPU's
    form; VN-column tiles over all KB keys).  T, P, OT: the element types of q, of the packed
    K/V (the dpas inputs) and of the output."""
    r = cm.thread_id(0)
    g = cm.thread_id(1) // (G // GR)
    base = (r * hq + g * G + cm.thread_id(1) % (G // GR) * GR) * D
    t = pos0 + r
    m = cm.full(vector[f32, GR], NEG_INF)
    l = cm.zeros(vector[f32, GR])
    acc = cm.zeros(matrix[f32, GR, D])
    if STAGE_P:
        staged = cm.slm(P, GR * KB)
    for i in range(topk):
        b = cm.load(selected, (r * hkv + g) * topk + i, 1)[0]
        if b >= 0:
            # b * block (KB divides block) spelt as a multiple of KB: a launch can then prove
            # the keys' column x whole dwords, as 2-D block messages of 16-bit data need
            first = b * (block // KB) * KB
            for j0 in range(first, first + block, KB):     # keys past t are masked
                s = rows_times_keys(cm.zeros(matrix[f32, GR, KB]), q, base, D, kt, j0, g * D, padded, hkv * D,
                                    GR, D, KB, KD, B2D) * qscale
                keys = cm.iota(i32, KB) + j0
                for row in cm.static_range(GR):
                    s[row] = cm.merge(s[row], NEG_INF, keys <= t)
                p, m, l, alpha = softmax_step(s, m, l, GR)
                acc = scale_rows(acc, alpha, GR)
                KC = K_CHUNK if KB % K_CHUNK == 0 else KB
                VW = VN if D % VN == 0 else D
                if STAGE_P:
                    acc = staged_times_values(acc, p, staged, vp, g * padded + j0, GR, KB, D, VW)
                else:
                    for n0 in cm.static_range(0, D, VW):
                        for k0 in cm.static_range(0, KB, KC):
                            acc[:, n0:n0 + VW] = cm.dpas(acc[:, n0:n0 + VW], p[:, k0:k0 + KC].astype(P),
                                                         load_tile(vp, n0, g * padded + j0 + k0, D, hkv * padded,
                                                                   D, KC, VW, B2D))
    cm.store(o, base, scale_rows(acc, 1.0 / l, GR).astype(OT), D)


# --------------------------------------------------------------------------- RoPE / RMSNorm

@cm.kernel(simd=16)
def rope_kernel(x: cm.ptr[T], cos_t: cm.ptr[f32], sin_t: cm.ptr[f32], out: cm.ptr[O],
                HEADS: cm.constexpr, HALF: cm.constexpr, HB: cm.constexpr, T: cm.constexpr, O: cm.constexpr):
    """NeoX rotation of every head of token t: [x1 c - x2 s, x2 c + x1 s], HB heads (rows of
    2*HALF) per 2-D block load and store (HB divides HEADS).  x of element type T, computed
    in f32, out of type O."""
    t = cm.thread_id(0)
    c = cm.load(cos_t, t * HALF, HALF)
    s = cm.load(sin_t, t * HALF, HALF)
    for h0 in cm.static_range(0, HEADS, HB):
        at = (t * HEADS + h0) * 2 * HALF
        rows = cm.load(x, at, (HB, 2 * HALF), 2 * HALF).astype(f32)
        rotated = cm.zeros(matrix[f32, HB, 2 * HALF])
        for h in cm.static_range(HB):
            x1 = rows[h, 0:HALF]
            x2 = rows[h, HALF:2 * HALF]
            rotated[h, 0:HALF] = x1 * c - x2 * s
            rotated[h, HALF:2 * HALF] = x2 * c + x1 * s
        cm.store(out, at, rotated.astype(O), 2 * HALF)


@cm.kernel(simd=16)
def rmsnorm_kernel(x: cm.ptr[T], weight: cm.ptr[f32], out: cm.ptr[O], n_rows: i32, eps: f32,
                   D: cm.constexpr, ROWS: cm.constexpr, T: cm.constexpr, O: cm.constexpr):
    """out = x / sqrt(mean(x^2) + eps) * weight, ROWS rows of D per CM thread; x of element
    type T, computed in f32, out of type O."""
    r0 = cm.thread_id(0) * ROWS
    w = cm.load(weight, 0, D)
    for i in cm.static_range(ROWS):
        if r0 + i < n_rows:
            row = cm.load(x, (r0 + i) * D, D).astype(f32)
            inv = cm.rsqrt(cm.reduce_sum(row * row) * (1.0 / D) + eps)
            cm.store(out, (r0 + i) * D, (row * inv * w).astype(O))
