# Many epochs in one engine call (included by _engine.pyx).
#
# On a small problem an epoch is a few microseconds of arithmetic, and the
# Python between two ``run_epoch`` calls (the order's draw, the undo copy,
# the checks, the History) cost as much again.  When nothing in Python is due
# between epochs, ``Trainer.run_epochs`` runs them here, doing in C what the
# epoch-by-epoch loop does in Python, in the same order:
#
# - the epoch's order: NumPy's ``Generator.permutation(n)``, drawn from the
#   network's own bit generator with NumPy's algorithm (``draw_permutation``,
#   the tests compare it with NumPy's), so the orders, and the rng state
#   afterwards, are the same as the Python loop's;
# - a copy of the parameters and optimizer state at the epoch's start (the
#   undo of a diverged epoch), the training noise's epoch key, the epoch, the
#   step and batch counts, the check of the parameters after the epoch
#   (X's rows are checked in the first epoch only: X does not change);
# - the stops between epochs: the wall-clock deadline (max_time), the target
#   loss.


from libc.math cimport INFINITY, NAN


# NumPy's C interface to a bit generator (numpy/random/bitgen.h), from the
# capsule ``BitGenerator.capsule``: a stable part of NumPy's API.
ctypedef struct bitgen_t:
    void *state
    u64 (*next_uint64)(void *st) noexcept nogil
    unsigned int (*next_uint32)(void *st) noexcept nogil
    double (*next_double)(void *st) noexcept nogil
    u64 (*next_raw)(void *st) noexcept nogil


cdef inline u64 random_interval(bitgen_t *g, u64 top) noexcept nogil:
    """A uniform integer in [0, top]: NumPy's random_interval (distributions.c),
    the masked rejection that Generator.shuffle draws with."""
    cdef u64 mask = top, value
    if top == 0:
        return 0
    mask |= mask >> 1
    mask |= mask >> 2
    mask |= mask >> 4
    mask |= mask >> 8
    mask |= mask >> 16
    mask |= mask >> 32
    if top <= 0xffffffffUL:
        value = g.next_uint32(g.state) & mask
        while value > top:
            value = g.next_uint32(g.state) & mask
    else:
        value = g.next_uint64(g.state) & mask
        while value > top:
            value = g.next_uint64(g.state) & mask
    return value


cdef void draw_permutation(bitgen_t *g, long long *perm, Py_ssize_t n) noexcept nogil:
    """``Generator.permutation(n)``: arange(n), then Generator.shuffle's
    Fisher-Yates from the last position down to 1 (_generator.pyx)."""
    cdef Py_ssize_t i, j
    cdef long long t
    for i in range(n):
        perm[i] = i
    i = n - 1
    while i >= 1:
        j = <Py_ssize_t>random_interval(g, <u64>i)
        t = perm[j]
        perm[j] = perm[i]
        perm[i] = t
        i -= 1


cdef struct Saved:
    void *live        # a parameter or optimizer-state array the engine updates
    void *copy        # its copy at the current epoch's start
    Py_ssize_t size   # elements
    bint is_double


cdef enum:
    EPOCHS_DONE = 0      # every epoch asked for
    EPOCHS_STATUS = 1    # an epoch ended early: Ctx.status says why
    EPOCHS_WEIGHTS = 2   # a parameter became NaN or infinite (found after the epoch)
    EPOCHS_TIME = 3      # the deadline passed before an epoch began
    EPOCHS_TARGET = 4    # an epoch's mean loss reached the target


cdef struct Epochs:
    Py_ssize_t n_epochs     # asked for
    Py_ssize_t n_begun      # epochs begun (the last may have ended early)
    Py_ssize_t n_finished   # epochs that ended normally (their loss is the History's)
    long long epoch0        # the first one's index (keys the training noise)
    long long *counts       # [steps of the fit, steps of the current epoch]
    double *loss_sums       # per epoch begun: the epoch's loss_sum ...
    double *penalty_sums    # ... and its penalty part
    Saved *saved
    Py_ssize_t n_saved
    bint check_weights
    bitgen_t *bitgen        # the orders' generator, or NULL: X's own order
    long long *perm         # (n,) the current epoch's order
    Py_ssize_t n_rows
    double deadline         # fnn_wtime() after which no epoch begins
    double target           # stop once an epoch's loss_sum / n_done <= target (NaN: never)
    int outcome             # EPOCHS_*


cdef bint saved_finite(const Saved *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i].is_double:
            if not fnn_finite_d(<const double *>s[i].live, s[i].size):
                return False
        elif not fnn_finite_s(<const float *>s[i].live, s[i].size):
            return False
    return True


cdef void run_epochs_loop(Ctx *c, Epochs *E, bint is_double, int nt) noexcept nogil:
    """Up to E.n_epochs whole epochs over rows 0..n_rows-1 (see the top)."""
    cdef Py_ssize_t e, i
    E.outcome = EPOCHS_DONE
    for e in range(E.n_epochs):
        if e > 0 and fnn_wtime() >= E.deadline:
            E.outcome = EPOCHS_TIME
            return
        for i in range(E.n_saved):
            memcpy(E.saved[i].copy, E.saved[i].live,
                   E.saved[i].size * (8 if E.saved[i].is_double else 4))
        if E.bitgen != NULL:
            draw_permutation(E.bitgen, E.perm, E.n_rows)
        c.epoch_key = noise_epoch_key(c.seed, E.epoch0 + e)
        E.counts[1] = 0
        E.n_begun = e + 1
        c.first, c.n = 0, E.n_rows
        c.loss_sum = c.penalty_sum = 0.0
        c.n_done = c.n_steps = 0
        c.status = STATUS_OK
        c.bad_input = 0
        memset(c.claims, 0, sizeof(c.claims))
        run_team(c, is_double, nt)
        E.counts[0] += c.n_steps
        E.counts[1] = c.n_steps
        c.step0 += c.n_steps
        E.loss_sums[e] = c.loss_sum
        E.penalty_sums[e] = c.penalty_sum
        if c.status != STATUS_OK or fnn_atomic_load(&c.poll.raised):
            E.outcome = EPOCHS_STATUS
            return
        if E.check_weights and not saved_finite(E.saved, E.n_saved):
            E.outcome = EPOCHS_WEIGHTS
            return
        E.n_finished = e + 1
        if c.input_noise == 0:
            # Every row of X was checked in this epoch, and X does not change
            # during the call: later epochs would only check them again.
            c.check_inputs = False
        if c.loss_sum / <double>c.n_done <= E.target:
            E.outcome = EPOCHS_TARGET
            return
