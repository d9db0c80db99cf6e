# Inference (included by _engine.pyx).
#
# Independent chunks of PREDICT_CHUNK rows, each through the whole network,
# one chunk per task; with several chunks every W is packed once for the
# whole call.
#
# With the kernel "amx", a float32 call of AMX_MIN_ROWS rows or more runs its
# wide layers on the AMX tile unit (amx_product).  A layer's arithmetic then
# depends on the call's row count (a few rows stay on the FMA kernels, which
# read W unpacked and are faster there), but never on the rows next to it or
# on the thread count.


cdef void forward_chunk(floating *proto, Layer *layers, int n_layers, int kernel,
                        void **packed, const floating *X, Py_ssize_t rows, floating **outs,
                        floating *scratch, Py_ssize_t ld_scratch, Py_ssize_t half_rows,
                        void *work, const bint *on_amx, void *amx_work,
                        Poll *poll) noexcept nogil:
    """Rows of X through every layer.  ``outs[l]`` (when not NULL) receives
    layer l's output; other layers go through two halves of ``scratch``
    (``half_rows`` >= rows each, rows ``ld_scratch`` apart).  ``packed[l]``: layer l's W pre-packed for
    ``kernel``, or NULL; for AMX (``on_amx`` not NULL and ``on_amx[l]``), by
    fnn_amx_pack_b, with ``amx_work`` as the product's work.  ``poll``: thread 0's, which runs the signal
    handlers between layers (a chunk of a wide network takes milliseconds);
    the chunk is abandoned when one raised."""
    cdef Py_ssize_t l, r, ld_in = layers[0].n_in, ld_out
    cdef Layer *L
    cdef const floating *inp = X
    cdef floating *out
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_BIAS_ACT
    for l in range(n_layers):
        L = &layers[l]
        if outs[l] != NULL:
            out, ld_out = outs[l], L.n_out
        else:
            out, ld_out = scratch + (l % 2) * half_rows * ld_scratch, ld_scratch
        ep.act, ep.act_param, ep.bias = L.act, L.act_param, L.b
        ep.steepness = L.steepness
        if on_amx != NULL and on_amx[l]:
            if floating is float:       # (amx_product: float32 only)
                fnn_amx_gemm_pb(rows, L.n_out, L.n_in, inp, ld_in, packed[l], out, ld_out,
                                &ep, amx_work)
        elif packed[l] != NULL:
            if floating is float:
                fnn_gemm_pb_s(kernel, 0, rows, L.n_out, L.n_in, inp, ld_in,
                              <const float *>packed[l], out, ld_out, &ep, work)
            else:
                fnn_gemm_pb_d(kernel, 0, rows, L.n_out, L.n_in, inp, ld_in,
                              <const double *>packed[l], out, ld_out, &ep, work)
        else:
            gemm(proto, kernel, 0, 0, rows, L.n_out, L.n_in, inp, ld_in,
                 <const floating *>L.W, L.n_out, out, ld_out, &ep, work)
        if L.act == FNN_ACT_SOFTMAX:
            for r in range(rows):
                softmax_row(out + r * ld_out, L.n_out)
        inp, ld_in = out, ld_out
        if poll != NULL and poll_signals(poll):
            return


cdef void predict_worker(floating *proto, Layer *layers, int n_layers, int kernel,
                         void **packed, const floating *X, Py_ssize_t n, floating **outs,
                         char *scratch, Py_ssize_t ld_scratch, char **work,
                         const bint *on_amx, char **amx_work,
                         long *bad_input, Poll *poll, long *next_chunk, int tid,
                         int n_threads) noexcept nogil:
    """One thread's share of a forward pass: the threads claim chunks as they
    come (``next_chunk``), so a thread that the OS starts late - the other
    core busy with another process - finds the work done by the others
    instead of holding them up.  With a team, the last rows go in chunks of
    PREDICT_TAIL_CHUNK (two per thread), so that the call waits less for a
    thread the OS stops while it holds the last chunk."""
    cdef Py_ssize_t tail = 2 * n_threads * PREDICT_TAIL_CHUNK if n_threads > 1 else 0
    cdef Py_ssize_t n_big = max(n - tail, 0) // PREDICT_CHUNK, t0 = n_big * PREDICT_CHUNK
    cdef Py_ssize_t chunk, r0, rows, l
    cdef Py_ssize_t n_chunks = n_big + ((n - t0 + PREDICT_TAIL_CHUNK - 1) // PREDICT_TAIL_CHUNK
                                        if tail else (n - t0 + PREDICT_CHUNK - 1) // PREDICT_CHUNK)
    cdef floating *my_outs[MAX_LAYERS]
    cdef floating *my_scratch = <floating *>(scratch) + tid * 2 * PREDICT_CHUNK * ld_scratch
    chunk = fnn_atomic_fetch_add(next_chunk, 1)
    while chunk < n_chunks:
        if poll_stopped(poll):    # a signal handler raised: the call raises it
            break
        if chunk < n_big or not tail:
            r0 = chunk * PREDICT_CHUNK
            rows = min(<Py_ssize_t>PREDICT_CHUNK, n - r0)
        else:
            r0 = t0 + (chunk - n_big) * PREDICT_TAIL_CHUNK
            rows = min(<Py_ssize_t>PREDICT_TAIL_CHUNK, n - r0)
        if bad_input != NULL:
            # Check the chunk's inputs just before the first layer reads them
            # (which then finds them in cache); after a bad one, stop.
            if fnn_atomic_load(bad_input):
                break
            check_rows(bad_input, X + r0 * layers[0].n_in, rows, layers[0].n_in, 0, 1)
            if fnn_atomic_load(bad_input):
                break
        for l in range(n_layers):
            my_outs[l] = outs[l] + r0 * layers[l].n_out if outs[l] != NULL else NULL
        forward_chunk(proto, layers, n_layers, kernel, packed, X + r0 * layers[0].n_in,
                      rows, my_outs, my_scratch, ld_scratch, PREDICT_CHUNK, work[tid],
                      on_amx, amx_work[tid] if on_amx != NULL else NULL,
                      poll if tid == 0 else NULL)
        chunk = fnn_atomic_fetch_add(next_chunk, 1)


# The packed weights and the AMX work of a predict, kept for the next call in
# one spare slot (taken and given back under the GIL, so concurrent predicts
# each get their own): allocated and freed anew, megabytes of them went back
# to the OS on every call and were faulted in again (measured: 1,180 page
# faults per 2-thread 1,000-row predict of 784-256-128-10 on AMX tiles, 1.9
# ms instead of 1.1).
cdef object spare_workspace = None
DEF MAX_SPARE_WORKSPACE = 64 << 20     # bytes kept between calls at most


cdef object take_workspace(size_t nbytes):
    global spare_workspace
    buf = spare_workspace
    if buf is not None and <size_t>buf.nbytes >= nbytes:
        spare_workspace = None
        return buf
    return np.empty(nbytes, np.uint8)


cdef void give_back_workspace(object buf):
    global spare_workspace
    if buf.nbytes <= MAX_SPARE_WORKSPACE and (spare_workspace is None
                                             or spare_workspace.nbytes < buf.nbytes):
        spare_workspace = buf


cdef Py_ssize_t scratch_ld(Py_ssize_t width, Py_ssize_t itemsize) noexcept nogil:
    """Leading dimension of the inference scratch: whole cache lines, and never
    a multiple of 4 KiB, whose rows would share a handful of cache sets (the
    kernels would then copy every block of A before using it)."""
    cdef Py_ssize_t per_line = CACHE_LINE // itemsize
    cdef Py_ssize_t ld = (width + per_line - 1) // per_line * per_line
    if (ld * itemsize) % 4096 == 0:
        ld += per_line
    return ld


def forward(list weights, list biases, list activations, cnp.ndarray X not None, list outputs,
            int n_threads, int kernel, bint check_inputs=False, bint check_signals=True):
    """Run X through the network.

    ``check_signals``: run Python's signal handlers while working (when
    called from the main thread); an exception one raised stops the work and
    is raised here.

    ``check_inputs``: check every row of X for NaN and infinity as it is
    used, instead of a separate pass over X; returns False (and leaves the
    outputs incomplete) when one is not finite, True otherwise.

    ``outputs[l]`` is an (n, n_out_l) C-contiguous array that receives layer
    l's output, or None for a layer whose output is not wanted (those go
    through per-thread scratch).  The last entry must be an array.

    With fastnn's own kernels and more than one chunk of rows, every W is
    packed once for the whole call (the chunks would otherwise each pack it
    again); the products are bit-identical either way.
    """
    cdef int n_layers = len(weights), l, tid
    cdef Py_ssize_t n = cnp.PyArray_DIM(X, 0), width = 1, ld_scr
    cdef double flops = 0.0
    cdef Layer layers[MAX_LAYERS]
    cdef void *outs[MAX_LAYERS]
    cdef void *packed[MAX_LAYERS]
    cdef char *work[MAX_THREADS]
    cdef size_t packed_total = 0
    cdef size_t packed_offset[MAX_LAYERS]
    cdef size_t packed_size[MAX_LAYERS]    # layer l's packed W, bytes (0: none)
    cdef bint on_amx[MAX_LAYERS]
    cdef char *amx_work[MAX_THREADS]
    cdef size_t amx_bytes = 0      # work per thread for the AMX layers (0: none)
    cdef bint is_double = cnp.PyArray_TYPE(X) == cnp.NPY_DOUBLE
    if n_layers > MAX_LAYERS:
        raise ValueError(f"at most {MAX_LAYERS} layers are supported, got {n_layers}")
    memset(layers, 0, sizeof(layers))
    memset(packed, 0, sizeof(packed))
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(X)
    for l in range(n_layers):
        set_params(&layers[l], weights[l], biases[l], activations[l])
        outs[l] = data_or_null(outputs[l])
        width = max(width, layers[l].n_out)
        flops += 2.0 * n * layers[l].n_in * layers[l].n_out
        on_amx[l] = amx_product(kernel, itemsize, n, layers[l].n_out, layers[l].n_in,
                                PREDICT_PRODUCT)
        if on_amx[l]:
            packed_size[l] = fnn_amx_packed_bytes(layers[l].n_out, layers[l].n_in)
            amx_bytes = max(amx_bytes, fnn_amx_work_bytes(layers[l].n_in))
        elif n > PREDICT_CHUNK:  # (one chunk packs each W once anyway)
            packed_size[l] = fnn_gemm_packed_b_bytes(kernel, itemsize, layers[l].n_out,
                                                     layers[l].n_in)
        else:
            packed_size[l] = 0
        packed_offset[l] = packed_total
        packed_total += whole_lines(packed_size[l])
    # One chunk per task, and no thread for less work than waking it costs.
    n_threads = int(max(1, min(n_threads, MAX_THREADS, (n + PREDICT_CHUNK - 1) // PREDICT_CHUNK,
                               flops / MIN_FLOPS_PER_PREDICT_THREAD)))
    n_threads = start_team(n_threads)
    ld_scr = scratch_ld(width, itemsize)
    scratch = np.empty(n_threads * 2 * PREDICT_CHUNK * ld_scr * itemsize + CACHE_LINE, np.uint8)
    works = alloc_work(work, n_threads, kernel, itemsize)
    cdef char *pk
    amx_bytes = whole_lines(amx_bytes)
    workspace = take_workspace(packed_total + n_threads * amx_bytes + CACHE_LINE)
    pk = <char *>aligned(workspace)
    for l in range(n_layers):
        if packed_size[l] > 0:
            packed[l] = pk + packed_offset[l]
    for tid in range(n_threads if amx_bytes else 0):
        amx_work[tid] = pk + packed_total + tid * amx_bytes
    cdef const bint *amx_layers = on_amx if amx_bytes else NULL
    cdef char *scr = <char *>aligned(scratch)
    cdef const void *x = cnp.PyArray_DATA(X)
    cdef long bad_input = 0
    cdef long *bad = &bad_input if check_inputs else NULL
    cdef long next_chunk = 0
    cdef Poll poll
    poll_init(&poll, check_signals)
    with nogil:
        # The calling thread packs the weights before any other thread starts:
        # every chunk needs them, and a helper that the OS runs late would
        # otherwise hold up the others with its share of the packing.
        for l in range(n_layers):
            if on_amx[l]:
                fnn_amx_pack_b(0, layers[l].n_out, layers[l].n_in, <const float *>layers[l].W,
                               layers[l].n_out, packed[l], 0, 1)
            elif packed[l] != NULL:
                if is_double:
                    fnn_gemm_pack_b_d(kernel, 0, layers[l].n_out, layers[l].n_in,
                                      <const double *>layers[l].W, layers[l].n_out,
                                      <double *>packed[l], 0, 1)
                else:
                    fnn_gemm_pack_b_s(kernel, 0, layers[l].n_out, layers[l].n_in,
                                      <const float *>layers[l].W, layers[l].n_out,
                                      <float *>packed[l], 0, 1)
        if n_threads == 1:
            if is_double:
                predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                               <const double *>x, n, <double **>outs, scr, ld_scr, work,
                               amx_layers, amx_work, bad, &poll, &next_chunk, 0, 1)
            else:
                predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                               <const float *>x, n, <float **>outs, scr, ld_scr, work,
                               amx_layers, amx_work, bad, &poll, &next_chunk, 0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                if is_double:
                    predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                                   <const double *>x, n, <double **>outs, scr, ld_scr, work,
                                   amx_layers, amx_work, bad, &poll, &next_chunk, tid, n_threads)
                else:
                    predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                                   <const float *>x, n, <float **>outs, scr, ld_scr, work,
                                   amx_layers, amx_work, bad, &poll, &next_chunk, tid, n_threads)
    give_back_workspace(workspace)
    if poll.raised:
        raise_pending()
    return bad_input == 0

