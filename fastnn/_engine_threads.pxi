# How many threads a training run uses, slice by slice (included by _engine.pyx).
#
# The flops of a step say whether a second thread can pay for its barriers
# (threads_for_batch), but not whether the cores are free.  Beside a busy
# process a team of two waits, at every stage's barrier, for whichever thread
# the OS has just descheduled: measured here, a batch-256 step of
# 784-256-128-10 then took 3-25x as long on two threads as on one.  So a run
# with a team is cut into slices of whole batches, about SLICE_SECONDS each,
# every slice its own parallel region, and the governor times them: it runs
# on the faster of one thread and the team, and now and then tries the other
# on a short slice, so it follows the machine's load as it changes.  The
# wait between tries (in seconds of governed training, not of the clock)
# doubles while the choice holds (PROBE_FIRST_WAIT up to
# PROBE_LAST_WAIT) and is at least PROBE_COST_RATIO times what the last try
# lost, so trying costs at most a few percent; a slice slower than the other
# count's last try brings the next try forward.  Which thread count runs a
# slice never changes a result (see _engine_team.pxi), and a slice boundary
# is a batch boundary, so the steps are the same ones in the same order.

DEF SLICE_SECONDS = 0.005      # a region start costs a few us: under 0.5% of this
DEF PROBE_SHARE = 0.25         # a try is this share of a slice (at least one batch)
DEF PROBE_FIRST_WAIT = 0.005   # seconds before the first try
DEF PROBE_LAST_WAIT = 0.5
DEF PROBE_COST_RATIO = 30.0
DEF SWITCH_GAIN = 0.97         # the other count must take at most this share of the time

# The load outlives a Trainer (fit builds one per call, and a short fit ends
# before its governor has learnt anything): a new governor starts with the
# choice and the next try of the last one that tried, and with its speeds
# when it trains the same shapes (the same network again).  An old choice
# costs little: its next try is then already due, right after the first
# slice.
cdef Governor last_try
cdef bint tried = False
# The governors' clock: seconds spent in governed runs, by every Trainer of
# the process (tries are spaced in training time, so a program that trains
# now and then does not pay a try per fit; concurrent fits may lose an
# addition, which only shifts a try).
cdef double governed_seconds = 0.0

# Tests set this to run every slice as one batch, alternating one thread and
# the team, which must not change any result.
cdef bint alternate_for_tests = False


# (The Governor struct, in Ctx, is declared in _engine_decl.pxi.)


cdef inline Py_ssize_t slice_end(Ctx *c, Governor *g, bint team, bint probe,
                                 Py_ssize_t last) noexcept nogil:
    """Where the next slice (from c.first) ends: about SLICE_SECONDS of work
    at the measured speed (less for a try), whole batches."""
    cdef double spr = g.sec_per_row[team] if g.sec_per_row[team] > 0 else g.sec_per_row[1 - team]
    cdef double seconds = SLICE_SECONDS * (PROBE_SHARE if probe else 1.0)
    cdef Py_ssize_t batches = 1
    if spr > 0 and not alternate_for_tests:
        batches = max(1, <Py_ssize_t>(seconds / spr / c.batch_size))
    return min(last, c.first + batches * c.batch_size)


cdef void governor_update(Governor *g, bint team, bint probe, Py_ssize_t rows,
                          double seconds, double now) noexcept nogil:
    """Take in a slice's speed; after a try, keep the faster count.  ``now``:
    governed_seconds, after the slice."""
    global last_try, tried
    cdef double *spr = &g.sec_per_row[team]
    cdef double lost
    # a try's count was last measured long ago: its new figure replaces the old
    spr[0] = seconds / rows if (probe or spr[0] == 0) else 0.7 * spr[0] + 0.3 * seconds / rows
    last_try, tried = g[0], True
    if not probe:
        if spr[0] * SWITCH_GAIN > g.sec_per_row[1 - team] > 0:
            # the current count is now slower than the other was when last
            # tried (a process started on the other core): try it at once
            g.next_probe = now
        return
    lost = seconds - rows * g.sec_per_row[1 - team]
    if g.sec_per_row[team] < SWITCH_GAIN * g.sec_per_row[1 - team]:
        g.on_team = team
        g.probe_wait = PROBE_FIRST_WAIT
    else:
        g.probe_wait = max(min(2 * g.probe_wait, PROBE_LAST_WAIT), PROBE_COST_RATIO * lost)
    g.next_probe = now + g.probe_wait
    last_try, tried = g[0], True


cdef void run_team(Ctx *c, bint is_double, int n_threads) noexcept nogil:
    """Train on positions c.first..c.n-1 on up to n_threads threads (as
    start_team() allowed), in slices on one thread or the team (above)."""
    if n_threads <= 1:
        run_region(c, is_double, 1)
        return
    cdef Governor *g = &c.governor
    cdef Py_ssize_t first = c.first, last = c.n, done
    cdef long long step0 = c.step0
    cdef bint team, probe
    cdef double seconds
    cdef long n_slices = 0
    cdef int i
    global governed_seconds
    if g.probe_wait == 0:   # a new Trainer: the team, or as the last governor's try left it
        for i in range(c.n_layers):
            g.n_weights += c.layers[i].n_in * c.layers[i].n_out
        g.batch_size = c.batch_size
        if tried:
            g.on_team, g.next_probe, g.probe_wait = \
                last_try.on_team, last_try.next_probe, last_try.probe_wait
            if last_try.n_weights == g.n_weights and last_try.batch_size == g.batch_size:
                g.sec_per_row = last_try.sec_per_row
        else:
            g.on_team, g.probe_wait = True, PROBE_FIRST_WAIT
            g.next_probe = governed_seconds + g.probe_wait
    while c.first < last:
        # a try compares with the current count measured here (its speed is the net's)
        probe = governed_seconds >= g.next_probe and g.sec_per_row[g.on_team] > 0
        team = g.on_team != probe
        if alternate_for_tests:
            probe, team = False, n_slices % 2 == 0
        n_slices += 1
        c.n = slice_end(c, g, team, probe, last)
        c.step0 = step0 + c.n_steps        # the steps of the slices before
        memset(c.claims, 0, sizeof(c.claims))
        done = c.n_done
        seconds = fnn_wtime()
        run_region(c, is_double, n_threads if team else 1)
        seconds = fnn_wtime() - seconds
        governed_seconds += seconds
        if c.n_done > done:
            governor_update(g, team, probe, c.n_done - done, seconds, governed_seconds)
        if c.status != STATUS_OK or fnn_atomic_load(&c.poll.raised):
            break
        c.first = c.n
    c.first, c.n, c.step0 = first, last, step0
