"""OpenCL C source of the SIMT baselines: one work-item per output row or element,
work-group tiles in local memory where they are shared, written the way a competent
SIMT programmer would (FlashAttention-2 style per-tile rescaling, no per-key rescale).

Every kernel is compiled with -D D=<head dim> and the tile sizes named in its header.
Loops that index per-work-item arrays have compile-time trip counts and are fully
unrolled (``#pragma unroll``): the Intel CPU compiler vectorizes across work-items, and
a dynamically indexed private array becomes gathers and scatters (5-10x slower here).
"""

DENSE = r"""
// Flash attention, one work-item per query row; a work-group of WG consecutive rows
// of one head shares K/V tiles of TK keys in local memory.   -D D, WG, TK
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dense_attention(__global const float *q, __global const float *k, __global const float *v,
                     __global float *o, int n, int hq, int hkv, int causal, float scale)
{
    const int h = get_group_id(1), g = h / (hq / hkv);
    const int row0 = get_group_id(0) * WG, lid = get_local_id(0), t = row0 + lid;
    const bool active = t < n;
    __local float ks[TK * D], vs[TK * D];
    float qr[D], acc[D], p[TK];
    #pragma unroll
    for (int c = 0; c < D; ++c) {
        qr[c] = active ? q[((size_t)t * hq + h) * D + c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const int end = causal ? min(n, row0 + WG) : n;
    for (int j0 = 0; j0 < end; j0 += TK) {
        for (int e = lid; e < TK * D; e += WG) {
            const int j = j0 + e / D;
            const size_t at = ((size_t)j * hkv + g) * D + e % D;
            ks[e] = j < n ? k[at] : 0.0f;
            vs[e] = j < n ? v[at] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float tile_max = -INFINITY;
        #pragma unroll
        for (int jj = 0; jj < TK; ++jj) {
            float s = 0.0f;
            #pragma unroll
            for (int c = 0; c < D; ++c) s = fma(qr[c], ks[jj * D + c], s);
            const int j = j0 + jj;
            p[jj] = (j < n && (!causal || j <= t)) ? s : -INFINITY;
            tile_max = fmax(tile_max, p[jj]);
        }
        const float m_new = fmax(m, tile_max);
        const float alpha = m_new == -INFINITY ? 1.0f : exp(m - m_new);
        l *= alpha;
        #pragma unroll
        for (int c = 0; c < D; ++c) acc[c] *= alpha;
        #pragma unroll
        for (int jj = 0; jj < TK; ++jj) {
            const float pj = p[jj] == -INFINITY ? 0.0f : exp(p[jj] - m_new);
            l += pj;
            #pragma unroll
            for (int c = 0; c < D; ++c) acc[c] = fma(pj, vs[jj * D + c], acc[c]);
        }
        m = m_new;
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (active) {
        #pragma unroll
        for (int c = 0; c < D; ++c) o[((size_t)t * hq + h) * D + c] = acc[c] / l;
    }
}
"""

LIGHTNING = r"""
// Lightning attention, chunked.   -D D, C (chunk)
// powers[h * (C + 1) + p] = lambda_h^p for p = 0..C (float64 on the host, never lambda^-j).

// Intra-chunk scores: one work-item per row i of a chunk; the chunk's K tile in local memory.
// p_out[h][chunk][i][j] = (q_i . k_j) lambda^(i-j) for j <= i < L, else 0.
__kernel __attribute__((reqd_work_group_size(C, 1, 1)))
void lightning_intra(__global const float *q, __global const float *k, __global const float *powers,
                     __global float *p_out, int n, int hq, int hkv)
{
    const int i = get_local_id(0), chunk = get_group_id(1), h = get_group_id(2), g = h / (hq / hkv);
    const int c0 = chunk * C, L = min(C, n - c0);
    __local float ks[C * D];
    for (int e = i; e < C * D; e += C) {
        const int j = e / D;
        ks[e] = j < L ? k[((size_t)(c0 + j) * hkv + g) * D + e % D] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float qr[D];
    #pragma unroll
    for (int c = 0; c < D; ++c) qr[c] = i < L ? q[((size_t)(c0 + i) * hq + h) * D + c] : 0.0f;
    __global float *row = p_out + (((size_t)h * get_num_groups(1) + chunk) * C + i) * C;
    for (int j = 0; j < C; ++j) {
        float s = 0.0f;
        if (j <= i && i < L) {
            #pragma unroll
            for (int c = 0; c < D; ++c) s = fma(qr[c], ks[j * D + c], s);
            s *= powers[h * (C + 1) + i - j];
        }
        row[j] = s;
    }
}

// The scan over chunks: one work-item per column e of the state (and of the output);
// the chunk's Q, decayed K and intra scores in local memory, shared by the D columns.
__kernel __attribute__((reqd_work_group_size(D, 1, 1)))
void lightning_scan(__global const float *q, __global const float *k, __global const float *v,
                    __global const float *p, __global const float *powers, __global float *state,
                    __global float *o, int n, int hq, int hkv, float scale)
{
    const int e = get_local_id(0), h = get_group_id(1), g = h / (hq / hkv);
    const int n_chunks = (n + C - 1) / C;
    __global const float *pw = powers + h * (C + 1);
    __local float qs[C * D], kd[C * D], ps[C * C];
    float hcol[D], vcol[C];
    #pragma unroll
    for (int c = 0; c < D; ++c) hcol[c] = state[((size_t)h * D + c) * D + e];
    for (int chunk = 0; chunk < n_chunks; ++chunk) {
        const int c0 = chunk * C, L = min(C, n - c0);
        for (int x = e; x < C * D; x += D) {
            const int j = x / D, c = x % D;
            qs[x] = j < L ? q[((size_t)(c0 + j) * hq + h) * D + c] : 0.0f;
            kd[x] = j < L ? pw[L - 1 - j] * k[((size_t)(c0 + j) * hkv + g) * D + c] : 0.0f;
        }
        for (int x = e; x < C * C; x += D) ps[x] = p[((size_t)h * n_chunks + chunk) * C * C + x];
        #pragma unroll
        for (int j = 0; j < C; ++j) vcol[j] = j < L ? v[((size_t)(c0 + j) * hkv + g) * D + e] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int i = 0; i < L; ++i) {
            float intra = 0.0f, inter = 0.0f;
            // ps is 0 above the diagonal: skip the 8-key blocks past key i (a uniform test)
            #pragma unroll
            for (int j0 = 0; j0 < C; j0 += 8) {
                if (j0 <= i) {
                    #pragma unroll
                    for (int j = j0; j < j0 + 8 && j < C; ++j) intra = fma(ps[i * C + j], vcol[j], intra);
                }
            }
            #pragma unroll
            for (int c = 0; c < D; ++c) inter = fma(qs[i * D + c], hcol[c], inter);
            o[((size_t)(c0 + i) * hq + h) * D + e] = scale * (intra + pw[i + 1] * inter);
        }
        const float decay = pw[L];
        #pragma unroll
        for (int c = 0; c < D; ++c) {
            float u = 0.0f;
            #pragma unroll
            for (int j = 0; j < C; ++j) u = fma(kd[j * D + c], vcol[j], u);           // 0 past L
            hcol[c] = fma(decay, hcol[c], u);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    #pragma unroll
    for (int c = 0; c < D; ++c) state[((size_t)h * D + c) * D + e] = hcol[c];
}

// One decode step: one work-item per state column e of head h.
__kernel void lightning_decode(__global const float *q, __global const float *k, __global const float *v,
                               __global const float *decay, __global float *state, __global float *o,
                               int hq, int hkv, float scale)
{
    const int e = get_global_id(0), h = get_global_id(1), g = h / (hq / hkv);
    const float lam = decay[h], ve = v[g * D + e];
    float out = 0.0f;
    for (int c = 0; c < D; ++c) {
        const size_t at = ((size_t)h * D + c) * D + e;
        const float s = fma(lam, state[at], k[g * D + c] * ve);
        state[at] = s;
        out = fma(q[h * D + c], s, out);
    }
    o[h * D + e] = scale * out;
}
"""

INFLLM = r"""
// InfLLM-V2 sparse attention.   -D D, G (query heads per KV head), WG, TK, B (block)
// Compressed keys: out[j][g][c] = mean of k[stride*j + r][g][c], r < len.  One work-item per element.
__kernel void compress(__global const float *k, __global float *out, int hkv, int len, int stride)
{
    const int c = get_global_id(0), g = get_global_id(1), j = get_global_id(2);
    float s = 0.0f;
    for (int r = 0; r < len; ++r) s += k[((size_t)(stride * j + r) * hkv + g) * D + c];
    out[((size_t)j * hkv + g) * D + c] = s / len;
}

// lse[t][h] = log sum over visible K2_j of exp(scale q[t,h].K2_j) (-inf when none is visible).
// One work-item per token; a work-group of WG tokens of one head shares K2 tiles.
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void lse_kernel(__global const float *q, __global const float *k2, __global float *lse,
                int n, int hq, int hkv, int n2, int l2, int s2, float scale)
{
    const int h = get_group_id(1), g = h / G, lid = get_local_id(0);
    const int t = get_group_id(0) * WG + lid, t_last = min(n - 1, (int)get_group_id(0) * WG + WG - 1);
    const int visible = t < n ? clamp((t - l2 + 1 >= 0 ? (t - l2 + 1) / s2 + 1 : 0), 0, n2) : 0;
    const int tile_end = clamp((t_last - l2 + 1 >= 0 ? (t_last - l2 + 1) / s2 + 1 : 0), 0, n2);
    __local float ks[TK * D];
    float qr[D];
    #pragma unroll
    for (int c = 0; c < D; ++c) qr[c] = t < n ? scale * q[((size_t)t * hq + h) * D + c] : 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 < tile_end; j0 += TK) {
        for (int e = lid; e < TK * D; e += WG) {
            const int j = j0 + e / D;
            ks[e] = j < n2 ? k2[((size_t)j * hkv + g) * D + e % D] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < TK && j0 + jj < visible; ++jj) {
            float s = 0.0f;
            #pragma unroll
            for (int c = 0; c < D; ++c) s = fma(qr[c], ks[jj * D + c], s);
            const float m_new = fmax(m, s);
            l = l * exp(m - m_new) + exp(s - m_new);
            m = m_new;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t < n) lse[(size_t)t * hq + h] = visible ? m + log(l) : -INFINITY;
}

// Block scores: one work-item per (token, KV head).  S(t, j) = sum over the G heads of
// exp(scale q.K1_j - lse) for visible j (0 for existing invisible j); score(t, b) = max of
// S over the windows j overlapping block b, for the blocks b <= t / B (others unused).
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void block_scores(__global const float *q, __global const float *k1, __global const float *lse,
                  __global float *scores, int n, int hq, int hkv, int n1, int nb,
                  int l1, int s1, float scale)
{
    const int g = get_group_id(1), lid = get_local_id(0), t = get_group_id(0) * WG + lid;
    const int t_last = min(n - 1, (int)get_group_id(0) * WG + WG - 1);
    __local float ks[TK * D];
    __global float *row = scores + ((size_t)t * hkv + g) * nb;
    const int bq = t / B;
    if (t < n)
        for (int b = 0; b <= bq; ++b) row[b] = -INFINITY;
    // every j whose window touches a block <= the group's last token's block
    const int j_end = min(n1, ((t_last / B) * B + B - 1) / s1 + 1);
    const int visible = t < n ? clamp((t - l1 + 1 >= 0 ? (t - l1 + 1) / s1 + 1 : 0), 0, n1) : 0;
    // lse is re-read from global memory (cached) in the loop below: holding it in a private
    // float[G] array gave wrong scores for G = 2 with this driver (Intel OpenCL CPU 2026.22).
    __global const float *lse_t = lse + (size_t)t * hq + g * G;
    bool have_lse = t < n;
    for (int i = 0; i < G && t < n; ++i) have_lse = have_lse && lse_t[i] != -INFINITY;
    __global const float *qrow = q + ((size_t)t * hq + g * G) * D;
    for (int j0 = 0; j0 < j_end; j0 += TK) {
        for (int e = lid; e < TK * D; e += WG) {
            const int j = j0 + e / D;
            ks[e] = j < n1 ? k1[((size_t)j * hkv + g) * D + e % D] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int jj = 0; jj < TK && j0 + jj < j_end && t < n; ++jj) {
            const int j = j0 + jj;
            float s_tj = 0.0f;
            if (j < visible && have_lse)
                for (int i = 0; i < G; ++i) {
                    float z = 0.0f;
                    #pragma unroll
                    for (int c = 0; c < D; ++c) z = fma(qrow[i * D + c], ks[jj * D + c], z);
                    s_tj += exp(scale * z - lse_t[i]);
                }
            const int b_lo = (s1 * j) / B, b_hi = min(bq, (s1 * j + l1 - 1) / B);
            for (int b = b_lo; b <= b_hi; ++b) row[b] = fmax(row[b], s_tj);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

// Top-k: one work-item per (token, KV head).  Order blocks by (score desc, index asc);
// forced blocks (b < init, bq - local <= b <= bq) score +inf; blocks after bq rank after
// every block <= bq except forced init blocks, so only b <= max(bq, init-1) compete.
// The k-th block in that order is found by k scans; then one ascending pass writes the
// selected blocks <= bq.
__kernel void select_blocks(__global const float *scores, __global int *selected, int n, int hkv,
                            int nb, int init_blocks, int local_blocks, int topk)
{
    const int g = get_global_id(0), t = get_global_id(1);
    if (t >= n) return;
    const int bq = t / B, last = min(nb - 1, max(bq, init_blocks - 1));
    __global const float *row = scores + ((size_t)t * hkv + g) * nb;
    float th_s = INFINITY;  int th_b = -1;           // the current pick (starts before everything)
    const int picks = min(topk, last + 1);
    for (int r = 0; r < picks; ++r) {
        float best_s = -INFINITY; int best_b = -1;
        for (int b = 0; b <= last; ++b) {
            const bool forced = b < init_blocks || (b >= bq - local_blocks && b <= bq);
            const float s = forced ? INFINITY : row[b];
            const bool after = s < th_s || (s == th_s && b > th_b);
            const bool better = best_b < 0 || s > best_s;   // ascending b: ties keep the first
            if (after && better) { best_s = s; best_b = b; }
        }
        th_s = best_s; th_b = best_b;
    }
    __global int *out = selected + ((size_t)t * hkv + g) * topk;
    int count = 0;
    for (int b = 0; b <= min(bq, last); ++b) {
        const bool forced = b < init_blocks || (b >= bq - local_blocks && b <= bq);
        const float s = forced ? INFINITY : row[b];
        if (s > th_s || (s == th_s && b <= th_b)) out[count++] = b;
    }
    for (; count < topk; ++count) out[count] = -1;
}

// Block-sparse attention: a work-group of D work-items per (token, KV head); the G query
// heads share the token's selection.  Per selected block (B keys): stage K (transposed) and
// V in local memory, compute the G x B scores cooperatively, one work-item per head does
// its row's online softmax, and work-item e accumulates output column e of all G heads.
__kernel __attribute__((reqd_work_group_size(D, 1, 1)))
void sparse_attend(__global const float *q, __global const float *k, __global const float *v,
                   __global const int *selected, __global float *o, int n, int hq, int hkv,
                   int topk, float scale)
{
    const int e = get_local_id(0), g = get_group_id(0) % hkv, t = get_group_id(0) / hkv;
    __local float qs[G * D], kts[D * B], vs[B * D], ps[G * B], m_s[G], l_s[G], alpha_s[G];
    float acc[G];
    #pragma unroll
    for (int h = 0; h < G; ++h) {
        qs[h * D + e] = scale * q[((size_t)t * hq + g * G + h) * D + e];
        acc[h] = 0.0f;
    }
    if (e < G) { m_s[e] = -INFINITY; l_s[e] = 0.0f; }
    __global const int *sel = selected + ((size_t)t * hkv + g) * topk;
    for (int r = 0; r < topk; ++r) {
        const int b = sel[r];
        if (b < 0) break;
        const int j0 = b * B, count = min(B, t - j0 + 1);
        for (int jj = 0; jj < B; ++jj) {
            const size_t at = ((size_t)(j0 + jj) * hkv + g) * D + e;
            kts[e * B + jj] = jj < count ? k[at] : 0.0f;
            vs[jj * D + e] = jj < count ? v[at] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int x = e; x < G * B; x += D) {                 // score (h, j) = (x / B, x % B)
            const int h = x / B, j = x % B;
            float s = 0.0f;
            #pragma unroll
            for (int c = 0; c < D; ++c) s = fma(qs[h * D + c], kts[c * B + j], s);
            ps[x] = j < count ? s : -INFINITY;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (e < G) {                                          // online softmax of head e's row
            float mx = m_s[e], sum = 0.0f;
            for (int j = 0; j < B; ++j) mx = fmax(mx, ps[e * B + j]);
            for (int j = 0; j < B; ++j) {
                const float pj = exp(ps[e * B + j] - mx);
                ps[e * B + j] = pj;
                sum += pj;
            }
            alpha_s[e] = exp(m_s[e] - mx);
            l_s[e] = l_s[e] * alpha_s[e] + sum;
            m_s[e] = mx;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        #pragma unroll
        for (int h = 0; h < G; ++h) {
            float a = acc[h] * alpha_s[h];
            #pragma unroll
            for (int jj = 0; jj < B; ++jj) a = fma(ps[h * B + jj], vs[jj * D + e], a);
            acc[h] = a;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    #pragma unroll
    for (int h = 0; h < G; ++h) o[((size_t)t * hq + g * G + h) * D + e] = acc[h] / l_s[h];
}
"""

NORMS = r"""
// RoPE (NeoX halves) and RMSNorm.   -D D
// One work-item per rotated pair (i < D/2) of one (token, head) row; cos/sin tables [N, D/2].
__kernel void rope(__global const float *x, __global const float *cos_t, __global const float *sin_t,
                   __global float *out, int heads)
{
    const int i = get_global_id(0), row = get_global_id(1), t = row / heads;
    const size_t at = (size_t)row * D + i;
    const float x1 = x[at], x2 = x[at + D / 2];
    const float c = cos_t[(size_t)t * (D / 2) + i], s = sin_t[(size_t)t * (D / 2) + i];
    out[at] = x1 * c - x2 * s;
    out[at + D / 2] = x2 * c + x1 * s;
}

// One work-item per row of D values.
__kernel void rmsnorm(__global const float *x, __global const float *weight, __global float *out, float eps)
{
    const size_t row = get_global_id(0);
    __global const float *xr = x + row * D;
    float ss = 0.0f;
    for (int c = 0; c < D; ++c) ss = fma(xr[c], xr[c], ss);
    const float r = rsqrt(ss / D + eps);
    for (int c = 0; c < D; ++c) out[row * D + c] = xr[c] * r * weight[c];
}
"""
