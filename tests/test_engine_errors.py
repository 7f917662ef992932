"""Bad input is refused with a message naming the op and the offending shapes or values; repr."""
import numpy as np
import pytest

import minivae as mv


def zeros(*shape, dtype=np.float64, requires_grad=False):
    return mv.Tensor(np.zeros(shape, dtype), requires_grad=requires_grad)


def test_matmul_names_both_shapes_and_the_inner_dimensions():
    with pytest.raises(ValueError) as caught:
        zeros(128, 784) @ zeros(400, 784)
    assert str(caught.value) == "matmul: (128, 784) @ (400, 784) — inner dimensions 784 and 400 differ"


def test_matmul_refuses_vectors():
    with pytest.raises(ValueError, match=r"matmul: \(3,\) @ \(3, 2\) — operands must be at least 2-D"):
        zeros(3) @ zeros(3, 2)


def test_linear_names_itself_and_the_shapes():
    with pytest.raises(ValueError, match=r"linear: x \(4, 3\), weight \(2, 5\) and bias \(2,\); expected "
                                         r"\(\.\.\., in\), \(out, in\) and \(out,\)"):
        mv.linear(zeros(4, 3), zeros(2, 5), zeros(2))
    with pytest.raises(ValueError, match=r"linear: x \(4, 3\), weight \(5, 3\) and bias \(4, 5\)"):
        mv.linear(zeros(4, 3), zeros(5, 3), zeros(4, 5))
    assert mv.linear(zeros(2, 4, 3), zeros(5, 3), zeros(5)).shape == (2, 4, 5)  # leading axes are batch axes


@pytest.mark.parametrize("op", [mv.add, mv.sub, mv.mul, mv.div, mv.pow, mv.maximum, mv.minimum,
                                mv.binary_cross_entropy_with_logits], ids=lambda op: op.name)
def test_broadcast_errors_name_the_op_and_the_shapes(op):
    with pytest.raises(ValueError, match=rf"^{op.name}: cannot apply to shapes \(2, 3\), \(4,\): "):
        op(zeros(2, 3), zeros(4))


def test_where_and_concatenate_errors_name_the_op_and_the_shapes():
    with pytest.raises(ValueError, match=r"^where: cannot apply to shapes \(2,\), \(3,\), \(\): "):
        mv.where(np.array([True, False]), zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"^concatenate: cannot apply to shapes \(2, 3\), \(2, 4\): "):
        mv.concatenate([zeros(2, 3), zeros(2, 4)])


def test_mixing_float_dtypes_is_an_error():
    with pytest.raises(TypeError) as caught:
        zeros(2, dtype=np.float32) + zeros(2, dtype=np.float64)
    assert str(caught.value) == "add: dtypes differ (float32 and float64); convert one explicitly with .astype"


def test_integer_arrays_and_numpy_scalars_take_the_float_dtype():
    z = mv.Tensor(np.zeros(2, np.float32), requires_grad=True)
    assert mv.binary_cross_entropy_with_logits(z, np.array([0, 1])).dtype == np.float32
    assert (z * np.float64(2.0)).dtype == np.float32
    assert (z * np.array([True, False])).dtype == np.float32


def test_a_vjp_of_the_wrong_shape_is_named():
    bad = mv.primitive(lambda x: x * 2)
    bad.defvjp(lambda ctx, g: (np.ones((5, 7)),))
    x = mv.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"<lambda> \(argument 0\): a gradient of shape \(5, 7\) cannot "
                                           r"belong to a tensor of shape \(3,\)"):
        bad(x).sum().backward()


def test_wrong_arguments_are_named():
    with pytest.raises(TypeError, match=r"add: takes 2 tensor argument\(s\), got 1"):
        mv.add(zeros(2))
    with pytest.raises(TypeError, match=r"sum: takes the parameters \['axis', 'keepdims'\], got \['axes'\]"):
        mv.sum(zeros(2), axes=0)
    with pytest.raises(TypeError, match="mul: expected a Tensor, an ndarray or a number, got str"):
        zeros(2) * "2"
    with pytest.raises(TypeError, match="Tensor: only floating-point tensors can require grad, got dtype int64"):
        mv.Tensor(np.arange(3), requires_grad=True)


def test_backward_of_a_non_scalar_needs_a_seed_of_its_shape():
    y = zeros(2, 3, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"backward: a seed gradient is needed for a non-scalar tensor "
                                           r"of shape \(2, 3\)"):
        y.backward()
    with pytest.raises(ValueError, match=r"backward: seed gradient of shape \(3,\) for a tensor of shape \(2, 3\)"):
        y.backward(np.ones(3))


def test_backward_on_a_tensor_that_does_not_require_grad():
    with pytest.raises(RuntimeError, match="backward: this tensor does not require grad"):
        (zeros(2) * 2).sum().backward()


def test_bad_reduction_name():
    with pytest.raises(ValueError) as caught:
        mv.binary_cross_entropy_with_logits(zeros(2), zeros(2), reduction="avg")
    assert str(caught.value) == ("binary_cross_entropy_with_logits: reduction must be one of "
                                 "['mean', 'none', 'sum'], got 'avg'")


def test_repr_shows_shape_dtype_origin_and_name():
    w = mv.Tensor(np.zeros((2, 3), np.float32), requires_grad=True, name="w")
    assert repr(w) == "Tensor(shape=(2, 3), dtype=float32, leaf, requires_grad=True, name='w')"
    assert repr(w.sum(axis=0)) == "Tensor(shape=(3,), dtype=float32, op=sum, requires_grad=True)"
    assert repr(mv.Tensor(1.0)) == "Tensor(shape=(), dtype=float64, leaf)"


def test_numpy_index_and_type_errors_are_restated_with_the_op_name():
    with pytest.raises(IndexError, match=r"getitem: cannot apply to shapes \(3,\): index 3 is out of bounds"):
        mv.Tensor(np.ones(3))[3]
    with pytest.raises(TypeError, match=r"sum: cannot apply to shapes \(3,\)"):
        mv.sum(mv.Tensor(np.ones(3)), axis=1.5)


@pytest.mark.parametrize("function", [mv.softmax, mv.log_softmax])
@pytest.mark.parametrize("axis", [2, -3, 1.0])
def test_softmax_and_log_softmax_name_themselves_for_a_bad_axis(function, axis):
    with pytest.raises(ValueError, match=rf"^{function.__name__}: axis {axis!r} is not an axis of a 2-d input"):
        function(mv.Tensor(np.ones((2, 3))), axis=axis)
