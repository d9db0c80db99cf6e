"""NumPy reference of every engine kernel: the oracle the tests compare against.

Plain, readable NumPy with the engine's conventions: samples are rows,
``W`` is (n_in, n_out), derivatives are taken from layer outputs (or from
the activation inputs where the activation says so), losses are
means over samples of per-sample sums, and deltas are d(batch-mean loss) /
d(pre-activation).  Nothing here is fast, and nothing here may be clever.
"""
import numpy as np

from . import activations as _activations, losses as _losses
from .activations import CODES

NAMES = {code: name for name, code in CODES.items()}
EPI_STORE, EPI_BIAS_ACT, EPI_DERIV = 0, 1, 2


def _name(act):
    return NAMES[act] if isinstance(act, (int, np.integer)) else act


def activation(act, x, alpha=0.0):
    """f(x) for every activation (the registry entry's NumPy code); softmax
    is taken over each row."""
    return _activations.get(_name(act)).f(np.asarray(x), alpha)


def activation_derivative(act, u, alpha=0.0):
    """f'(x) from u (elementwise activations): the output y = f(x), or x
    itself for the activations whose derivative is taken from their input
    (``Activation.from_input``: silu, gelu)."""
    return _activations.get(_name(act)).df(np.asarray(u), alpha)


def _spec(act_spec):
    """(name, alpha, steepness, flat_spot) of a layer's ``(act, alpha[,
    steepness[, flat_spot]])``: steepness 1 and flat_spot 0 by default."""
    act, alpha, *rest = act_spec
    steepness = rest[0] if len(rest) > 0 else 1.0
    flat_spot = rest[1] if len(rest) > 1 else 0.0
    return _name(act), alpha, steepness, flat_spot


def layer_derivative(act_spec, Y, X_act):
    """d Y / d Z of a layer, elementwise: s * f'(u), u the output Y (clipped
    into the flat spot) or the activation's input X_act = s * Z."""
    act, alpha, s, flat_spot = _spec(act_spec)
    if _activations.get(act).from_input:
        u = X_act
    else:
        u = Y
        bounds = _activations.get(act).flat_spot_bounds(flat_spot)
        if bounds is not None:
            u = np.clip(Y, *bounds)
    d = activation_derivative(act, u, alpha)
    return d if s == 1 else s * d


# ---------------------------------------------------------------------------
# Training noise: counter-based random bits (the engine's noise_* functions)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STREAM = np.uint64(0xD1B54A32D192ED03)


def _mix64(z):
    """splitmix64's finaliser on uint64 arrays (arithmetic wraps modulo 2**64)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def noise_bits(seed, epoch, stream, samples, n_units):
    """(len(samples), n_units) uint64 hashes of (seed, epoch, stream, sample, unit).

    ``stream`` 0 is the input noise, l + 1 the dropout of layer l.
    """
    with np.errstate(over="ignore"):
        epoch_key = _mix64(np.uint64(seed) + _GOLDEN * np.uint64(epoch + 1))
        stream_key = _mix64(epoch_key ^ (_STREAM * np.uint64(stream + 1)))
        samples = np.asarray(samples, dtype=np.uint64).reshape(-1, 1)
        row_keys = _mix64(stream_key + _GOLDEN * (samples + np.uint64(1)))
        units = np.arange(1, n_units + 1, dtype=np.uint64).reshape(1, -1)
        return _mix64(row_keys + _GOLDEN * units)


def dropout_keep_mask(seed, epoch, layer, samples, n_units, rate):
    """True where layer ``layer`` keeps a unit: 53 random bits below (1 - rate) * 2**53."""
    keep_below = np.uint64(round((1.0 - rate) * 2.0 ** 53))
    return (noise_bits(seed, epoch, layer + 1, samples, n_units) >> np.uint64(11)) < keep_below


def standard_normal_noise(seed, epoch, samples, n_features):
    """The N(0, 1) values of the input noise: Box-Muller on the uniforms of
    the unit pairs (2k, 2k + 1), cosine for the even unit, sine for the odd."""
    width = n_features + (n_features & 1)
    bits = noise_bits(seed, epoch, 0, samples, width) >> np.uint64(11)
    u1 = (bits[:, 0::2].astype(np.float64) + 1.0) / 2.0 ** 53
    u2 = bits[:, 1::2].astype(np.float64) / 2.0 ** 53
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.empty((len(bits), width))
    z[:, 0::2] = r * np.cos(2.0 * np.pi * u2)
    z[:, 1::2] = r * np.sin(2.0 * np.pi * u2)
    return z[:, :n_features]


def dropout_multipliers(seed, epoch, rates, samples, sizes, dtype=np.float64):
    """Per layer, the (n, n_out) factor of inverted dropout (mask / (1 - rate)), or None."""
    out = []
    for l, (rate, n_out) in enumerate(zip(rates, sizes)):
        if rate == 0:
            out.append(None)
            continue
        keep = dropout_keep_mask(seed, epoch, l, samples, n_out, rate)
        out.append(np.where(keep, dtype(1.0 / (1.0 - rate)), dtype(0)).astype(np.float64))
    return out


def gemm(A, B, C=None, trans_a=False, trans_b=False, kind=EPI_STORE, act=0,
         act_param=0.0, alpha=1.0, beta=0.0, bias=None, Y=None, steepness=1.0,
         flat_lo=0.0, flat_hi=0.0):
    """What fnn_gemm_s/d computes: epilogue(op(A) @ op(B)), in the operands' dtype.

    BIAS_ACT: f(s * (acc + bias)); DERIV: acc * s * f'(Y), Y clipped into
    [flat_lo, flat_hi] first when flat_lo < flat_hi (see csrc/fnn_gemm.h)."""
    acc = (A.T if trans_a else A) @ (B.T if trans_b else B)
    if kind == EPI_STORE:
        out = alpha * acc
        if beta != 0:
            out = out + beta * C
        return out.astype(A.dtype)
    if kind == EPI_BIAS_ACT:
        if bias is not None:
            acc = acc + bias
        if steepness != 1:
            acc = steepness * acc
        return acc if _name(act) == "softmax" else activation(act, acc, act_param)
    if kind == EPI_DERIV:
        if flat_lo < flat_hi:
            Y = np.clip(Y, flat_lo, flat_hi)
        return acc * (steepness * activation_derivative(act, Y, act_param))
    raise ValueError(kind)


def forward(weights, biases, activations, X, dropout=None, inputs=False):
    """Every layer's output; ``activations`` holds (name or code, alpha[,
    steepness[, flat_spot]]) per layer: A = f(s * (A_prev @ W + b)).

    ``dropout``: per layer an (n, n_out) factor applied to the output that the
    next layer reads (dropout_multipliers), or None; then returns (outputs,
    what each next layer reads).  ``inputs``: also return (last) every
    layer's activation inputs s * (A_prev @ W + b).
    """
    outputs, reads, act_inputs, A = [], [], [], X
    for l, (W, b, spec) in enumerate(zip(weights, biases, activations)):
        act, alpha, s, _ = _spec(spec)
        Z = A @ W + (b if b is not None else 0)
        if s != 1:
            Z = s * Z
        act_inputs.append(Z)
        A = activation(act, Z, alpha)
        outputs.append(A)
        if dropout is not None and dropout[l] is not None:
            A = A * dropout[l]
        reads.append(A)
    result = (outputs,) if dropout is None else (outputs, reads)
    if inputs:
        result += (act_inputs,)
    return result[0] if len(result) == 1 else result


def loss_and_delta(loss, act, alpha, O, T, sample_weight=None, steepness=1.0,
                   flat_spot=0.0, X_act=None):
    """Per-sample losses and the output delta d(mean loss)/d(pre-activation):
    the loss object's own NumPy maths (``fastnn.losses``, one place per loss),
    ``loss`` a name or a Loss; see ``Loss.loss_and_delta``.

    With a steepness, a flat spot or an activation whose f' is taken from its
    input ``X_act``, a loss that goes through the output activation's
    derivative (any output, as mse) gives d loss / d output, times
    ``layer_derivative``; the others' deltas are d loss / d(s z), times s."""
    loss = _losses.get(loss)
    act = _name(act)
    entry = _activations.get(act)
    spec = (act, alpha, steepness, flat_spot)
    if loss.output is None and entry.elementwise and (flat_spot or entry.from_input):
        values, G = loss.loss_and_delta("linear", alpha, O, T, sample_weight)
        return values, (G * layer_derivative(spec, O, X_act)).astype(O.dtype, copy=False)
    values, delta = loss.loss_and_delta(act, alpha, O, T, sample_weight)
    return values, delta if steepness == 1 else (steepness * delta).astype(O.dtype, copy=False)


def backward(weights, activations, outputs, delta_out, dropout=None, act_inputs=None):
    """Deltas of every layer, from the output delta: D[l-1] = (D[l] @ W[l].T) *
    s f'(A[l-1]) (f' from the activation inputs ``act_inputs`` where the
    activation needs them, see layer_derivative), times layer l-1's dropout
    factor when it has one."""
    deltas = [None] * len(weights)
    deltas[-1] = delta_out
    for l in range(len(weights) - 1, 0, -1):
        deltas[l - 1] = (deltas[l] @ weights[l].T) * layer_derivative(
            activations[l - 1], outputs[l - 1],
            None if act_inputs is None else act_inputs[l - 1])
        if dropout is not None and dropout[l - 1] is not None:
            deltas[l - 1] = deltas[l - 1] * dropout[l - 1]
    return deltas


def gradients(weights, biases, activations, loss, X, T, sample_weight=None, dropout=None):
    """(mean loss, [(dW, db), ...]) of the batch-mean loss over (X, T).

    With ``sample_weight``: of the weighted mean loss (see loss_and_delta);
    with ``dropout`` factors (see forward): of the network with those masks.
    """
    outputs, reads, act_inputs = forward(weights, biases, activations, X,
                                         dropout if dropout is not None else
                                         [None] * len(weights), inputs=True)
    act, alpha, s, flat_spot = _spec(activations[-1])
    losses, delta = loss_and_delta(loss, act, alpha, outputs[-1], T, sample_weight, s,
                                   flat_spot, act_inputs[-1])
    deltas = backward(weights, activations, outputs, delta, dropout, act_inputs)
    inputs = [X] + reads[:-1]
    grads = [(A.T @ D, D.sum(axis=0) if b is not None else None)
             for A, D, b in zip(inputs, deltas, biases)]
    if sample_weight is None:
        mean_loss = float(np.mean(losses))
    else:
        w = np.asarray(sample_weight, np.float64)
        mean_loss = float(np.sum(w * losses) / w.sum()) if w.sum() > 0 else 0.0
    return mean_loss, grads


def penalty_coefficients(l2, l1, rows, sample_weight=None, per_weight_sum=False):
    """A batch's (l2, l1): as given, or divided by its weight sum (scikit-learn's alpha)."""
    if not per_weight_sum:
        return l2, l1
    s = rows if sample_weight is None else float(np.sum(sample_weight))
    return (l2 / s, l1 / s) if s > 0 else (0.0, 0.0)


def weight_penalty(weights, l2, l1):
    """The penalty term of the loss: l2 / 2 * sum W^2 + l1 * sum |W| over every layer."""
    return float(sum(0.5 * l2 * np.sum(W * W) + l1 * np.sum(np.abs(W)) for W in weights))


def penalised_gradient(W, dW, l2, l1):
    """dW + l2 * W + l1 * sign(W) (weights only; biases are never penalised)."""
    return dW + l2 * W + l1 * np.sign(W)


def sgd_update(param, grad, lr):
    return param - lr * grad


def momentum_update(param, grad, velocity, lr, momentum, nesterov=False):
    """scikit-learn's form: v = momentum * v - lr * g; returns (param, v)."""
    velocity = momentum * velocity - lr * grad
    if nesterov:
        return param + momentum * velocity - lr * grad, velocity
    return param + velocity, velocity


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                bias_correction="moments"):
    """Adam; ``step`` counts from 1.  Returns (param, m, v).

    "moments": Kingma & Ba's Algorithm 1.  "step_size": the corrections folded
    into the step size (the paper's section 2, scikit-learn's AdamOptimizer).
    """
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    if bias_correction == "step_size":
        lr_t = lr * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
        return param - lr_t * m / (np.sqrt(v) + eps), m, v
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def adamw_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.01):
    """AdamW (Loshchilov & Hutter; PyTorch): decay, then Adam's Algorithm 1 step.

    ``weight_decay`` applies to weights only: pass 0 for biases.
    """
    param = param * (1 - lr * weight_decay)
    return adam_update(param, grad, m, v, step, lr, beta1, beta2, eps)


def rmsprop_update(param, grad, square_avg, buf, lr, rho=0.99, eps=1e-8, momentum=0.0):
    """RMSprop as torch.optim.RMSprop; returns (param, square_avg, buf)."""
    square_avg = rho * square_avg + (1 - rho) * grad * grad
    step = grad / (np.sqrt(square_avg) + eps)
    if momentum > 0:
        buf = momentum * buf + step
        step = buf
    return param - lr * step, square_avg, buf


def rprop_update(param, grad, prev_grad, delta, increase_factor=1.2, decrease_factor=0.5,
                 delta_min=0.0, delta_max=50.0):
    """iRPROP- (Igel & Huesken 2000); returns (param, grad kept as prev_grad, delta)."""
    prod = grad * prev_grad
    delta = np.where(prod > 0, np.minimum(delta * increase_factor, delta_max),
                     np.where(prod < 0, np.maximum(delta * decrease_factor, delta_min), delta))
    grad = np.where(prod < 0, 0.0, grad)
    return param - np.sign(grad) * delta, grad, delta


def fann_irpropm_update(weights, slopes, prev_steps, prev_slopes, increase_factor=1.2,
                        decrease_factor=0.5, delta_min=0.0, delta_max=50.0):
    """FANN 2.x's fann_update_weights_irpropm (fann_train.c), transcribed.

    In FANN's own terms: ``slopes`` is minus the gradient summed over the
    training set (``RProp(variant="fann")`` sees g = -slopes / n, of the same
    signs).  Every array is updated in place and returned, in the dtype given
    (FANN's fann_type); returns (weights, prev_steps, prev_slopes).
    """
    dt = weights.dtype.type
    for i in np.ndindex(weights.shape):
        prev_step = max(prev_steps[i], dt(0.0001))   # "may not be zero"
        slope, prev_slope = slopes[i], prev_slopes[i]
        if prev_slope * slope >= 0:
            next_step = min(prev_step * dt(increase_factor), dt(delta_max))
        else:
            next_step = max(prev_step * dt(decrease_factor), dt(delta_min))
            slope = dt(0)
        if slope < 0:
            weights[i] = max(weights[i] - next_step, dt(-1500))
        else:
            weights[i] = min(weights[i] + next_step, dt(1500))
        prev_steps[i], prev_slopes[i] = next_step, slope
    return weights, prev_steps, prev_slopes


def fann_quickprop_update(weights, slopes, prev_steps, prev_slopes, num_data, learning_rate=0.7,
                          mu=1.75, decay=-0.0001):
    """FANN 2.x's fann_update_weights_quickprop (fann_train.c), transcribed.

    ``slopes`` is minus the gradient summed over the ``num_data`` samples,
    as FANN accumulates it; ``Quickprop`` works with it divided by n (see
    its docstring).  Updated in place; returns (weights, prev_steps,
    prev_slopes).
    """
    dt = weights.dtype.type
    epsilon = dt(learning_rate / num_data)
    shrink_factor = dt(mu / (1.0 + mu))
    mu, decay = dt(mu), dt(decay)
    for i in np.ndindex(weights.shape):
        w, prev_step = weights[i], prev_steps[i]
        slope = slopes[i] + decay * w
        prev_slope = prev_slopes[i]
        next_step = dt(0)
        if prev_step > 0.001:
            if slope > 0:
                next_step += epsilon * slope
            if slope > shrink_factor * prev_slope:
                next_step += mu * prev_step
            else:
                next_step += prev_step * slope / (prev_slope - slope)
        elif prev_step < -0.001:
            if slope < 0:
                next_step += epsilon * slope
            if slope < shrink_factor * prev_slope:
                next_step += mu * prev_step
            else:
                next_step += prev_step * slope / (prev_slope - slope)
        else:
            next_step += epsilon * slope
        prev_steps[i] = next_step
        w += next_step
        weights[i] = dt(1500) if w > 1500 else (dt(-1500) if w < -1500 else w)
        prev_slopes[i] = slope
    return weights, prev_steps, prev_slopes


def sgd_epoch(weights, biases, activations, loss, X, T, batch_size, lr, perm=None):
    """One epoch of plain minibatch SGD, in place; returns the mean training loss."""
    order = np.arange(len(X)) if perm is None else perm
    total = 0.0
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        batch_loss, grads = gradients(weights, biases, activations, loss, X[idx], T[idx])
        total += batch_loss * len(idx)
        for l, (dW, db) in enumerate(grads):
            weights[l] -= (lr * dW).astype(weights[l].dtype)
            if db is not None:
                biases[l] -= (lr * db).astype(biases[l].dtype)
    return total / len(X)
