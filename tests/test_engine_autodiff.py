"""Backward's bookkeeping: accumulation, resetting, no_grad, detach, and very long graphs."""
import numpy as np
import pytest

import minivae as mv


def test_a_tensor_used_twice_receives_both_gradients():
    x = mv.Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x + x).sum().backward()  # d/dx (x² + x) = 2x + 1
    np.testing.assert_array_equal(x.grad, 2 * x.data + 1)


def test_a_shared_intermediate_passes_on_the_sum_of_its_gradients():
    x = mv.Tensor(np.array([0.5, 1.5]), requires_grad=True)
    a = x.exp()
    (a * 3.0 + a * a).sum().backward()  # d/dx (3eˣ + e²ˣ) = 3eˣ + 2e²ˣ
    np.testing.assert_allclose(x.grad, 3 * np.exp(x.data) + 2 * np.exp(2 * x.data))
    assert a.grad is None  # only leaves keep a gradient


def test_two_backward_calls_add_up_and_zero_grad_or_none_resets():
    w = mv.Tensor(np.array([2.0, -1.0]), requires_grad=True)
    loss = (w * w).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * (2 * w.data))
    w.zero_grad()
    assert w.grad is None
    loss.backward()
    np.testing.assert_array_equal(w.grad, 2 * w.data)
    w.grad = None
    (3 * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [3.0, 3.0])


def test_constants_get_no_gradient_and_a_leaf_owns_a_writable_gradient_made_from_a_read_only_view():
    x = mv.Tensor(np.ones(3), requires_grad=True)
    constant = mv.Tensor(np.ones(3))
    (x + constant).sum().backward()  # the sum's VJP is a read-only broadcast view
    assert constant.grad is None
    x.grad += 1
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
    frozen = np.full(3, 5.0)
    frozen.flags.writeable = False  # an array that owns its data yet is read-only, handed back by a hook
    z = mv.Tensor(np.ones(3), requires_grad=True)
    z.register_hook(lambda g: frozen)
    (z * 2).sum().backward()
    z.grad += 1
    np.testing.assert_array_equal(z.grad, [6.0, 6.0, 6.0])


def test_two_leaves_reached_by_one_gradient_array_get_unshared_gradients():
    # add's VJP hands the same (writable, owning) seed array to both arguments
    x = mv.Tensor(np.ones(3), requires_grad=True)
    y = mv.Tensor(np.ones(3), requires_grad=True)
    (x + y).backward(np.ones(3))
    assert x.grad is not y.grad
    x.grad += 1
    np.testing.assert_array_equal(y.grad, [1.0, 1.0, 1.0])


def test_backward_takes_a_seed_for_a_non_scalar_tensor():
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x * x).backward(np.array([10.0, 100.0]))
    np.testing.assert_array_equal(x.grad, [20.0, 400.0])


def test_no_grad_records_nothing_and_restores_the_previous_mode():
    x = mv.Tensor(np.ones(2), requires_grad=True)
    with mv.no_grad():
        assert not mv.is_grad_enabled()
        with mv.no_grad():
            y = x * 2
        z = y.exp()
    assert mv.is_grad_enabled()
    for t in (y, z):
        assert not t.requires_grad and t.op is None and t.parents == ()
    np.testing.assert_array_equal(y.data, [2.0, 2.0])


def test_no_grad_as_decorator_and_after_an_exception():
    @mv.no_grad()
    def evaluate(t):
        assert not mv.is_grad_enabled()
        return t * t
    x = mv.Tensor(np.ones(2), requires_grad=True)
    assert not evaluate(x).requires_grad
    with pytest.raises(ZeroDivisionError), mv.no_grad():
        raise ZeroDivisionError
    assert mv.is_grad_enabled() and (x * x).requires_grad


def test_detach_shares_data_and_cuts_the_graph():
    x = mv.Tensor(np.ones(2), requires_grad=True)
    d = (x * 2).detach()
    assert not d.requires_grad and d.op is None
    (x * d).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_backward_through_a_10000_op_chain():
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000] * 2, rtol=1e-9)


def test_the_seed_is_copied_and_a_zero_d_leaf_gets_an_ndarray():
    x = mv.Tensor(np.ones(3), requires_grad=True)
    seed = np.ones(3)
    (x + 1.0).backward(seed)
    seed[0] = 99.0
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 1.0])
    s = mv.Tensor(np.array(0.5, np.float32), requires_grad=True)
    (s * s).backward()
    (s * s).backward()
    assert isinstance(s.grad, np.ndarray) and s.grad.dtype == np.float32 and s.grad == 2.0


def test_one_no_grad_instance_can_be_entered_again_inside_itself():
    quiet = mv.no_grad()

    @quiet
    def depth(n):
        return depth(n - 1) if n else mv.is_grad_enabled()
    assert depth(2) is False
    assert mv.is_grad_enabled()


def test_requires_grad_sets_a_leafs_flag_and_refuses_an_op_result_or_integers():
    x = mv.Tensor(np.ones(2))
    assert x.requires_grad_() is x and x.requires_grad
    with pytest.raises(ValueError, match="requires_grad_: only a leaf tensor's flag can be set"):
        (x * 2).requires_grad_(False)
    with pytest.raises(TypeError, match="requires_grad_: only floating-point tensors can require grad"):
        mv.Tensor(np.ones(2, np.int64)).requires_grad_()


def test_gradients_walk_only_the_graph_between_the_output_and_the_inputs():
    visited = []
    c = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = mv.Tensor(np.array([3.0, 4.0]), requires_grad=True)
    a = c * 2.0
    for name, t in (("a", a), ("b", b), ("c", c)):
        t.register_hook(lambda g, name=name: visited.append(name))
    (grad_a,) = mv.gradients((a * b).sum(), [a])
    np.testing.assert_array_equal(grad_a.data, b.data)
    assert visited == ["a"]  # neither the other factor's branch nor what lies below a
    assert c.grad is None and b.grad is None
