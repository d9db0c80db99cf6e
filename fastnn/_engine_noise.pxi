# Training noise (included by _engine.pyx).
#
# Dropout masks and input noise come from a counter-based generator: a 64-bit
# hash (splitmix64's finaliser) of (seed, epoch, stream, sample index, unit),
# so a sample's mask depends neither on the thread count nor on where the
# sample falls in the batches, and the backward pass recomputes exactly the
# mask of the forward pass instead of storing it.  Every value is a hash of
# where it is used (mirrored in NumPy by _reference.noise_bits).

cdef inline u64 mix64(u64 z) noexcept nogil:
    """splitmix64's finaliser: a bijective 64-bit hash with full avalanche."""
    z = (z ^ (z >> 30)) * <u64>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <u64>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline u64 noise_epoch_key(u64 seed, long long epoch) noexcept nogil:
    return mix64(seed + <u64>0x9E3779B97F4A7C15 * <u64>(epoch + 1))


cdef inline u64 noise_row_key(u64 epoch_key, Py_ssize_t stream, long long sample) noexcept nogil:
    """Key of one sample in one stream (0: input noise, l + 1: dropout of layer l)."""
    cdef u64 stream_key = mix64(epoch_key ^ (<u64>0xD1B54A32D192ED03 * <u64>(stream + 1)))
    return mix64(stream_key + <u64>0x9E3779B97F4A7C15 * <u64>(sample + 1))


cdef inline u64 noise_bits(u64 row_key, Py_ssize_t unit) noexcept nogil:
    return mix64(row_key + <u64>0x9E3779B97F4A7C15 * <u64>(unit + 1))


cdef inline double standard_normal(u64 row_key, Py_ssize_t j) noexcept nogil:
    """N(0, 1) for unit j: Box-Muller on the uniforms of the pair (2k, 2k + 1)
    that holds j (cosine for the even unit, sine for the odd one)."""
    cdef Py_ssize_t k = j - (j & 1)
    cdef double u1 = (<double>(noise_bits(row_key, k) >> 11) + 1.0) * (1.0 / 9007199254740992.0)
    cdef double u2 = <double>(noise_bits(row_key, k + 1) >> 11) * (1.0 / 9007199254740992.0)
    cdef double r = sqrt(-2.0 * log(u1))      # u1 in (0, 1]: finite
    return r * (sin(2.0 * M_PI * u2) if j & 1 else cos(2.0 * M_PI * u2))


cdef void dropout_tile(Ctx *c, const Batch *b, Py_ssize_t l, floating *dst, const floating *src,
                       Tile tile) noexcept nogil:
    """dst = src * mask / (1 - rate) on one tile of a (rows, n_out) array of
    layer l: the forward output (src = A, dst = Aout) or, with the very same
    mask, a delta in place (dst = src = D)."""
    cdef Layer *L = &c.layers[l]
    cdef Py_ssize_t r, j, o
    cdef u64 key
    cdef floating scale = <floating>L.dropout_scale
    for r in range(tile.i0, tile.i0 + tile.mb):
        key = noise_row_key(c.epoch_key, l + 1, sample_of(b, r))
        o = r * L.n_out
        for j in range(tile.j0, tile.j0 + tile.nb):
            if (noise_bits(key, j) >> 11) < L.keep_below:
                dst[o + j] = src[o + j] * scale
            else:
                dst[o + j] = 0


cdef void noisy_rows(Ctx *c, const Batch *b, floating *dst, const floating *X, Py_ssize_t width,
                     int tid, int nt) noexcept nogil:
    """dst[r] = X[sample of r] + input_noise * N(0, 1) per feature, keyed on
    (seed, epoch, sample, feature), for this thread's rows (row_block: the
    same rows as its check_rows, which reads them before any barrier); the
    user's X is only read."""
    cdef Py_ssize_t r, j
    cdef const floating *x
    cdef floating *d
    cdef u64 key
    cdef RowBlock blk = row_block(b.rows, tid, nt)
    for r in range(blk.r0, blk.r1):
        key = noise_row_key(c.epoch_key, 0, sample_of(b, r))
        x = X + sample_of(b, r) * width
        d = dst + r * width
        for j in range(width):
            d[j] = <floating>(x[j] + c.input_noise * standard_normal(key, j))

