"""Random programs of the engine's ops: gradients against central differences, the Numba kernels against
their NumPy references, and (with torch installed) values and gradients against PyTorch."""
import numpy as np
import pytest
from hypothesis import HealthCheck, find, given, settings

import minivae as mv
from minivae import kernels, testing as mvt

# A few hundred programs in the 'ci' profile (30 examples per test), ten times the profile's count in general.
MANY = settings(max_examples=10 * settings.default.max_examples,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@MANY
@given(mvt.programs())
def test_engine_gradients_match_central_differences(program):
    assert mv.gradcheck(program, *program.inputs)


# The full pool has too many ops for a few hundred programs to meet each pair of them; this smaller one
# makes reductions, shape changes, indexing and broadcasting meet often.
STRUCTURE_OPS = tuple(entry for entry in mvt.POOL if entry.name in {
    "mv.sum", "mv.mean", "mv.max", "mv.logsumexp", "mv.reshape", "mv.transpose", "mv.getitem", "mv.concatenate",
    "mv.stack", "mv.add", "mv.mul", "mv.div", "mv.matmul", "mv.where"})


@MANY
@given(mvt.programs(STRUCTURE_OPS, max_ops=5))
def test_shape_ops_reductions_and_broadcasting_compose(program):
    assert mv.gradcheck(program, *program.inputs)


def value_and_gradients(program, inputs, seed=0):
    """The program's output and the gradients of u·output for every input, u a fixed random cotangent."""
    tensors = [mv.Tensor(a, requires_grad=True) for a in inputs]
    out = program(*tensors)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    out.backward(cotangent)
    return out.data, [np.zeros_like(t.data) if t.grad is None else t.grad for t in tensors]


# The ops whose forward or VJPs run kernels, and a few others to compose them with.
KERNEL_OPS = tuple(entry for entry in mvt.POOL if entry.name in {
    "mv.linear", "mv.linear_relu", "mv.bernoulli_log_prob", "mv.gaussian_rsample", "mv.kl_to_standard_normal",
    "mv.tanh", "mv.mul", "mv.sum", "mv.getitem", "mv.transpose", "mv.concatenate"})


@pytest.mark.parametrize("dtype, rtol, atol", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-4, 1e-5)])
def test_numba_kernels_agree_with_their_numpy_references(dtype, rtol, atol):
    @MANY
    @given(mvt.programs(KERNEL_OPS, dtype=dtype))
    def check(program):
        with kernels.use("reference"):
            reference, reference_grads = value_and_gradients(program, program.inputs)
        with kernels.use("numba"):
            value, grads = value_and_gradients(program, program.inputs)
        assert value.dtype == reference.dtype == dtype
        np.testing.assert_allclose(value, reference, rtol=rtol, atol=atol)
        for grad, reference_grad in zip(grads, reference_grads):
            assert grad.dtype == dtype
            np.testing.assert_allclose(grad, reference_grad, rtol=rtol, atol=atol)
    check()


# ------------------------------------------------------------------------ against PyTorch
def torch_functions(torch):
    """The PyTorch counterpart of every op of ``mvt.POOL``, by name: f(*tensors, **params) on torch tensors."""
    F = torch.nn.functional

    def dims(x, axis):
        if axis is None:
            return tuple(range(x.ndim))
        return axis if isinstance(axis, tuple) else (axis,)

    def reduce(fn):
        def call(x, axis, keepdims):
            if x.ndim == 0:
                return x.clone()
            return fn(x, dim=dims(x, axis), keepdim=keepdims)
        return call

    def index(x, index):
        if isinstance(index, np.ndarray):
            return x[torch.as_tensor(index)]
        if isinstance(index, tuple):
            return x[tuple(torch.as_tensor(i) if isinstance(i, np.ndarray) else i for i in index)]
        if isinstance(index, slice) and index.step is not None and index.step < 0:
            positions = torch.as_tensor(np.arange(x.shape[0])[index].copy())  # torch has no negative steps
            return x[positions]
        return x[index]

    def bce(z, t, reduction):
        shape = torch.broadcast_shapes(z.shape, t.shape)  # minivae broadcasts both; torch wants one shape
        return F.binary_cross_entropy_with_logits(z.expand(shape), t.expand(shape), reduction=reduction)

    def linear_relu(x, w, b, relu):
        y = F.linear(x, w, b)
        return torch.relu(y) if relu else y

    table = {
        "mv.neg": torch.neg, "mv.exp": torch.exp, "mv.log": torch.log, "mv.log1p": torch.log1p,
        "mv.sqrt": torch.sqrt, "mv.abs": torch.abs, "mv.relu": torch.relu, "mv.tanh": torch.tanh,
        "mv.sigmoid": torch.sigmoid, "mv.softplus": F.softplus, "mv.log_sigmoid": F.logsigmoid,
        "mv.add": torch.add, "mv.sub": torch.sub, "mv.mul": torch.mul, "mv.div": torch.div, "mv.pow": torch.pow,
        "mv.maximum": torch.maximum, "mv.minimum": torch.minimum,
        "mv.where": lambda x, y, condition: torch.where(torch.as_tensor(condition), x, y),
        "mv.sum": reduce(torch.sum), "mv.mean": reduce(torch.mean), "mv.max": reduce(torch.amax),
        "mv.logsumexp": reduce(torch.logsumexp),
        "mv.reshape": lambda x, shape: x.reshape(shape),
        "mv.transpose": lambda x, axes: x.permute(tuple(reversed(range(x.ndim))) if axes is None else axes),
        "mv.getitem": index,
        "mv.concatenate": lambda x, y, axis: torch.cat([x, y], dim=axis),
        "mv.stack": lambda x, y, axis: torch.stack([x, y], dim=axis),
        "mv.matmul": torch.matmul, "mv.linear": F.linear,
        "mv.binary_cross_entropy_with_logits": bce,
        "mv.softmax": lambda x, axis: torch.softmax(x, dim=axis),
        "mv.log_softmax": lambda x, axis: torch.log_softmax(x, dim=axis),
        "mv.linear_relu": linear_relu,
        "mv.bernoulli_log_prob": lambda z, t: -bce(z, t, "none").sum(dim=-1),
        "mv.gaussian_rsample": lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar) * eps,
        "mv.kl_to_standard_normal": lambda mu, logvar: 0.5 * (mu * mu + torch.exp(logvar) - 1 - logvar).sum(dim=-1),
        "mv.kl_diagonal_gaussians": lambda mu, logvar, m, s: 0.5 * (
            s - logvar + (torch.exp(logvar) + (mu - m) ** 2) * torch.exp(-s) - 1).sum(dim=-1),
        "mv.gaussian_log_prob": lambda z, mu, logvar: -0.5 * (np.log(2 * np.pi) + logvar
                                                             + (z - mu) ** 2 * torch.exp(-logvar)).sum(dim=-1),
    }
    return table


def torch_call(torch):
    """``call(step, args)`` for ``Program.run``: each step of a program run with its PyTorch counterpart."""
    table = torch_functions(torch)

    def call(step, args):
        return table[step.entry.name](*args, **step.params)
    return call


def test_the_torch_table_covers_every_op():
    torch = pytest.importorskip("torch")
    assert set(torch_functions(torch)) == {entry.name for entry in mvt.POOL}


def test_values_and_gradients_agree_with_pytorch():
    torch = pytest.importorskip("torch")
    call = torch_call(torch)

    @MANY
    @given(mvt.programs())
    def check(program):
        value, grads = value_and_gradients(program, program.inputs)
        inputs = [torch.tensor(a, requires_grad=True) for a in program.inputs]
        out = program.run(inputs, call)
        out.backward(torch.as_tensor(np.random.default_rng(0).standard_normal(value.shape)))
        np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-9, atol=1e-12)
        for grad, x in zip(grads, inputs):
            expected = np.zeros(grad.shape) if x.grad is None else x.grad.numpy()
            np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)
    check()


# ------------------------------------------------------------------------ a wrong VJP is found and shrunk
def exp_twice_with_wrong_vjp():
    """exp_twice(x) = exp(2x), whose VJP forgets the chain rule's factor 2: g·exp(2x)."""
    @mv.primitive
    def exp_twice(x):
        return np.exp(2 * x)
    exp_twice.defvjp(lambda ctx, g: (g * ctx.ans,))  # right: 2·g·ans
    return exp_twice


def test_programs_and_gradcheck_find_a_wrong_vjp_and_shrink_it_to_a_short_runnable_program():
    exp_twice = exp_twice_with_wrong_vjp()
    pool = mvt.POOL + (mvt.PoolEntry("exp_twice", exp_twice, domains=(mvt.SMALL,)),)

    def fails(program):
        try:
            mv.gradcheck(program, *program.inputs)
        except mv.GradcheckError:
            return True
        return False

    smallest = find(mvt.programs(pool), fails,
                    settings=settings(max_examples=2000, derandomize=True, database=None,
                                      suppress_health_check=list(HealthCheck)))
    assert 1 <= len(smallest) <= 3
    assert any(step.entry.name == "exp_twice" for step in smallest.steps)

    namespace = {"exp_twice": exp_twice}
    exec(repr(smallest), namespace)  # the printed program runs, and shows the same fault
    with pytest.raises(mv.GradcheckError):
        mv.gradcheck(namespace["program"], *namespace["inputs"])
