"""The benchmark harness: contender discovery, a missing peer left out with a note, a failing worker
dropped and the report (tests/test_plots.py draws the charts). Small configurations only; no timing
is asserted."""
import importlib.util

import numpy as np
import pytest

import minivae as mv
from benchmarks import contenders, micro, oneshot, run

TINY = {"batch": 8, "hidden": 16, "latent": 2, "input_dim": 32, "samples": 1}


def test_every_step_contender_is_registered_with_a_label():
    assert set(contenders.STEP_CONTENDERS) <= set(contenders.CONTENDERS)
    labels = [contenders.CONTENDERS[name].label for name in contenders.STEP_CONTENDERS]
    assert len(set(labels)) == len(labels)


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
    assert contenders.floor_flops() == 419_840_000
    assert contenders.floor_product_count() == 14
    # S samples multiply the decoder's rows only.
    decoder = 2 * 128 * (20 * 400 + 400 * 784) * 3
    assert contenders.floor_flops(samples=10) - contenders.floor_flops() == 9 * decoder


@pytest.mark.parametrize("samples", [1, 3])
def test_the_step_contenders_run_a_step(samples):
    present, _ = contenders.available()
    for name in present:
        if name == "torch-compile":
            continue  # compiling takes tens of seconds; the harness run covers it
        step = contenders.CONTENDERS[name].build(**{**TINY, "samples": samples}, threads=1)
        step()
        step()


def report_header():
    return {"threads": 1, "quick": True, "machine": run.machine(), "notes": [],
            "load_average_at_start": (0.0, 0.0, 0.0), "load_average_at_end": (0.0, 0.0, 0.0)}


def test_the_pool_measures_present_contenders_and_notes_the_missing_one(monkeypatch):
    monkeypatch.setenv(contenders.WITHOUT_VARIABLE, "jax")
    notes = []
    pool = run.Pool(["floor", "jax-jit"], [TINY], threads=1, notes=notes)
    try:
        assert list(pool.workers) == ["floor"]
        rows = run.measure(pool, 0, rounds=2, turn_s=0.01, tight_s=0.01, label="test")
    finally:
        pool.close()
    assert list(rows) == ["floor"]
    row = rows["floor"]
    assert row["steps"] >= 10 and row["median_s"] > 0 and len(row["tight_loop_s"]) == 2
    assert any("jax" in note for note in notes)
    results = {"threads": 1, "quick": True, "machine": run.machine(), "notes": notes,
               "load_average_at_start": (0.0, 0.0, 0.0), "load_average_at_end": (0.0, 0.0, 0.0),
               "step": {"tiny": {"config": TINY, "contenders": rows, "ratios": run.ratios(rows),
                                 "targets": run.targets(rows), "floor_flops": contenders.floor_flops(**TINY)}}}
    text = run.report(results)
    assert "Left out:" in text and "jax" in text and "floor (matrix products)" in text
    assert "jax.jit (whole step) |" not in text  # no row for it


def test_a_worker_that_fails_to_build_is_dropped_with_a_note():
    notes = []
    pool = run.Pool(["floor"], [{**TINY, "batch": -1}], threads=1, notes=notes)
    try:
        assert pool.build(0) == {}
        assert pool.workers == {}
    finally:
        pool.close()
    assert len(notes) == 1 and notes[0].startswith("floor (matrix products): left out, ValueError")


def test_ratios_and_targets_compare_minivae_with_every_other_contender():
    rows = {"minivae": {"median_s": 3.0}, "floor": {"median_s": 2.5}, "torch": {"median_s": 5.0}}
    assert run.ratios(rows) == {"minivae": {"floor": 1.2, "torch": 0.6}}
    (label_floor, (ratio, met)), (label_torch, (ratio_t, met_t)) = run.targets(rows)["minivae"].items()
    assert "1.3" in label_floor and ratio == 1.2 and met
    assert "0.65" in label_torch and ratio_t == 0.6 and met_t


def minivae_loss_and_parameters(samples):
    import minivae as mv
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
        _, negative_elbo = contenders.torch_vae(16, 3, 32, samples=samples, parameters=parameters, threads=1)
        with torch.no_grad():
            value = float(negative_elbo(torch.from_numpy(x), torch.from_numpy(eps if samples > 1 else eps[0])).mean())
        assert value == pytest.approx(loss, rel=1e-5)
        checked += 1
    if not checked:
        pytest.skip("no peer is installed")


def test_the_reference_contender_runs_the_compositions():
    assert contenders.CONTENDERS["minivae-reference"].env == {"MINIVAE_KERNELS": "reference"}
    assert contenders.CONTENDERS["minivae"].env == {"MINIVAE_KERNELS": "numba"}


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


def test_the_kernels_section_times_both_backends_of_every_case():
    results = micro.time_kernels(calls=2, block=1, batch=4, hidden=8, latent=3, input_dim=16)
    assert [r["case"].split(" ")[0] for r in results] == [
        "linear", "linear_relu", "bernoulli_log_prob", "gaussian_rsample", "kl_to_standard_normal", "adam_update"]
    for r in results:
        assert r["numba_s"] > 0 and r["reference_s"] > 0 and r["speedup"] == r["reference_s"] / r["numba_s"]
    text = run.report({**report_header(), "kernels": results})
    assert "| case | numba µs | reference µs | speed-up |" in text
    assert "| linear_relu (4×16 → 8), forward + backward |" in text and "| adam_update (" in text


@pytest.mark.parametrize("backend", ["numba", "reference"])
def test_the_profile_times_forwards_backwards_and_adam_and_restores_the_engine(backend):
    from minivae.engine.ops import Op
    from minivae.optim import Adam
    originals = Op.__call__, Op.backward, Adam.update, mv.functions.relu.fused
    with mv.kernels.use(backend):
        result = oneshot.profile(3, **TINY)
    assert (Op.__call__, Op.backward, Adam.update, mv.functions.relu.fused) == originals
    parts = result["parts_s"]
    assert all(seconds > 0 for seconds in parts.values()) and sum(parts.values()) == pytest.approx(result["step_s"])
    assert "adam update (all parameters)" in parts
    if backend == "numba":
        assert {"forward linear", "backward linear", "backward linear_relu", "forward relu (fused: relu_after_linear)",
                "forward bernoulli_log_prob", "backward bernoulli_log_prob", "backward gaussian_rsample",
                "backward kl_to_standard_normal"} <= set(parts)
        assert "forward matmul" not in parts
    else:
        assert {"forward matmul", "backward matmul", "forward softplus", "backward softplus"} <= set(parts)
        assert not any("linear" in label or "bernoulli" in label for label in parts)
    groups = run.grouped_parts(parts)
    assert list(groups) == [run.LINEAR_GROUP, "adam", "bernoulli log-likelihood (fused)", "other ops",
                            "everything else"]
    assert sum(groups.values()) == pytest.approx(sum(parts.values()))
    assert groups[run.LINEAR_GROUP] > 0 and groups["adam"] > 0
    other = {"step_s": 1.0, "parts_s": {"forward only_here": 0.25, "everything else (graph walk, gradient sums, "
                                                                 "Python)": 0.75}}
    text = run.report({**report_header(), "profile": {backend: result,
                                                      "reference" if backend == "numba" else "numba": other}})
    assert "| part | numba | reference (compositions) |" in text and "| whole step |" in text
    rows = [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ")][2:]
    assert len(rows) == len(set(rows)) and set(rows) == set(parts) | {"forward only_here", "whole step"}
    assert rows[-2:] == ["everything else (graph walk, gradient sums, Python)", "whole step"]


def test_a_quick_run_leaves_out_torch_compile_and_the_evaluation_unless_named():
    import argparse
    args = argparse.Namespace(quick=True, only=None, contenders=None)
    notes = run.choose_sections(args)
    assert "evaluation" not in args.only and {"step", "profile", "kernels", "scaling", "train"} <= set(args.only)
    assert "torch-compile" not in args.contenders and {"minivae", "minivae-reference", "floor"} <= set(args.contenders)
    assert len(notes) == 2 and any("--only evaluation" in n for n in notes) and any("torch.compile" in n for n in notes)
    named = argparse.Namespace(quick=True, only=["evaluation", "step"], contenders=["torch-compile", "floor"])
    assert run.choose_sections(named) == [] and named.only == ["evaluation", "step"]
    assert named.contenders == ["torch-compile", "floor"]
    full = argparse.Namespace(quick=False, only=None, contenders=None)
    assert run.choose_sections(full) == [] and full.only == list(run.SECTIONS)
    assert full.contenders == list(contenders.STEP_CONTENDERS)
