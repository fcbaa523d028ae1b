"""Branching regularizer: P_use against brute-force tree enumeration, hand-computed losses, ablations."""

import itertools

import numpy as np
import pytest
import torch

from dymu_rt.control.regularizer import RegularizerConfig, active_mask, branching_regularizer, p_use
from dymu_rt.core.tree import used_nodes

torch.set_num_threads(1)


def _random_nu(L, N, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(L - 1, N, N, generator=g, dtype=torch.float64) * 1.5, dim=-1)


def _exact_p_use(nu):
    """P(node used) by summing the probabilities of every tree (parents drawn independently)."""
    nu = nu.numpy()
    Lm1, N, _ = nu.shape
    total = np.zeros((Lm1 + 1, N))
    for choice in itertools.product(range(N), repeat=Lm1 * N):
        table = np.vstack([np.arange(N), np.asarray(choice).reshape(Lm1, N)])
        prob = np.prod([nu[l - 1, j, table[l, j]] for l in range(1, Lm1 + 1) for j in range(N)])
        total += prob * used_nodes(table)
    return total


@pytest.mark.parametrize("N", [2, 3])
def test_p_use_is_exact_one_layer_below_the_top(N):
    # L = 2: the only DP step starts from the always-used top layer, where it is exact.
    for seed in range(3):
        nu = _random_nu(2, N, seed)
        np.testing.assert_allclose(p_use(nu).numpy(), _exact_p_use(nu), atol=1e-12)


@pytest.mark.parametrize("N", [2, 3])
def test_p_use_lower_layers_are_the_papers_independence_approximation(N):
    nu = _random_nu(3, N, seed=7)
    dp, exact = p_use(nu).numpy(), _exact_p_use(nu)
    np.testing.assert_allclose(dp[1:], exact[1:], atol=1e-12)          # exact at layers L-1, L-2
    # Layer 0: the events "node (1, k) is used" are correlated (they depend on the same
    # top-layer choices), which the DP ignores; so it differs from the exact value...
    assert np.abs(dp[0] - exact[0]).max() > 1e-4
    # ...but it is exactly the paper's recursion applied to the DP's own layer-1 values.
    for i in range(N):
        expect = 1 - np.prod([1 - dp[1, k] * nu[0, k, i].item() for k in range(N)])
        assert dp[0, i] == pytest.approx(expect, abs=1e-12)


def test_p_use_is_exact_for_deterministic_trees_and_when_upper_layers_are_one_hot():
    rng = np.random.default_rng(0)
    L, N = 4, 3
    for _ in range(10):
        table = np.vstack([np.arange(N), rng.integers(0, N, size=(L - 1, N))])
        nu = torch.nn.functional.one_hot(torch.from_numpy(table[1:]), N).to(torch.float64)
        assert torch.equal(p_use(nu), torch.from_numpy(used_nodes(table).astype(np.float64)))
    # One-hot upper layers make the usage of layer 1 deterministic: the last step is exact.
    nu = _random_nu(3, N, seed=1)
    nu[1] = torch.nn.functional.one_hot(torch.tensor([0, 0, 2]), N).to(torch.float64)
    np.testing.assert_allclose(p_use(nu).numpy(), _exact_p_use(nu), atol=1e-12)


def test_p_use_accepts_a_list_and_is_differentiable():
    nu = _random_nu(4, 3, seed=2).requires_grad_(True)
    out = p_use(list(nu))
    assert out.shape == (4, 3) and torch.all(out[-1] == 1) and torch.all((out >= 0) & (out <= 1))
    out.sum().backward()
    assert torch.isfinite(nu.grad).all() and nu.grad.abs().sum() > 0


# Hand-made case: L = 3, N = 3, identity one-hot nu -> every node used, P_use = 1, and
# ||ν_i − ν_j||² = 2 for i != j at both branching layers.
IDENTITY_NU = torch.eye(3, dtype=torch.float64).repeat(2, 1, 1)
AFF = torch.tensor([[1.0, 0.8, 0.1], [0.6, 1.0, 0.2], [0.3, 0.4, 1.0]], dtype=torch.float64)
R = torch.tensor([0.45, 0.45, 0.10])      # τ = 0.2: tasks 0, 1 active; task 2 inactive


def test_hand_computed_losses():
    omega, t = branching_regularizer(IDENTITY_NU, R, 0.5, AFF)
    # L_active: B = 2 branching layers, weights (2-1)/2 + (2-2)/2 = 0.5; ordered pairs (0,1),
    # (1,0): A = 0.8 + 0.6; ||ν_0 − ν_1||² = 2.
    assert t["l_active"].item() == pytest.approx(0.5 * (0.8 + 0.6) * 2.0)
    # L_inactive: per layer, task 2's distance to its closest active task is 2.
    assert t["l_inactive"].item() == pytest.approx(2 * 2.0)
    assert omega.item() == pytest.approx(0.5 * 1.0 * 1.4 + 0.1 * 4.0)
    assert t["n_active"] == 2.0 and t["omega"].item() == pytest.approx(omega.item())


def test_c_scales_only_the_active_term():
    _, t0 = branching_regularizer(IDENTITY_NU, R, 0.0, AFF)
    omega0, _ = branching_regularizer(IDENTITY_NU, R, 0.0, AFF)
    omega1, _ = branching_regularizer(IDENTITY_NU, R, 1.0, AFF)
    assert omega0.item() == pytest.approx(0.1 * t0["l_inactive"].item())
    assert (omega1 - omega0).item() == pytest.approx(t0["l_active"].item())


def test_identical_one_hot_rows_have_zero_active_loss():
    nu = torch.zeros(2, 3, 3, dtype=torch.float64)
    nu[:, :, 1] = 1.0                                    # everybody reads stream 1
    omega, t = branching_regularizer(nu, torch.tensor([0.4, 0.3, 0.3]), 1.0, AFF)
    assert t["l_active"].item() == 0 and t["l_inactive"].item() == 0 and omega.item() == 0


@pytest.mark.parametrize("reading", ["printed", "child"])
def test_soft_case_matches_a_direct_loop(reading):
    nu = _random_nu(4, 3, seed=3)
    r, c = torch.tensor([0.5, 0.3, 0.2]), 0.7
    cfg = RegularizerConfig(tau=0.25, active_reading=reading)   # make task 2 inactive
    omega, t = branching_regularizer(nu, r, c, AFF, cfg)
    P = p_use(nu)
    L, act, inact = 4, [0, 1], [2]
    B = L - 1                                              # paper's top layer index
    if reading == "child":
        # nu[l-1]: choice of child row l, weight (B-l)/B, P_use of row l.
        la = sum((B - l) / B * AFF[i, j] * P[l, i] * P[l, j] * ((nu[l - 1, i] - nu[l - 1, j]) ** 2).sum()
                 for l in range(1, L) for i in act for j in act if i != j)
    else:
        # Eq. 3 as printed: ν^l = nu[l] (choice among parent row l), l = 1..B-1 (ν^B does not
        # exist, ν^0 is outside the sum), weight (B-l)/B, P_use of parent row l.
        la = sum((B - l) / B * AFF[i, j] * P[l, i] * P[l, j] * ((nu[l, i] - nu[l, j]) ** 2).sum()
                 for l in range(1, B) for i in act for j in act if i != j)
    li = sum(min(((nu[l - 1, i] - nu[l - 1, j]) ** 2).sum() for i in act) for l in range(1, L) for j in inact)
    assert t["l_active"].item() == pytest.approx(la.item())
    assert t["l_inactive"].item() == pytest.approx(li.item())
    assert omega.item() == pytest.approx(c * la.item() + 0.1 * li.item())


def test_ablation_switches():
    base = dict(r=R, c=1.0, affinity=AFF)

    def terms(**cfg):
        return branching_regularizer(IDENTITY_NU, base["r"], base["c"], base["affinity"],
                                     RegularizerConfig(**cfg))[1]

    # Unweighted: every choice the reading's sum covers counts 1 (printed: only the top one of
    # the two; child: both).
    assert terms(layer_weighting=False)["l_active"].item() == pytest.approx(1 * (0.8 + 0.6) * 2.0)
    assert terms(layer_weighting=False, active_reading="child")["l_active"].item() == \
        pytest.approx(2 * (0.8 + 0.6) * 2.0)
    assert terms(use_affinity=False)["l_active"].item() == pytest.approx(0.5 * 2 * 2.0)
    assert terms(inactive_loss=False)["l_inactive"].item() == 0
    t = terms(dichotomy=False)                             # all three tasks active, none inactive
    assert t["n_active"] == 3.0 and t["l_inactive"].item() == 0
    off_diag = (AFF.sum() - AFF.diagonal().sum()).item()
    assert t["l_active"].item() == pytest.approx(0.5 * off_diag * 2.0)
    omega, _ = branching_regularizer(IDENTITY_NU, R, 1.0, AFF, RegularizerConfig(lambda_active=0.2,
                                                                                   lambda_inactive=0.02))
    assert omega.item() == pytest.approx(0.2 * 1.4 + 0.02 * 4.0)
    # use_affinity=False needs no affinity matrix at all.
    branching_regularizer(IDENTITY_NU, R, 1.0, None, RegularizerConfig(use_affinity=False))


def test_threshold_and_empty_active_set():
    assert active_mask(torch.tensor([0.2, 0.2, 0.6]), RegularizerConfig()).tolist() == [True, True, True]
    assert active_mask(torch.tensor([0.1, 0.2, 0.7]), RegularizerConfig()).tolist() == [False, True, True]
    # τ above 1/N can leave no active task: both losses are then defined as 0.
    omega, t = branching_regularizer(IDENTITY_NU, torch.full((3,), 1 / 3), 1.0, AFF, RegularizerConfig(tau=0.5))
    assert t["n_active"] == 0 and omega.item() == 0


def test_gradients_reach_nu():
    nu = _random_nu(4, 3, seed=4).requires_grad_(True)
    omega, _ = branching_regularizer(nu, torch.tensor([0.7, 0.2, 0.1]), 0.8, AFF)
    omega.backward()
    assert torch.isfinite(nu.grad).all() and nu.grad.abs().sum() > 0


@pytest.mark.parametrize("n_branch", [2, 4, 6])
def test_child_reading_top_layer_zero_bottom_layer_b_minus_1_over_b(n_branch):
    """The "child" reading (dymu-rt's before issue 22): nu[l-1] is ν^l for l = 1..B, so the top
    branching layer B weighs 0, the lowest (B−1)/B."""
    r, aff = torch.tensor([0.5, 0.5]), torch.ones(2, 2, dtype=torch.float64)
    cfg = RegularizerConfig(inactive_loss=False, active_reading="child")

    def l_active(nu, config=cfg):
        return branching_regularizer(nu, r, 1.0, aff, config)[1]["l_active"].item()

    eye = torch.eye(2, dtype=torch.float64)
    share = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)     # both read stream 0
    # Top only: the two top nodes read different streams, everything below is shared.
    top_only = share.repeat(n_branch, 1, 1)
    top_only[-1] = eye
    assert l_active(top_only) == pytest.approx(0.0)
    assert l_active(top_only, RegularizerConfig(inactive_loss=False, layer_weighting=False,
                                                active_reading="child")) == \
        pytest.approx(2 * 2.0)                                   # the pair does differ there
    # Bottom: separate streams everywhere (P_use = 1 everywhere) minus the same with the
    # bottom layer shared (P_use of every layer is unchanged; only layer 1's distance drops).
    separate = eye.repeat(n_branch, 1, 1)
    bottom_shared = separate.clone()
    bottom_shared[0] = share
    assert l_active(separate) - l_active(bottom_shared) == pytest.approx((n_branch - 1) / n_branch * 2 * 2.0)
    assert l_active(separate) == pytest.approx(sum((n_branch - l) / n_branch for l in range(1, n_branch + 1)) * 4)


def test_config_values_are_validated():
    from dymu_rt.core.errors import ValidationError

    for bad in (dict(tau=0.0), dict(tau=1.5), dict(lambda_active=-1.0), dict(lambda_inactive=float("nan")),
                dict(dichotomy="no")):
        with pytest.raises(ValidationError):
            RegularizerConfig(**bad)


def test_inactive_detach_moves_only_the_inactive_nodes():
    # r = (0.8, 0.1, 0.1): task 0 active, 1 and 2 inactive. With inactive_detach the value of
    # L_inactive is unchanged, but its gradient reaches only the inactive nodes' ν (they
    # branch off the active task; the active task's own parent choice is left alone).
    r = torch.tensor([0.8, 0.1, 0.1], dtype=torch.float64)
    for detach in (False, True):
        nu = _random_nu(4, 3, 7).requires_grad_(True)
        cfg = RegularizerConfig(lambda_active=0.0, inactive_detach=detach)
        omega, t = branching_regularizer(nu, r, 1.0, torch.eye(3, dtype=torch.float64), cfg)
        ref = branching_regularizer(nu.detach(), r, 1.0, torch.eye(3, dtype=torch.float64),
                                    RegularizerConfig(lambda_active=0.0))[1]
        assert t["l_inactive"].item() == pytest.approx(ref["l_inactive"].item())
        (g,) = torch.autograd.grad(omega, nu)
        assert g[:, 1:].abs().sum() > 0
        assert (g[:, 0].abs().sum() == 0) == detach
    with pytest.raises(Exception):
        RegularizerConfig(inactive_detach="yes")


@pytest.mark.parametrize("n_branch", [2, 4, 6])
def test_printed_reading_top_choice_one_over_b_bottom_choice_zero(n_branch):
    """Eq. 3 as printed: ν^l (the choice among parent row l) weighs (B−l)/B for l = 1..B−1 and
    ν^0 is outside the sum: the top choice weighs 1/B, the lowest 0 — the opposite ends of
    the child reading, so the same trees tell the two apart."""
    r, aff = torch.tensor([0.5, 0.5]), torch.ones(2, 2, dtype=torch.float64)
    printed = RegularizerConfig(inactive_loss=False)
    child = RegularizerConfig(inactive_loss=False, active_reading="child")

    def l_active(nu, config=printed):
        return branching_regularizer(nu, r, 1.0, aff, config)[1]["l_active"].item()

    eye = torch.eye(2, dtype=torch.float64)
    share = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    top_only = share.repeat(n_branch, 1, 1)
    top_only[-1] = eye
    # Split only at the top choice (both nodes of row B-1 used): 1/B · 2 ordered pairs · 2
    # printed, 0 under the child reading.
    assert l_active(top_only) == pytest.approx(1 / n_branch * 2 * 2.0)
    assert l_active(top_only, child) == pytest.approx(0.0)
    separate = eye.repeat(n_branch, 1, 1)
    # The lowest choice: 0 printed, (B-1)/B under the child reading.
    bottom_shared = separate.clone()
    bottom_shared[0] = share
    assert l_active(separate) - l_active(bottom_shared) == pytest.approx(0.0)
    assert l_active(separate, child) - l_active(bottom_shared, child) == \
        pytest.approx((n_branch - 1) / n_branch * 2 * 2.0)
    assert l_active(separate) == pytest.approx(sum((n_branch - l) / n_branch for l in range(1, n_branch)) * 4)


def test_active_reading_is_validated():
    from dymu_rt.core.errors import ValidationError

    with pytest.raises(ValidationError, match="active_reading"):
        RegularizerConfig(active_reading="paper")
