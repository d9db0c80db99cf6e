# Serving: predict on a few rows in one C call (included by _engine.pyx).
#
# A one-row predict's products take about 6 us (its weights stream from L2);
# the general path adds as much again in per-call work: validation, the
# thread count, the layer descriptors, buffers, a concurrency guard.
# Network.predict offers X here first (unless n_threads is invalid); for a ready array of a few rows this
# path does the whole call with the descriptors and buffers kept from call to
# call, and answers None otherwise (the general path then runs, and raises
# whatever error is due).
#
# It never releases the GIL, which is what makes it safe without the guard's
# bookkeeping: a fit in another thread either runs already (its thread is the
# guard's trainer: this path declines) or cannot start until the call
# returns, and no other thread can enter this object's buffers meanwhile.
# The work is one inference chunk on one thread (as the general path would
# run it), at most SERVE_MAX_FLOPS: too short for signals to wait.

from cpython.pythread cimport PyThread_get_thread_ident

cdef enum:
    SERVE_MAX_ROWS = 32     # rows served here: the scratch is kept per network

DEF SERVE_MAX_FLOPS = 1e8   # about half a millisecond on one core


cdef class FewRowsPredictor:
    """``predict`` of up to SERVE_MAX_ROWS rows of an array already in the
    network's dtype, C-contiguous and finite, on fastnn's own kernels."""
    cdef Layer layers[MAX_LAYERS]
    cdef int n_layers
    cdef list dense             # the network's Dense layers
    cdef list made_from         # the Dense object each descriptor was made from
    cdef list codes             # and its activation_code then
    cdef object guard
    cdef int typenum
    cdef Py_ssize_t itemsize, n_in, n_out, ld_scratch, max_rows
    cdef object dtype, scratch, work_buffer
    cdef int work_kernel

    def __cinit__(self, list dense, object guard, object dtype):
        self.dense, self.guard, self.dtype = dense, guard, np.dtype(dtype)
        self.typenum, self.itemsize = self.dtype.num, self.dtype.itemsize
        self.work_kernel = -1
        self.describe()

    cdef int describe(self) except -1:
        """The layer descriptors, limits and scratch, from the layers now."""
        cdef Py_ssize_t l, width = 1
        cdef double flops_per_row = 0.0
        dense = self.dense
        self.n_layers = len(dense)
        if self.n_layers > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers are supported, got {self.n_layers}")
        self.codes, self.made_from = [], list(dense)
        memset(self.layers, 0, sizeof(self.layers))
        for l in range(self.n_layers):
            layer = dense[l]
            code = layer.activation_code
            set_params(&self.layers[l], layer.W, layer.b, code)
            self.codes.append(code)
            width = max(width, self.layers[l].n_out)
            flops_per_row += 2.0 * self.layers[l].n_in * self.layers[l].n_out
        self.max_rows = <Py_ssize_t>min(<double>SERVE_MAX_ROWS, SERVE_MAX_FLOPS / flops_per_row)
        self.n_in, self.n_out = self.layers[0].n_in, self.layers[self.n_layers - 1].n_out
        self.ld_scratch = scratch_ld(width, self.itemsize)
        self.scratch = np.empty(2 * SERVE_MAX_ROWS * self.ld_scratch * self.itemsize
                                + CACHE_LINE, np.uint8)
        return 0

    def __call__(self, X, int kernel):
        """The network's output for X, or None when this path does not apply."""
        if type(X) is not np.ndarray or kernel == FNN_KERNEL_BLAS:
            return None
        cdef cnp.ndarray x = <cnp.ndarray>X
        if (cnp.PyArray_TYPE(x) != self.typenum or cnp.PyArray_NDIM(x) != 2
                or not cnp.PyArray_IS_C_CONTIGUOUS(x)):
            return None
        cdef Py_ssize_t rows = cnp.PyArray_DIM(x, 0), l
        if rows == 0 or rows > self.max_rows or cnp.PyArray_DIM(x, 1) != self.n_in:
            return None
        trainer = self.guard._trainer
        if trainer is not None and trainer != PyThread_get_thread_ident():
            return None             # the general path raises the guard's error
        cdef bint replaced = len(self.dense) != self.n_layers
        for l in range(self.n_layers if not replaced else 0):
            if self.dense[l] is not self.made_from[l]:
                replaced = True
                break
        if replaced:
            self.describe()         # net.layers changed: shapes may have too
            if cnp.PyArray_DIM(x, 1) != self.n_in or rows > self.max_rows:
                return None
        for l in range(self.n_layers):
            code = self.dense[l].activation_code
            if code is not self.codes[l]:      # a setting was assigned since
                set_params(&self.layers[l], self.dense[l].W, self.dense[l].b, code)
                self.codes[l] = code
        if rows > 1 and kernel != self.work_kernel:  # (one row needs no GEMM work)
            self.work_buffer = np.empty(fnn_gemm_work_bytes(kernel, self.itemsize)
                                        + CACHE_LINE, np.uint8)
            self.work_kernel = kernel
        cdef void *work = aligned(self.work_buffer) if rows > 1 else NULL
        cdef long bad = 0
        cdef void *outs[MAX_LAYERS]
        cdef void *packed[MAX_LAYERS]
        memset(outs, 0, sizeof(outs))
        memset(packed, 0, sizeof(packed))
        cdef cnp.npy_intp dims[2]
        dims[0], dims[1] = rows, self.n_out
        out = cnp.PyArray_EMPTY(2, dims, self.typenum, 0)
        outs[self.n_layers - 1] = cnp.PyArray_DATA(out)
        cdef void *scratch = aligned(self.scratch)
        if self.typenum == cnp.NPY_DOUBLE:
            check_rows(&bad, <const double *>cnp.PyArray_DATA(x), rows, self.n_in, 0, 1)
            if bad:
                return None         # the general path names the bad value
            forward_chunk(<double *>NULL, self.layers, self.n_layers, kernel, packed,
                          <const double *>cnp.PyArray_DATA(x), rows, <double **>outs,
                          <double *>scratch, self.ld_scratch, SERVE_MAX_ROWS, work, NULL, NULL, NULL)
        else:
            check_rows(&bad, <const float *>cnp.PyArray_DATA(x), rows, self.n_in, 0, 1)
            if bad:
                return None
            forward_chunk(<float *>NULL, self.layers, self.n_layers, kernel, packed,
                          <const float *>cnp.PyArray_DATA(x), rows, <float **>outs,
                          <float *>scratch, self.ld_scratch, SERVE_MAX_ROWS, work, NULL, NULL, NULL)
        return out
