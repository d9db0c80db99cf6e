"""NumPy reference of every engine kernel: the oracle the tests compare against.

Plain, readable NumPy with the engine's conventions: samples are rows,
``W`` is (n_in, n_out), derivatives are taken from layer outputs, losses are
means over samples of per-sample sums, and deltas are d(batch-mean loss) /
d(pre-activation).  Nothing here is fast, and nothing here may be clever.
"""
import numpy as np

from .activations import CODES

NAMES = {code: name for name, code in CODES.items()}
EPI_STORE, EPI_BIAS_ACT, EPI_DERIV = 0, 1, 2


def _name(act):
    return NAMES[act] if isinstance(act, (int, np.integer)) else act


def activation(act, x, alpha=0.0):
    """f(x) for every activation; softmax is taken over each row."""
    act = _name(act)
    x = np.asarray(x)
    one = x.dtype.type(1)
    if act == "linear":
        return x.copy()
    if act == "sigmoid":
        with np.errstate(over="ignore", invalid="ignore"):   # the branch np.where drops
            return np.where(x >= 0, one / (one + np.exp(-x)), np.exp(x) / (one + np.exp(x)))
    if act == "tanh":
        return np.tanh(x)
    if act == "relu":
        return np.where(x > 0, x, 0).astype(x.dtype)
    if act == "leaky_relu":
        return np.where(x > 0, x, x.dtype.type(alpha) * x)
    if act == "elu":
        return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0)))
    if act == "softplus":
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)
    if act == "step":
        return (x >= 0).astype(x.dtype)
    if act == "sign":
        return np.where(x >= 0, one, -one)
    if act == "softmax":
        z = x - x.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(act)


def activation_derivative(act, y, alpha=0.0):
    """f'(x) written in terms of the output y = f(x) (elementwise activations)."""
    act = _name(act)
    y = np.asarray(y)
    one = y.dtype.type(1)
    if act in ("linear", "softmax"):
        return np.ones_like(y)
    if act == "sigmoid":
        return y * (one - y)
    if act == "tanh":
        return one - y * y
    if act == "relu":
        return (y > 0).astype(y.dtype)
    if act == "leaky_relu":
        return np.where(y > 0, one, y.dtype.type(alpha))
    if act == "elu":
        return np.where(y > 0, one, y + y.dtype.type(alpha))
    if act == "softplus":
        return -np.expm1(-y)
    if act in ("step", "sign"):
        return np.zeros_like(y)
    raise ValueError(act)


def gemm(A, B, C=None, trans_a=False, trans_b=False, kind=EPI_STORE, act=0,
         act_param=0.0, alpha=1.0, beta=0.0, bias=None, Y=None):
    """What fnn_gemm_s/d computes: epilogue(op(A) @ op(B)), in the operands' dtype."""
    acc = (A.T if trans_a else A) @ (B.T if trans_b else B)
    if kind == EPI_STORE:
        out = alpha * acc
        if beta != 0:
            out = out + beta * C
        return out.astype(A.dtype)
    if kind == EPI_BIAS_ACT:
        if bias is not None:
            acc = acc + bias
        return acc if _name(act) == "softmax" else activation(act, acc, act_param)
    if kind == EPI_DERIV:
        return acc * activation_derivative(act, Y, act_param)
    raise ValueError(kind)


def forward(weights, biases, activations, X):
    """Every layer's output; ``activations`` holds (name or code, alpha) per layer."""
    outputs, A = [], X
    for W, b, (act, alpha) in zip(weights, biases, activations):
        Z = A @ W + (b if b is not None else 0)
        A = activation(act, Z, alpha)
        outputs.append(A)
    return outputs


def loss_and_delta(loss, act, alpha, O, T):
    """Per-sample losses and the output delta d(mean loss)/d(pre-activation).

    ``O`` is the output layer's values (probabilities for softmax).
    """
    act = _name(act)
    n = O.shape[0]
    if loss == "cross_entropy":           # softmax output
        losses = -np.sum(T * np.log(O), axis=1)
        return losses, (O - T) / n
    if loss == "binary_cross_entropy":    # sigmoid output
        eps = 1e-7 if O.dtype == np.float32 else 1e-15
        Oc = np.clip(O, eps, 1 - eps)
        losses = -np.sum(T * np.log(Oc) + (1 - T) * np.log(1 - Oc), axis=1)
        return losses, (O - T) / n
    # mse: 1/2 sum_k (o_k - t_k)^2
    losses = 0.5 * np.sum((O - T) ** 2, axis=1)
    G = (O - T) / n
    if act == "softmax":                  # through the softmax Jacobian
        return losses, O * (G - np.sum(G * O, axis=1, keepdims=True))
    return losses, G * activation_derivative(act, O, alpha)


def backward(weights, activations, outputs, delta_out):
    """Deltas of every layer, from the output delta: D[l-1] = (D[l] @ W[l].T) * f'(A[l-1])."""
    deltas = [None] * len(weights)
    deltas[-1] = delta_out
    for l in range(len(weights) - 1, 0, -1):
        act, alpha = activations[l - 1]
        deltas[l - 1] = (deltas[l] @ weights[l].T) * activation_derivative(
            act, outputs[l - 1], alpha)
    return deltas


def gradients(weights, biases, activations, loss, X, T):
    """(mean loss, [(dW, db), ...]) of the batch-mean loss over (X, T)."""
    outputs = forward(weights, biases, activations, X)
    losses, delta = loss_and_delta(loss, *activations[-1], outputs[-1], T)
    deltas = backward(weights, activations, outputs, delta)
    inputs = [X] + outputs[:-1]
    grads = [(A.T @ D, D.sum(axis=0) if b is not None else None)
             for A, D, b in zip(inputs, deltas, biases)]
    return float(np.mean(losses)), grads


def sgd_update(param, grad, lr):
    return param - lr * grad


def momentum_update(param, grad, velocity, lr, momentum, nesterov=False):
    """scikit-learn's form: v = momentum * v - lr * g; returns (param, v)."""
    velocity = momentum * velocity - lr * grad
    if nesterov:
        return param + momentum * velocity - lr * grad, velocity
    return param + velocity, velocity


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Kingma & Ba's Algorithm 1; ``step`` counts from 1. Returns (param, m, v)."""
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


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
