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
# wait between tries doubles while the choice holds (PROBE_FIRST_WAIT up to
# PROBE_LAST_WAIT) and is at least PROBE_COST_RATIO times what the last try
# lost, so trying costs at most a few percent.  Which thread count runs a
# slice never changes a result (see _engine_team.pxi), and a slice boundary
# is a batch boundary, so the steps are the same ones in the same order.

DEF SLICE_SECONDS = 0.005      # a region start costs a few us: under 0.5% of this
DEF PROBE_SHARE = 0.25         # a try is this share of a slice (at least one batch)
DEF PROBE_FIRST_WAIT = 0.01    # seconds before the first try
DEF PROBE_LAST_WAIT = 0.5
DEF PROBE_COST_RATIO = 30.0
DEF SWITCH_GAIN = 0.97         # the other count must take at most this share of the time

# The load outlives a Trainer (fit builds one per call, and a short fit ends
# before its governor has learnt anything): a new governor starts with the
# choice and the next try of the last one that tried, when that try is at
# most HINT_SECONDS old.
DEF HINT_SECONDS = 2.0
cdef Governor last_try
cdef double last_try_time = -1e300

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
    """Take in a slice's speed; after a try, keep the faster count."""
    global last_try, last_try_time
    cdef double *spr = &g.sec_per_row[team]
    cdef double lost
    # a try's count was last measured long ago: its new figure replaces the old
    spr[0] = seconds / rows if (probe or spr[0] == 0) else 0.7 * spr[0] + 0.3 * seconds / rows
    if not probe:
        return
    lost = seconds - rows * g.sec_per_row[1 - team]
    if g.sec_per_row[team] < SWITCH_GAIN * g.sec_per_row[1 - team]:
        g.on_team = team
        g.probe_wait = PROBE_FIRST_WAIT
    else:
        g.probe_wait = max(min(2 * g.probe_wait, PROBE_LAST_WAIT), PROBE_COST_RATIO * lost)
    g.next_probe = now + g.probe_wait
    last_try, last_try_time = g[0], now


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
    cdef double t0, now
    cdef long n_slices = 0
    if g.probe_wait == 0:   # a new Trainer: the team, or as the last governor's try left it
        now = fnn_wtime()
        if now - last_try_time <= HINT_SECONDS:
            g.on_team, g.next_probe, g.probe_wait = \
                last_try.on_team, last_try.next_probe, last_try.probe_wait
        else:
            g.on_team, g.probe_wait = True, PROBE_FIRST_WAIT
            g.next_probe = now + g.probe_wait
    while c.first < last:
        t0 = fnn_wtime()
        # a try compares with the current count measured here (its speed is the net's)
        probe = t0 >= g.next_probe and g.sec_per_row[g.on_team] > 0
        team = g.on_team != probe
        if alternate_for_tests:
            probe, team = False, n_slices % 2 == 0
        n_slices += 1
        c.n = slice_end(c, g, team, probe, last)
        c.step0 = step0 + c.n_steps        # the steps of the slices before
        memset(c.claims, 0, sizeof(c.claims))
        done = c.n_done
        run_region(c, is_double, n_threads if team else 1)
        now = fnn_wtime()
        if c.n_done > done:
            governor_update(g, team, probe, c.n_done - done, now - t0, now)
        if c.status != STATUS_OK or fnn_atomic_load(&c.poll.raised):
            break
        c.first = c.n
    c.first, c.n, c.step0 = first, last, step0
