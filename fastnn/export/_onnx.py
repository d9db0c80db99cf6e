"""ONNX export: a Model (see _model) as an ONNX graph.

Input ``input`` of shape (N, n_features) in the model's dtype, N dynamic.
Outputs, after scikit-learn's converters (skl2onnx with zipmap=False):
Network ``output``; MLPClassifier ``label`` and ``probabilities``;
MLPRegressor ``output`` (1-D for a single target, as predict); Perceptron
``label`` and ``scores`` (decision_function).  Each layer is a Gemm (MatMul
and Add for float64 are not needed: Gemm runs in both dtypes), then the
activation's nodes from its registry entry (fastnn.activations).
"""
import numpy as np

from .. import activations

DEFAULT_OPSET = 17     # ONNX Runtime 1.14 and later; Softmax(axis=-1) needs 13
MIN_OPSET = 13


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("fastnn.export.to_onnx needs the onnx package: "
                          "pip install 'fastnn[onnx]'") from exc
    return onnx


class Graph:
    """A small builder: nodes, initializers and fresh names."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._count = 0
        self._consts = {}

    def _name(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type, inputs, outputs=None, **attributes):
        """Add one node; returns the name of its (first) output."""
        outputs = outputs or [self._name(op_type.lower())]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outputs,
                                                     **attributes))
        return outputs[0]

    def tensor(self, array, hint="param"):
        """An initializer holding ``array`` (numbers or strings)."""
        name = self._name(hint)
        array = np.asarray(array)
        if array.dtype.kind in "OUS":
            proto = self.onnx.helper.make_tensor(
                name, self.onnx.TensorProto.STRING, array.shape,
                [str(v).encode("utf-8") for v in array.ravel()])
        else:
            proto = self.onnx.numpy_helper.from_array(array, name)
        self.initializers.append(proto)
        return name

    def const(self, value):
        """A scalar of the model's dtype (shared between nodes)."""
        key = float(value)
        if key not in self._consts:
            self._consts[key] = self.tensor(np.array(value, self.dtype), "c")
        return self._consts[key]


def _label_array(classes):
    """The classes as an array ONNX can hold: int64, float, bool or strings."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "iu":
        return classes.astype(np.int64)
    if classes.dtype.kind in "fb":
        return classes
    if classes.dtype.kind in "OUS" and all(isinstance(c, (str, bytes, np.str_, np.bytes_))
                                           for c in classes.ravel()):
        return classes.astype(str)
    raise ValueError(f"cannot export classes of dtype {classes.dtype} to ONNX: ONNX labels "
                     f"are integers, floats, booleans or strings; got {classes[:5]!r}")


def _elem_type(onnx, array):
    if array.dtype.kind == "U":
        return onnx.TensorProto.STRING
    return onnx.helper.np_dtype_to_tensor_dtype(array.dtype)


def build(model, opset=None):
    """The onnx.ModelProto of ``model`` (a _model.Model)."""
    onnx = _onnx()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or opset < MIN_OPSET:
        raise ValueError(f"opset must be an integer >= {MIN_OPSET}, got {opset!r}")
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is newer than this onnx package supports "
                         f"({onnx.defs.onnx_opset_version()})")
    dtype_name = model.dtype.name
    g = Graph(onnx, model.dtype)
    x = "input"
    for i, layer in enumerate(model.layers):
        W = g.tensor(np.ascontiguousarray(layer.W, model.dtype), f"W{i}")
        b = g.tensor(np.ascontiguousarray(layer.b, model.dtype), f"b{i}")
        x = g.op("Gemm", [x, W, b])
        if layer.steepness != 1:
            x = g.op("Mul", [x, g.const(layer.steepness)])
        x = activations.get(layer.activation).onnx(g, x, layer.alpha, dtype_name)

    elem = onnx.helper.np_dtype_to_tensor_dtype(model.dtype)
    outputs = []
    if model.kind == "network":
        if model.output_exp:       # loss="poisson": predict is exp(z)
            x = g.op("Exp", [x])
        outputs.append(("output", g.op("Identity", [x], ["output"]), elem, ["N", None]))
    elif model.kind == "regressor":
        if model.output_exp:
            x = g.op("Exp", [x])
        if model.ravel:
            g.op("Reshape", [x, g.tensor(np.array([-1], np.int64), "shape")], ["output"])
            outputs.append(("output", "output", elem, ["N"]))
        else:
            g.op("Identity", [x], ["output"])
            outputs.append(("output", "output", elem, ["N", None]))
    else:
        classes = _label_array(model.classes) if model.task != "multilabel" else None
        if model.kind == "perceptron":
            if model.task == "binary":      # decision_function is 1-D, label classes[s > 0]
                scores = g.op("Reshape", [x, g.tensor(np.array([-1], np.int64), "shape")],
                              ["scores"])
                index = g.op("Cast", [g.op("Greater", [scores, g.const(0)])],
                             to=onnx.TensorProto.INT64)
                outputs.append(("scores", "scores", elem, ["N"]))
            else:
                g.op("Identity", [x], ["scores"])
                index = g.op("ArgMax", ["scores"], axis=1, keepdims=0)
                outputs.append(("scores", "scores", elem, ["N", None]))
        elif model.task == "binary":
            p = x
            g.op("Concat", [g.op("Sub", [g.const(1), p]), p], ["probabilities"], axis=1)
            index = g.op("Cast", [g.op("Greater", [g.op("Reshape", [p, g.tensor(
                np.array([-1], np.int64), "shape")]), g.const(0.5)])], to=onnx.TensorProto.INT64)
        elif model.task == "multiclass":
            g.op("Identity", [x], ["probabilities"])
            index = g.op("ArgMax", ["probabilities"], axis=1, keepdims=0)
        else:   # multilabel: one 0/1 column per label
            g.op("Identity", [x], ["probabilities"])
            g.op("Cast", [g.op("Greater", [x, g.const(0.5)])], ["label"],
                 to=onnx.TensorProto.INT64)
        if classes is not None:
            g.op("Gather", [g.tensor(classes, "classes"), index], ["label"], axis=0)
            label = ("label", "label", _elem_type(onnx, classes), ["N"])
        else:
            label = ("label", "label", onnx.TensorProto.INT64, ["N", None])
        outputs.insert(0, label)
        if model.kind == "classifier":
            outputs.append(("probabilities", "probabilities", elem, ["N", None]))

    graph = onnx.helper.make_graph(
        g.nodes, "fastnn_" + model.kind,
        [onnx.helper.make_tensor_value_info("input", elem, ["N", model.n_inputs])],
        [onnx.helper.make_tensor_value_info(name, t, shape) for name, _, t, shape in outputs],
        initializer=g.initializers)
    from .. import __version__
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
                                   producer_name="fastnn", producer_version=__version__)
    # The IR version of the opset, not of the newest onnx package: older
    # runtimes refuse a model whose IR version is newer than theirs.
    proto.ir_version = min(proto.ir_version, _ir_version(onnx, opset))
    onnx.checker.check_model(proto)
    return proto


def _ir_version(onnx, opset):
    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx == opset:
            return ir
    return onnx.IR_VERSION
