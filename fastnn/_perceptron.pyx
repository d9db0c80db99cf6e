# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The per-sample loop of fastnn.Perceptron.

Design
------
This is scikit-learn's ``_plain_sgd`` restricted to what its ``Perceptron``
uses (loss "perceptron" = hinge with threshold 0, learning_rate "constant",
penalties none/l2/l1/elasticnet, optional averaging, early stopping on a
validation mask), written so that every floating-point operation happens in
the same order and the same precision as there: the same ``WeightVector``
arithmetic (a scale factor ``wscale`` for the L2 decay, running squared and
L1 norms, Bottou's lazy averaging with ``average_a``/``average_b``), the same
xorshift Fisher-Yates shuffle of a per-problem index, and the same BLAS calls
(scipy's) where scikit-learn makes them.  So coef_ and intercept_ come out
identical for the same inputs, seeds and dtype.

One call trains every one-vs-all binary problem: problem ``k`` owns row k
of ``coef`` (and of the averaged coef, the L1 buffer ``q`` and the shuffle
index) and reads X, labels and weights shared by all, so the problems run on
OpenMP threads (``prange``) with no sharing and the result does not depend
on the number of threads.  The team's size comes from the engine's
``team_size`` (one thread in a forked child, no more than the OS gives), and
one thread runs a plain loop: no OpenMP region at all.  Everything inside runs without the GIL; failures
are reported through the return values (n_iter < 0: weights became
non-finite in epoch -n_iter), never raised.

Dense X is read row by row; CSR X (``indptr``/``indices`` not None) visits
the stored entries only, as scikit-learn's CSRDataset does.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport fabs, sqrt, isfinite, INFINITY
from libc.stdint cimport uint32_t, uint8_t, int64_t
from scipy.linalg.cython_blas cimport sdot, ddot, sasum, dasum, saxpy, daxpy, sscal, dscal

from fastnn._engine import team_size

cnp.import_array()

cdef enum:
    NO_PENALTY = 0
    L1 = 1
    L2 = 2
    ELASTICNET = 3

PENALTY_TYPES = {None: NO_PENALTY, "l1": L1, "l2": L2, "elasticnet": ELASTICNET}

# What each epoch records (for verbose output, printed afterwards by Python).
cdef enum:
    ST_NORM = 0
    ST_NNZ = 1
    ST_BIAS = 2
    ST_COUNT = 3
    ST_AVG_LOSS = 4
    ST_OBJECTIVE = 5
    ST_SCORE = 6
    N_STATS = 7

N_EPOCH_STATS = N_STATS
STAT_NAMES = ("norm", "nnz", "bias", "count", "avg_loss", "objective", "score")

cdef double MAX_DLOSS = 1e12
cdef uint32_t RAND_R_MAX = 2147483647


# ---------------------------------------------------------------------------
# scikit-learn's BLAS wrappers (sklearn.utils._cython_blas), over the same scipy BLAS

cdef inline floating blas_dot(int n, const floating *x, const floating *y) noexcept nogil:
    cdef int inc = 1
    if floating is float:
        return sdot(&n, <float *>x, &inc, <float *>y, &inc)
    else:
        return ddot(&n, <double *>x, &inc, <double *>y, &inc)


cdef inline floating blas_asum(int n, const floating *x) noexcept nogil:
    cdef int inc = 1
    if floating is float:
        return sasum(&n, <float *>x, &inc)
    else:
        return dasum(&n, <double *>x, &inc)


cdef inline void blas_axpy(int n, floating alpha, const floating *x, floating *y) noexcept nogil:
    cdef int inc = 1
    if floating is float:
        saxpy(&n, &alpha, <float *>x, &inc, y, &inc)
    else:
        daxpy(&n, &alpha, <double *>x, &inc, y, &inc)


cdef inline void blas_scal(int n, floating alpha, floating *x) noexcept nogil:
    cdef int inc = 1
    if floating is float:
        sscal(&n, &alpha, x, &inc)
    else:
        dscal(&n, &alpha, x, &inc)


# ---------------------------------------------------------------------------
# scikit-learn's xorshift generator and the dataset shuffle

cdef inline uint32_t our_rand_r(uint32_t *seed) noexcept nogil:
    if seed[0] == 0:
        seed[0] = 1
    seed[0] ^= <uint32_t>(seed[0] << 13)
    seed[0] ^= <uint32_t>(seed[0] >> 17)
    seed[0] ^= <uint32_t>(seed[0] << 5)
    return seed[0] % (RAND_R_MAX + 1)


cdef inline void shuffle_index(int *ind, int n, uint32_t seed) noexcept nogil:
    """Fisher-Yates; ``seed`` is a copy, as in SequentialDataset.shuffle."""
    cdef unsigned i, j
    cdef int tmp
    for i in range(n - 1):
        j = i + our_rand_r(&seed) % (n - i)
        tmp = ind[i]
        ind[i] = ind[j]
        ind[j] = tmp


def shuffled_index(int n, uint32_t seed, int n_epochs=1):
    """The visiting order after ``n_epochs`` shuffles (for the tests)."""
    ind = np.arange(n, dtype=np.intc)
    cdef int[::1] view = ind
    for _ in range(n_epochs):
        if n > 0:
            shuffle_index(&view[0], n, seed)
    return ind


# ---------------------------------------------------------------------------
# The weight vector: w (raw) times wscale, with running norms and the
# average's a/b factors.  ``ind`` is NULL for a dense row (features 0..nnz-1).

cdef struct WState:
    double wscale
    double average_a
    double average_b
    double sq_norm
    double l1_norm
    int n_features


cdef inline floating wv_dot(const floating *w, WState *s, const floating *x,
                            const int *ind, int nnz) noexcept nogil:
    cdef int j
    cdef double innerprod = 0.0
    if ind == NULL:
        for j in range(nnz):
            innerprod += w[j] * x[j]
    else:
        for j in range(nnz):
            innerprod += w[ind[j]] * x[j]
    innerprod *= s.wscale
    return <floating>innerprod


cdef inline void wv_add(floating *w, WState *s, const floating *x, const int *ind,
                        int nnz, floating c) noexcept nogil:
    cdef int j, idx
    cdef double val
    cdef double l2norm_accumulator = 0.0
    cdef double l1norm_accumulator = 0.0
    cdef floating wscale = <floating>s.wscale
    for j in range(nnz):
        idx = j if ind == NULL else ind[j]
        val = x[j]
        w[idx] += val * (c / wscale)
        l2norm_accumulator += w[idx] * w[idx]
        l1norm_accumulator += fabs(w[idx])
    s.sq_norm = l2norm_accumulator * (wscale * wscale)
    s.l1_norm = l1norm_accumulator * wscale


cdef inline void wv_add_average(floating *aw, WState *s, const floating *x, const int *ind,
                                int nnz, floating c, floating num_iter) noexcept nogil:
    cdef int j, idx
    cdef double val
    cdef double mu = 1.0 / num_iter
    cdef double wscale = s.wscale
    for j in range(nnz):
        idx = j if ind == NULL else ind[j]
        val = x[j]
        aw[idx] += (s.average_a * val * (-c / wscale))
    if num_iter > 1:
        s.average_b /= (1.0 - mu)
    s.average_a += mu * s.average_b * wscale


cdef inline void wv_reset_wscale(floating *w, floating *aw, WState *s) noexcept nogil:
    if aw != NULL:
        blas_axpy(s.n_features, <floating>s.average_a, w, aw)
        blas_scal(s.n_features, <floating>(1.0 / s.average_b), aw)
        s.average_a = 0.0
        s.average_b = 1.0
    blas_scal(s.n_features, <floating>s.wscale, w)
    s.wscale = 1.0


cdef inline void wv_scale(floating *w, floating *aw, WState *s, floating c,
                          double threshold) noexcept nogil:
    s.wscale *= c
    s.sq_norm *= (c * c)
    s.l1_norm *= fabs(c)
    if s.wscale < threshold:
        wv_reset_wscale(w, aw, s)


cdef inline floating wv_norm(const floating *w, WState *s) noexcept nogil:
    # w only selects the precision, as WeightVector32/64 do
    return <floating>sqrt(s.sq_norm)


cdef inline floating wv_l1norm(const floating *w, WState *s) noexcept nogil:
    return <floating>s.l1_norm


cdef inline void l1penalty(floating *w, WState *s, floating *q, const int *ind, int nnz,
                           double u) noexcept nogil:
    """Truncated-gradient L1 step on the features of this sample (Tsuruoka et al. 2009)."""
    cdef double z = 0.0
    cdef int j, idx
    cdef double wscale = s.wscale
    for j in range(nnz):
        idx = j if ind == NULL else ind[j]
        z = w[idx]
        if wscale * z > 0.0:
            w[idx] = max(0.0, w[idx] - ((u + q[idx]) / wscale))
        elif wscale * z < 0.0:
            w[idx] = min(0.0, w[idx] + ((u - q[idx]) / wscale))
        q[idx] += wscale * (w[idx] - z)


# ---------------------------------------------------------------------------
# One binary problem

cdef double validation_score(const floating *X, const int *indptr, const int *indices,
                             Py_ssize_t n_samples, int n_features, const int64_t *y_code,
                             int64_t pos, const floating *sample_weight,
                             const uint8_t *val_mask, const floating *w,
                             double intercept) noexcept nogil:
    """Weighted accuracy on the validation rows of sign(w . x + b) (the raw w,
    without wscale, as scikit-learn's callback receives it)."""
    cdef Py_ssize_t s
    cdef int j
    cdef double p, correct = 0.0, total = 0.0, y, pred
    for s in range(n_samples):
        if not val_mask[s]:
            continue
        p = 0.0
        if indptr == NULL:
            for j in range(n_features):
                p += w[j] * X[s * n_features + j]
        else:
            for j in range(indptr[s], indptr[s + 1]):
                p += w[indices[j]] * X[j]
        p += intercept
        pred = 1.0 if p > 0 else -1.0
        y = 1.0 if y_code[s] == pos else -1.0
        total += sample_weight[s]
        if pred == y:
            correct += sample_weight[s]
    return correct / total if total > 0 else 0.0


cdef int sgd_problem(const floating *X, const int *indptr, const int *indices,
                     Py_ssize_t n_samples, int n_features,
                     const int64_t *y_code, int64_t pos, const floating *sample_weight,
                     floating *w, floating *aw, double *intercept_io,
                     double *average_intercept_io, floating *q, int *index,
                     const uint8_t *val_mask, bint early_stopping, int n_iter_no_change,
                     int max_iter, double tol, bint fit_intercept, bint shuffle,
                     uint32_t seed, double weight_pos, double weight_neg,
                     int penalty_type, double alpha, double l1_ratio, double eta0,
                     double t, double intercept_decay, int average,
                     double *stats) noexcept nogil:
    """scikit-learn's _plain_sgd for one problem; returns n_iter (epochs run),
    or -epoch when the weights became non-finite in that epoch."""
    cdef WState st
    cdef const floating *x
    cdef const int *ind
    cdef int nnz
    cdef Py_ssize_t i, s
    cdef int no_improvement_count = 0
    cdef bint infinity = False
    cdef double eta = eta0
    cdef double p = 0.0, z
    cdef double update = 0.0
    cdef double intercept_update = 0.0
    cdef double sumloss = 0.0
    cdef double cur_loss_val = 0.0
    cdef double score = 0.0
    cdef double objective_sum = 0.0
    cdef double best_objective = INFINITY
    cdef double best_score = -INFINITY
    cdef double intercept = intercept_io[0]
    cdef double average_intercept = average_intercept_io[0]
    cdef floating y = 0.0
    cdef floating sw
    cdef floating class_weight = 1.0
    cdef floating nrm
    cdef unsigned int count = 0
    cdef unsigned int train_count = 0
    cdef int epoch = 0
    cdef double dloss = 0.0
    cdef double u = 0.0
    cdef double threshold = 1e-6 if floating is float else 1e-9
    cdef double *rec

    for s in range(n_samples):
        index[s] = <int>s
        if not val_mask[s]:
            train_count += 1
    st.wscale = 1.0
    st.n_features = n_features
    st.sq_norm = blas_dot(n_features, w, w)
    st.l1_norm = blas_asum(n_features, w)
    st.average_a = 0.0
    st.average_b = 1.0
    if penalty_type == L2:
        l1_ratio = 0.0
    elif penalty_type == L1:
        l1_ratio = 1.0

    for epoch in range(max_iter):
        sumloss = 0
        objective_sum = 0
        if shuffle:
            shuffle_index(index, <int>n_samples, seed)
        for i in range(n_samples):
            s = index[i]
            if val_mask[s]:
                continue
            if indptr == NULL:
                x = X + s * n_features
                ind = NULL
                nnz = n_features
            else:
                x = X + indptr[s]
                ind = indices + indptr[s]
                nnz = indptr[s + 1] - indptr[s]
            y = 1.0 if y_code[s] == pos else -1.0
            sw = sample_weight[s]

            p = wv_dot(w, &st, x, ind, nnz) + intercept
            # hinge loss with threshold 0 (the perceptron criterion) and its gradient
            z = p * y
            cur_loss_val = -z if z <= 0.0 else 0.0
            sumloss += cur_loss_val
            objective_sum += cur_loss_val
            if penalty_type > 0:
                nrm = wv_norm(w, &st)
                objective_sum += alpha * ((1 - l1_ratio) * 0.5 * nrm ** 2
                                          + l1_ratio * wv_l1norm(w, &st))
            if y > 0.0:
                class_weight = <floating>weight_pos
            else:
                class_weight = <floating>weight_neg
            dloss = -y if z <= 0.0 else 0.0
            if dloss < -MAX_DLOSS:
                dloss = -MAX_DLOSS
            elif dloss > MAX_DLOSS:
                dloss = MAX_DLOSS
            update = -eta * dloss
            update *= class_weight * sw

            if penalty_type >= L2:
                # never scale to negative values: set the weights to zero instead
                wv_scale(w, aw, &st, <floating>max(0, 1.0 - ((1.0 - l1_ratio) * eta * alpha)),
                         threshold)
            if update != 0.0:
                wv_add(w, &st, x, ind, nnz, <floating>update)
            if fit_intercept:
                intercept_update = update
                if intercept_update != 0:
                    intercept += intercept_update * intercept_decay
            if 0 < average <= t:
                wv_add_average(aw, &st, x, ind, nnz, <floating>update,
                               <floating>(t - average + 1))
                average_intercept += ((intercept - average_intercept) / (t - average + 1))
            if penalty_type == L1 or penalty_type == ELASTICNET:
                u += (l1_ratio * eta * alpha)
                l1penalty(w, &st, q, ind, nnz, u)
            t += 1
            count += 1

        if not isfinite(intercept) or not all_finite(w, n_features):
            infinity = True
            break

        rec = stats + epoch * N_STATS
        rec[ST_NORM] = wv_norm(w, &st)
        rec[ST_NNZ] = count_nonzero(w, n_features)
        rec[ST_BIAS] = intercept
        rec[ST_COUNT] = count
        rec[ST_AVG_LOSS] = sumloss / train_count if train_count else 0.0
        rec[ST_OBJECTIVE] = objective_sum / train_count if train_count else 0.0
        rec[ST_SCORE] = 0.0
        if early_stopping:
            score = validation_score(X, indptr, indices, n_samples, n_features, y_code, pos,
                                     sample_weight, val_mask, w, intercept)
            rec[ST_SCORE] = score
            if tol > -INFINITY and score < best_score + tol:
                no_improvement_count += 1
            else:
                no_improvement_count = 0
            if score > best_score:
                best_score = score
        else:
            if tol > -INFINITY and objective_sum / train_count > best_objective - tol:
                no_improvement_count += 1
            else:
                no_improvement_count = 0
            if objective_sum / train_count < best_objective:
                best_objective = objective_sum / train_count
        if no_improvement_count >= n_iter_no_change:
            break

    wv_reset_wscale(w, aw, &st)
    intercept_io[0] = intercept
    average_intercept_io[0] = average_intercept
    if infinity:
        return -(epoch + 1)
    return epoch + 1


cdef inline bint all_finite(const floating *w, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        if not isfinite(w[i]):
            return False
    return True


cdef inline double count_nonzero(const floating *w, int n) noexcept nogil:
    cdef int i
    cdef double c = 0
    for i in range(n):
        if w[i] != 0:
            c += 1
    return c


# ---------------------------------------------------------------------------
# Entry point

def fit_problems(const floating[::1] X_data, const int[::1] indptr, const int[::1] indices,
                 Py_ssize_t n_samples, int n_features,
                 const int64_t[::1] y_code, const int64_t[::1] positive,
                 const floating[::1] sample_weight,
                 floating[:, ::1] coef, floating[:, ::1] average_coef,
                 double[::1] intercept, double[::1] average_intercept,
                 const double[::1] weight_pos, const double[::1] weight_neg,
                 const uint32_t[::1] seeds, const uint8_t[::1] validation_mask,
                 bint early_stopping, int n_iter_no_change, int max_iter, double tol,
                 bint fit_intercept, bint shuffle, int penalty_type, double alpha,
                 double l1_ratio, double eta0, double t, double intercept_decay,
                 int average, int n_threads):
    """Train the binary problems k = 0..K-1 (see the module docstring).

    Problem k treats samples with ``y_code == positive[k]`` as +1, the others
    as -1, and trains ``coef[k]``/``intercept[k]`` (and the averaged
    ``average_coef[k]``/``average_intercept[k]`` when ``average`` > 0) in
    place, shuffling with ``seeds[k]``.  X is dense (``X_data`` of
    n_samples * n_features values, ``indptr`` None) or CSR.

    Returns
    -------
    n_iter : int64 array (K,)
        Epochs run per problem; ``-e`` when the weights became non-finite in
        epoch e.
    stats : float64 array (K, max_iter, N_EPOCH_STATS)
        Per-epoch records (STAT_NAMES), for verbose output.
    """
    cdef Py_ssize_t K = coef.shape[0], k
    cdef bint use_l1 = penalty_type == L1 or penalty_type == ELASTICNET
    cdef bint use_avg = average > 0
    if coef.shape[1] != n_features or intercept.shape[0] != K or positive.shape[0] != K \
            or seeds.shape[0] != K or weight_pos.shape[0] != K or weight_neg.shape[0] != K:
        raise ValueError("fit_problems: inconsistent problem arrays")
    if y_code.shape[0] != n_samples or sample_weight.shape[0] != n_samples \
            or validation_mask.shape[0] != n_samples:
        raise ValueError("fit_problems: per-sample arrays must have n_samples entries")
    if indptr is None and X_data.shape[0] != n_samples * n_features:
        raise ValueError("fit_problems: dense X must hold n_samples * n_features values")
    if average_intercept.shape[0] != K:
        raise ValueError("fit_problems: average_intercept must have one entry per problem")
    if use_avg and (average_coef is None or average_coef.shape[0] != K
                    or average_coef.shape[1] != n_features):
        raise ValueError("fit_problems: average needs average_coef of coef's shape")
    dtype = np.float32 if floating is float else np.float64
    q = np.zeros((K if use_l1 else 1, n_features), dtype)
    index = np.empty((K, max(n_samples, 1)), np.intc)
    n_iter = np.zeros(K, np.int64)
    stats = np.zeros((K, max_iter, N_STATS), np.float64)
    cdef floating[:, ::1] q_v = q
    cdef int[:, ::1] index_v = index
    cdef int64_t[::1] n_iter_v = n_iter
    cdef double[:, :, ::1] stats_v = stats
    cdef const int *ip = &indptr[0] if indptr is not None else NULL
    cdef const int *ix = &indices[0] if indptr is not None and indices.shape[0] > 0 else NULL
    cdef const floating *xp = &X_data[0] if X_data.shape[0] > 0 else NULL
    n_threads = team_size(max(1, min(n_threads, K)))
    with nogil:
        if n_threads > 1:
            for k in prange(K, num_threads=n_threads, schedule="dynamic"):
                n_iter_v[k] = sgd_problem(
                    xp, ip, ix, n_samples, n_features, &y_code[0], positive[k],
                    &sample_weight[0], &coef[k, 0],
                    &average_coef[k, 0] if use_avg else <floating *>NULL,
                    &intercept[k], &average_intercept[k],
                    &q_v[k, 0] if use_l1 else <floating *>NULL, &index_v[k, 0],
                    &validation_mask[0], early_stopping, n_iter_no_change, max_iter, tol,
                    fit_intercept, shuffle, seeds[k], weight_pos[k], weight_neg[k],
                    penalty_type, alpha, l1_ratio, eta0, t, intercept_decay, average,
                    &stats_v[k, 0, 0])
        else:
            # No OpenMP region at all: in a forked child even a team of one
            # waits for the parent's pool threads, which the child lacks.
            for k in range(K):
                n_iter_v[k] = sgd_problem(
                    xp, ip, ix, n_samples, n_features, &y_code[0], positive[k],
                    &sample_weight[0], &coef[k, 0],
                    &average_coef[k, 0] if use_avg else <floating *>NULL,
                    &intercept[k], &average_intercept[k],
                    &q_v[k, 0] if use_l1 else <floating *>NULL, &index_v[k, 0],
                    &validation_mask[0], early_stopping, n_iter_no_change, max_iter, tol,
                    fit_intercept, shuffle, seeds[k], weight_pos[k], weight_neg[k],
                    penalty_type, alpha, l1_ratio, eta0, t, intercept_decay, average,
                    &stats_v[k, 0, 0])
    return n_iter, stats
