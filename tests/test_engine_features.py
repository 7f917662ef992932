"""Studying the graph (retain_grad, hooks), per-thread gradient mode, comparisons and NumPy
interoperation, and the engine's imports: light, one-way, and working without Numba."""
import ast
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import minivae as mv

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- retain_grad and hooks
def test_retain_grad_keeps_the_gradient_of_an_intermediate_tensor():
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    (h ** 2).sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)
    np.testing.assert_array_equal(x.grad, 3 * 2 * h.data)
    unretained = x * 2
    unretained.sum().backward()
    assert unretained.grad is None


def test_a_hook_sees_the_whole_gradient_and_may_replace_it():
    x = mv.Tensor(np.array([1.0, -1.0]), requires_grad=True)
    h = x * 2
    seen = []
    h.register_hook(lambda g: seen.append(g.copy()))
    (h * h + h).sum().backward()  # two paths into h: the hook sees their sum, once
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], 2 * h.data + 1)

    x.grad = None
    handle = h.register_hook(lambda g: np.zeros_like(g))
    (h * h).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    handle.remove()
    x.grad = None
    (h * h).sum().backward()
    np.testing.assert_array_equal(x.grad, 2 * 2 * h.data)


def test_a_hook_on_a_leaf_runs_before_the_gradient_is_stored():
    x = mv.Tensor(np.ones(3), requires_grad=True)
    x.register_hook(lambda g: g * 10)
    x.sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 10.0))


def test_hook_and_retain_grad_errors():
    c = mv.Tensor(np.ones(2))
    with pytest.raises(RuntimeError, match="does not require grad"):
        c.retain_grad()
    with pytest.raises(RuntimeError, match="does not require grad"):
        c.register_hook(print)
    x = mv.Tensor(np.ones(2), requires_grad=True)
    x.register_hook(lambda g: np.ones(5))
    with pytest.raises(RuntimeError, match=r"a hook returned a gradient of shape \(5,\) for a tensor of shape \(2,\)"):
        x.sum().backward()


# ---------------------------------------------------------------- gradient mode per thread
def test_interleaved_no_grad_in_two_threads_leaves_recording_on():
    entered, left = threading.Barrier(2), threading.Barrier(2)
    modes = {}

    def worker(name, leave_first):
        with mv.no_grad():
            entered.wait()
            modes[name] = mv.is_grad_enabled()
            if not leave_first:
                left.wait()
        if leave_first:
            left.wait()
        modes[name + " after"] = mv.is_grad_enabled()

    threads = [threading.Thread(target=worker, args=("a", True)), threading.Thread(target=worker, args=("b", False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert modes == {"a": False, "b": False, "a after": True, "b after": True}
    assert mv.is_grad_enabled()
    x = mv.Tensor(np.ones(2), requires_grad=True)
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_no_grad_in_one_thread_does_not_switch_off_another():
    inside, done = threading.Event(), threading.Event()
    seen = []

    def quiet():
        with mv.no_grad():
            inside.set()
            done.wait(5)

    t = threading.Thread(target=quiet)
    t.start()
    inside.wait(5)
    seen.append(mv.is_grad_enabled())
    x = mv.Tensor(np.ones(2), requires_grad=True)
    seen.append((x * 2).requires_grad)
    done.set()
    t.join()
    assert seen == [True, True]


def test_enable_grad_and_set_grad_enabled():
    with mv.no_grad():
        with mv.enable_grad():
            assert mv.is_grad_enabled()
        assert not mv.is_grad_enabled()
    with mv.set_grad_enabled(False):
        assert not mv.is_grad_enabled()
    assert mv.is_grad_enabled()
    mv.set_grad_enabled(False)
    try:
        assert not mv.is_grad_enabled()
    finally:
        mv.set_grad_enabled(True)

    @mv.no_grad()
    def f(t):
        return t * 2
    assert not f(mv.Tensor(np.ones(1), requires_grad=True)).requires_grad


# ---------------------------------------------------------------- comparisons and NumPy interoperation
def test_comparisons_give_booleans_without_a_graph():
    x = mv.Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    for result, expected in [(x > 0, [False, False, True]), (x >= 0, [False, True, True]),
                             (x < 0, [True, False, False]), (x <= 0, [True, True, False]),
                             (x == 0, [False, True, False]), (x != 0, [True, False, True]),
                             (0 < x, [False, False, True]), (x > mv.Tensor(np.zeros(3)), [False, False, True])]:
        assert isinstance(result, mv.Tensor) and result.dtype == bool and not result.requires_grad
        np.testing.assert_array_equal(result.data, expected)
    # a mask built from a comparison routes a gradient
    (x * (x > 0)).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])
    assert x in [x] and x in {x}  # membership and hashing stay by identity


def test_numpy_sees_a_tensors_data():
    x = mv.Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    a = np.asarray(x)
    assert a is x.data
    assert np.asarray(x, dtype=np.float64).dtype == np.float64
    e = np.exp(x)
    assert type(e) is np.ndarray and e.dtype == np.float32
    np.testing.assert_allclose(e, np.exp([1.0, 2.0]), rtol=1e-6)
    assert isinstance(np.ones(2, np.float32) + x, mv.Tensor)  # an ndarray on the left defers to the Tensor


@pytest.mark.parametrize("function, kwargs", [
    (np.sum, {}), (np.sum, {"axis": 0}), (np.sum, {"axis": 1, "keepdims": True}), (np.sum, {"dtype": np.float64}),
    (np.mean, {}), (np.mean, {"axis": -1}), (np.max, {}), (np.max, {"axis": 0}), (np.min, {"axis": 1}),
    (np.amax, {}), (np.prod, {}), (np.std, {"axis": 0}), (np.var, {}), (np.argmax, {}), (np.cumsum, {"axis": 1}),
    (np.any, {}), (np.all, {}), (np.ptp, {}), (np.round, {"decimals": 1}), (np.transpose, {}), (np.ravel, {}),
    (np.sort, {"axis": 0}), (np.linalg.norm, {}), (np.isfinite, {}), (np.where, {}), (np.shape, {}),
])
def test_every_numpy_function_applied_to_a_tensor_sees_its_data(function, kwargs):
    """As ``__array__`` documents: the result is the function of the tensor's array, with no graph."""
    data = np.array([[1.5, -2.0, 3.25], [0.5, 4.0, -1.0]], np.float32)
    x = mv.Tensor(data, requires_grad=True)
    args = (x > 0, x, -x) if function is np.where else (x,)
    expected = function(*(a.data for a in args), **kwargs)
    result = function(*args, **kwargs)
    assert not isinstance(result, mv.Tensor)
    assert type(result) is type(expected) and np.shape(result) == np.shape(expected)
    np.testing.assert_array_equal(result, expected)
    assert np.asarray(result).dtype == np.asarray(expected).dtype


def test_numpy_functions_of_several_tensors_and_an_out_array():
    x = mv.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = mv.Tensor(np.array([3.0]))
    np.testing.assert_array_equal(np.concatenate([x, y]), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(np.stack((x, x)), [[1.0, 2.0], [1.0, 2.0]])
    out = np.empty(())
    assert np.sum(x, out=out) is out and out == 3.0
    assert np.allclose(x, x.data) and np.array_equal(x, [1.0, 2.0])


def test_one_element_tensors_convert_to_python_numbers():
    assert float(mv.Tensor(np.array([2.5]))) == 2.5
    assert int(mv.Tensor(np.array(3.0))) == 3
    assert bool(mv.Tensor(np.array(1.0)) > 0)
    with pytest.raises(TypeError, match=r"only a one-element tensor converts to a Python float, this one has "
                                        r"shape \(2,\)"):
        float(mv.Tensor(np.ones(2)))


def test_ops_on_plain_arrays_return_plain_arrays():
    out = mv.exp(np.array([0.0, 1.0], np.float32))
    assert type(out) is np.ndarray and out.dtype == np.float32


# ---------------------------------------------------------------- imports
def run_python(code: str, **env_extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT), **env_extra})


def test_importing_the_engine_loads_no_data_training_study_or_download_code():
    result = run_python(
        "import sys, numpy\n"
        "before = set(sys.modules)\n"
        "import minivae.engine\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m in ('urllib.request', 'http.client', 'argparse') "
        "or m.split('.')[:2] in (['minivae', 'data'], ['minivae', 'training'], "
        "['minivae', 'study'], ['minivae', 'cli'], ['minivae', 'figures'])))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_engine_imports_nothing_above_it_and_tensor_imports_ops_only_once_complete():
    engine = ROOT / "minivae" / "engine"
    imports = {}
    for path in engine.glob("*.py"):
        tree = ast.parse(path.read_text())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    found.add(node.module or "")
                elif node.level > 1 or (node.module or "").startswith("minivae"):
                    raise AssertionError(f"{path.name} imports {node.module!r} from outside the engine")
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(("minivae", "numba")) for a in node.names), path.name
        imports[path.stem] = found
    assert "tensor" in imports["ops"] and "ops" not in imports["tensor"] - {""}
    # tensor.py's one import of ops (``from . import ops``) is its last statement: ops.py, which
    # builds on Tensor, may be loaded first or second and always finds the whole of tensor.py
    last = ast.parse((engine / "tensor.py").read_text()).body[-1]
    assert isinstance(last, ast.ImportFrom) and last.level == 1 and [a.name for a in last.names] == ["ops"]
    assert sum(isinstance(node, ast.ImportFrom) and "ops" in [a.name for a in node.names]
               for node in ast.walk(ast.parse((engine / "tensor.py").read_text()))) == 1


def test_without_numba_minivae_runs_on_the_references_and_says_so_once():
    code = (
        "import sys; sys.modules['numba'] = None\n"  # makes `import numba` raise ImportError
        "import warnings; warnings.simplefilter('default')\n"
        "import numpy as np, minivae as mv\n"
        "from minivae import kernels\n"
        "print(kernels.active())\n"
        "model = mv.VAE(input_dim=784, hidden=(16,), latent_dim=2, rng=0)\n"
        "opt = mv.Adam(model.parameters())\n"
        "x = np.random.default_rng(0).random((8, 784)).astype(np.float32)\n"
        "loss = model.negative_elbo(x, np.random.default_rng(0))\n"
        "loss.backward(); opt.step()\n"
        "print(np.isfinite(loss.item()))\n")
    result = run_python(code, MINIVAE_KERNELS="numba")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["reference", "True"]
    assert result.stderr.count("Numba is not installed, so the fast kernels are off") == 1
    refused = run_python("import sys; sys.modules['numba'] = None\nimport warnings\n"
                         "warnings.simplefilter('ignore')\nfrom minivae import kernels\n"
                         "try:\n    kernels.use('numba').__enter__()\nexcept RuntimeError as e:\n    print(e)\n")
    assert "the numba backend needs Numba, which is not installed" in refused.stdout
