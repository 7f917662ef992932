"""The benchmark harness, run for real at small sizes: every contender's step, the peers' losses against
minivae's, each section of ``python -m benchmarks.run`` (its workers, its report, its pyperf JSON), a
missing peer and a failing worker left out with a note (tests/test_plots.py draws the charts). No timing
is asserted."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import minivae as mv
from benchmarks import contenders, micro, oneshot, report, run
from benchmarks.config import Config, Options
from benchmarks.measure import Pool, Timing

pyperf = pytest.importorskip("pyperf")  # it holds the harness's results; in the bench extra

TINY = Config(batch=8, hidden=16, latent=2, input_dim=32, threads=1)


def tiny_options(tmp_path, sections, names=("minivae", "floor"), **changes) -> Options:
    return Options.quick_run(sections=sections, contenders=list(names), model=TINY, rounds=2, batches=(4, 8),
                             eval_digits=2, eval_k=20, kernel_calls=2, memory_examples=256, turn_s=0.005,
                             tight_s=0.005, pause_s=0.0, warm_s=0.001, warmup_steps=1, json=tmp_path / "run.json",
                             **changes)


def test_every_step_contender_is_registered_with_a_label():
    assert set(contenders.STEP_CONTENDERS) <= set(contenders.CONTENDERS)
    labels = [contenders.CONTENDERS[name].label for name in contenders.STEP_CONTENDERS]
    assert len(set(labels)) == len(labels)
    assert contenders.CONTENDERS["minivae-reference"].env == {"MINIVAE_KERNELS": "reference"}
    assert contenders.CONTENDERS["minivae"].env == {"MINIVAE_KERNELS": "numba"}


def test_a_peer_named_in_the_variable_is_left_out_with_a_note(monkeypatch):
    monkeypatch.setenv(contenders.WITHOUT_VARIABLE, "jax, autograd")
    present, notes = contenders.available()
    assert "jax-jit" not in present and "autograd" not in present
    assert {"minivae", "minivae-reference", "floor"} <= set(present)
    assert any("jax.jit" in note and "jax" in note for note in notes)
    assert any("hips autograd" in note for note in notes)


def test_a_peer_whose_module_is_missing_is_left_out_with_a_note(monkeypatch):
    monkeypatch.delenv(contenders.WITHOUT_VARIABLE, raising=False)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    present, notes = contenders.available()
    assert "torch" not in present and "torch-compile" not in present
    assert sum("torch is not installed" in note for note in notes) == 2


def test_floor_flops_count_each_product():
    # 14 products of the default step: x Wᵀ and gᵀ x for five layers, g W for four.
    assert contenders.floor_flops(Config()) == 419_840_000
    assert contenders.floor_product_count(Config()) == 14
    # S samples multiply the decoder's rows only.
    decoder = 2 * 128 * (20 * 400 + 400 * 784) * 3
    assert contenders.floor_flops(Config(samples=10)) - contenders.floor_flops(Config()) == 9 * decoder


@pytest.mark.parametrize("samples", [1, 3])
def test_the_step_contenders_run_a_step(samples):
    present, _ = contenders.available()
    for name in present:
        if name == "torch-compile":
            continue  # compiling takes tens of seconds; a run with --contenders torch-compile covers it
        step = contenders.CONTENDERS[name].build(TINY.replace(samples=samples))
        step()
        step()


def minivae_loss_and_parameters(samples):
    model = mv.VAE(32, (16,), 3, rng=0)
    flat = [p.data for p in model.parameters()]
    parameters = list(zip(flat[0::2], flat[1::2]))
    assert [w.shape for w, _ in parameters] == [(16, 32), (3, 16), (3, 16), (16, 3), (32, 16)]
    x = contenders.batch_of(8, 32)
    loss = float(model.negative_elbo(mv.Tensor(x), np.random.default_rng(1), samples=samples).data)
    eps = np.random.default_rng(1).standard_normal((samples, 8, 3), dtype=np.float32)
    return loss, parameters, x, eps


@pytest.mark.parametrize("samples", [1, 4])
def test_every_peer_computes_minivae_loss_on_the_same_parameters_and_noise(samples):
    loss, parameters, x, eps = minivae_loss_and_parameters(samples)
    checked = 0
    if importlib.util.find_spec("autograd"):
        assert contenders.autograd_negative_elbo(parameters, x, eps) == pytest.approx(loss, rel=1e-5)
        checked += 1
    if importlib.util.find_spec("jax"):
        assert float(contenders.jax_negative_elbo(parameters, x, eps)) == pytest.approx(loss, rel=1e-5)
        checked += 1
    if importlib.util.find_spec("torch"):
        import torch
        config = Config(batch=8, hidden=16, latent=3, input_dim=32, samples=samples, threads=1)
        _, negative_elbo = contenders.torch_vae(config, parameters)
        with torch.no_grad():
            value = float(negative_elbo(torch.from_numpy(x), torch.from_numpy(eps if samples > 1 else eps[0])).mean())
        assert value == pytest.approx(loss, rel=1e-5)
        checked += 1
    if not checked:
        pytest.skip("no peer is installed")


def test_the_step_and_scaling_sections_interleave_workers_and_write_pyperf_json(tmp_path, monkeypatch):
    monkeypatch.setenv(contenders.WITHOUT_VARIABLE, "jax")
    measured, text, path = run.run(tiny_options(tmp_path, ["step", "scaling"], ("minivae", "floor", "jax-jit")))
    assert "jax.jit (whole step): left out (MINIVAE_BENCH_WITHOUT names jax)" in measured.notes
    steps = measured.find("step", "batch 8")
    assert [t.label for t in steps] == ["minivae (numba)", "floor (matrix products)"]
    for t in steps:
        assert len(t.values) == 2 and len(t.tight) == 2 and t.within_noise is not None and t.first_step_s > 0
    assert [t.config.batch for t in measured.find("scaling")] == [4, 4]  # batch 8 is the step section's
    assert "| minivae (numba) | " in text and "| ratio | / floor (matrix products) |" in text
    assert "| 4 | 16 | " in text and "| 8 | 16 | " in text and "load average" in text
    assert "jax.jit (whole step) |" not in text  # no row for it
    suite = pyperf.BenchmarkSuite.load(str(path))
    names = suite.get_benchmark_names()
    assert "step / batch 8 / minivae (numba)" in names
    assert "step / S = 10 / floor (matrix products) (tight loops)" in names
    assert suite.get_benchmark("step / batch 8 / floor (matrix products)").median() == pytest.approx(steps[1].median)
    compared = subprocess.run([sys.executable, "-m", "pyperf", "compare_to", str(path), str(path)],
                              capture_output=True, text=True)
    assert compared.returncode == 0 and "step / batch 8 / minivae (numba)" in compared.stdout


def test_the_evaluation_section_times_minivae_evaluate_against_its_products(tmp_path):
    measured, text, _ = run.run(tiny_options(tmp_path, ["evaluation"]))
    assert [t.label for t in measured.find("evaluation")] == ["minivae evaluate (k importance samples)",
                                                              "floor (encoder and decoder products)"]
    assert all(t.config == TINY.replace(batch=2, samples=20) for t in measured.find("evaluation"))
    assert "k = 20, 2 held-out digits" in text and "/ floor (encoder and decoder products): " in text


def test_the_profile_kernels_and_memory_sections_run_in_their_own_processes(tmp_path):
    measured, text, path = run.run(tiny_options(tmp_path, ["profile", "kernels", "memory"]))
    assert set(measured.profile) == {"numba", "reference"}
    assert "| part | numba | reference |" in text and "| whole step |" in text
    assert "| adam_update (652,824 parameters) |" in text and "| linear_relu (128×784 → 400)" in text
    assert "minivae (reference compositions)" in measured.memory and "### Memory: one epoch of 256" in text
    assert (tmp_path / "run-parts.png").exists()
    names = pyperf.BenchmarkSuite.load(str(path)).get_benchmark_names()
    assert "profile / numba / adam update (all parameters)" in names
    assert "memory / minivae (numba) / peak_rss_mib" in names


def test_the_train_and_startup_sections_run_whole_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(contenders.WITHOUT_VARIABLE, "torch,jax")
    measured, text, _ = run.run(tiny_options(tmp_path, ["train", "startup"], train_epochs=2, train_batches=(256,)))
    for section in ("train", "train epochs"):
        assert [(t.case, t.label) for t in measured.find(section)] == [
            ("2 epochs of 9,000 digits, batch 256", label) for label in ("minivae train", "captured step loop")]
    assert all(len(t.all_values) == 2 * (9000 // 256 + 1) - 2 for t in measured.find("train"))
    assert all(0 < t.first_step_s < 60 for t in measured.find("train"))
    assert "| run | median ms/step | quartiles ms | median of each run ms | steps | last epoch ms/step" in text
    assert any("pytorch eager" in note for note in measured.notes)
    assert {(t.case, t.label) for t in measured.find("startup")} == {
        (f"{kind} kernel cache", part) for kind in ("cold", "warm")
        for part in ("import", "first step", "start to first step")}
    assert "Compilation (cold − warm first step)" in text


def test_a_worker_that_fails_to_build_is_dropped_with_a_note():
    pool = Pool(["floor"], [TINY.replace(batch=-1)])
    try:
        pool.build(0, 1)
        assert pool.workers == {}
    finally:
        pool.close()
    assert len(pool.notes) == 1 and pool.notes[0].startswith("floor (matrix products): left out, ValueError")


def test_the_fairness_check_compares_the_median_with_the_tight_loops():
    assert Timing("step", "c", "x", [[1.0, 1.02, 1.01]], tight=[1.0, 1.0]).within_noise
    assert not Timing("step", "c", "x", [[1.2, 1.25]], tight=[1.0, 1.1]).within_noise
    assert Timing("step", "c", "x", [[1.0]]).within_noise is None


def test_each_kernel_case_runs_the_fused_op_on_numba_and_the_composition_on_the_reference():
    cases = micro.function_cases(batch=4, hidden=8, latent=3, input_dim=16)
    assert [function.name for _, function, _, _ in cases] == [
        "linear", "linear_relu", "bernoulli_log_prob", "gaussian_rsample", "kl_to_standard_normal"]
    for label, function, tensors, seed in cases:
        gradients = {}
        for backend in ("numba", "reference"):
            with mv.kernels.use(backend):
                out = function(*tensors)
            ops = mv.op_counts(out)
            if backend == "numba":
                assert dict(ops) == {function.name: 1}, label
            else:
                assert function.name not in ops and sum(ops.values()) > 1, label
            assert out.dtype == np.float32 and seed.shape == out.shape
            with mv.kernels.use(backend):
                micro.forward_backward(function, tensors, seed)
            gradients[backend] = [t.grad for t in tensors if t.requires_grad]
        assert gradients["numba"] and all(g is not None for g in gradients["numba"])
        for fused, composed in zip(gradients["numba"], gradients["reference"]):
            np.testing.assert_allclose(fused, composed, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_the_profile_times_forwards_backwards_and_adam_and_restores_the_engine(backend):
    from minivae.engine.ops import Op
    from minivae.optim import Adam
    originals = Op.__call__, Op.backward, Adam.update, mv.functions.linear.implementation
    with mv.kernels.use(backend):
        result = oneshot.profile(3, TINY)
    assert (Op.__call__, Op.backward, Adam.update, mv.functions.linear.implementation) == originals
    parts = result["parts_s"]
    assert all(seconds > 0 for seconds in parts.values()) and sum(parts.values()) == pytest.approx(result["step_s"])
    assert "adam update (all parameters)" in parts
    if backend == "numba":
        assert {"forward linear", "backward linear", "backward linear_relu", "forward linear_relu",
                "forward bernoulli_log_prob", "backward bernoulli_log_prob", "backward gaussian_rsample",
                "backward kl_to_standard_normal"} <= set(parts)
        assert "forward matmul" not in parts
    else:
        assert {"forward matmul", "backward matmul", "forward softplus", "backward softplus"} <= set(parts)
        assert not any("linear" in label or "bernoulli" in label for label in parts)
    groups = report.grouped_parts(parts)
    assert list(groups) == [report.LINEAR_GROUP, "adam", "bernoulli log-likelihood (fused)", "other ops",
                            "everything else"]
    assert sum(groups.values()) == pytest.approx(sum(parts.values()))
    assert groups[report.LINEAR_GROUP] > 0 and groups["adam"] > 0
    other = {"step_s": 1.0, "parts_s": {"forward only_here": 0.25, report.REST: 0.75}}
    text = "\n".join(report.profile_table({backend: result, "reference" if backend == "numba" else "numba": other}))
    rows = [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ")][2:]
    assert len(rows) == len(set(rows)) and set(rows) == set(parts) | {"forward only_here", "whole step"}
    assert rows[-2:] == [report.REST, "whole step"]


def test_a_quick_run_leaves_out_torch_compile_and_the_evaluation_unless_named():
    quick, notes = run.options(["--quick"])
    assert quick.quick and quick.rounds == 4 and quick.eval_digits == 16
    assert "evaluation" not in quick.sections
    assert {"step", "profile", "kernels", "scaling", "train"} <= set(quick.sections)
    assert "torch-compile" not in quick.contenders
    assert {"minivae", "minivae-reference", "floor"} <= set(quick.contenders)
    assert len(notes) == 2 and any("--only evaluation" in n for n in notes) and any("torch.compile" in n for n in notes)
    named, notes = run.options(["--quick", "--only", "evaluation", "step", "--contenders", "torch-compile", "floor",
                                "--rounds", "3"])
    assert notes == [] and named.sections == ["evaluation", "step"] and named.contenders == ["torch-compile", "floor"]
    assert named.rounds == 3
    full, notes = run.options([])
    assert notes == [] and full.sections == list(run.SECTIONS) and full.contenders == list(contenders.STEP_CONTENDERS)
    assert full.rounds == 10 and full.eval_digits == 64 and full.model == Config()


def test_the_command_line_refuses_bad_numbers_in_one_line():
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--rounds", "0"], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.splitlines()[-1].endswith("--rounds must be a positive integer, got 0")
