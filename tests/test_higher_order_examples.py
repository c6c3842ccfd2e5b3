"""The higher-order-gradient examples, run small: Hessian-vector products, WGAN-GP's
gradient penalty, Newton's method (examples/hessian_vector_product.py, gradient_penalty.py,
newton_method.py)."""
import numpy as np
import pytest

pytest.importorskip("torch")        # each example checks itself against PyTorch


@pytest.fixture(scope="module")
def hvp_example(load_example):
    return load_example("hessian_vector_product")


def test_hvp_of_a_conv_net_matches_finite_differences_and_torch(hvp_example, device):
    result = hvp_example.main(["--batch", "4", "--size", "5", "--dims", "5", "--device", device])
    assert result["hvp_vs_finite_differences"] < 1e-8
    assert result["hvp_vs_torch"] < 1e-12
    assert result["hessian_vs_closed_form"] < 1e-13 and result["hessian_vs_torch"] < 1e-13
    h = result["hessian"]
    assert h.shape == (5, 5) and np.abs(h - h.T).max() < 1e-12


def test_gradient_penalty_matches_torch_and_drives_the_gradient_norm_to_one(load_example, device):
    gp = load_example("gradient_penalty")
    result = gp.main(["--steps", "60", "--batch", "32", "--hidden", "32", "--lr", "1e-3", "--log-every", "20",
                      "--device", device])
    assert result["penalty_vs_torch"] < 1e-12 and result["weight_grads_vs_torch"] < 1e-10
    history = result["history"]
    assert [row["step"] for row in history] == [0, 20, 40, 60]
    assert abs(history[0]["grad_norm"] - 1) > 0.5          # an untrained critic is far from 1-Lipschitz
    assert abs(history[-1]["grad_norm"] - 1) < 0.15
    assert history[-1]["penalty"] < 0.1 * history[0]["penalty"]
    assert history[-1]["wasserstein"] > 0


@pytest.mark.parametrize("solver", ["direct", "cg"])
def test_newton_converges_in_a_few_steps_to_torchs_minimum(load_example, device, solver):
    newton = load_example("newton_method")
    result = newton.main(["--n", "60", "--d", "3", "--solver", solver, "--device", device])
    assert result["newton_grad_norm"] < 1e-10 and result["newton_iterations"] <= 8
    assert result["gd_iterations"] > 10 * result["newton_iterations"]
    assert result["newton_vs_torch"] < 1e-8
    np.testing.assert_allclose(result["w_gd"], result["w_newton"], atol=1e-8)
    assert abs(result["newton_loss"] - result["torch_loss"]) < 1e-12
    if solver == "direct":
        assert result["hessian_vs_closed_form"] < 1e-13
