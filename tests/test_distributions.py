"""TruncatedNormal against scipy.stats.truncnorm; Concatenated's support under biject_to."""

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy import stats
from torch.distributions import biject_to

from pplevelset.distributions import Concatenated, TruncatedNormal

INF = math.inf
CASES = [  # loc, scale, low, high
    (10.0, 5.0, 0.0, INF),  # the paper's No+(10, 5^2)
    (8.0, 2.0, 0.0, INF),
    (0.0, 1.0, -1.0, 2.0),
    (0.5, 1.3, -INF, 1.0),
    (3.0, 2.0, -INF, INF),
    (0.0, 1.0, 40.0, INF),  # far right tail: 1 - Phi(40) is not representable
    (0.0, 1.0, -INF, -40.0),  # far left tail
    (-400.0, 10.0, 0.0, INF),
    (0.0, 1.0, 5.0, 5.5),  # narrow interval in the tail
]


def reference(loc, scale, low, high):
    return stats.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)


def make(loc, scale, low, high, dtype=torch.float64):
    return TruncatedNormal(torch.tensor(loc, dtype=dtype), torch.tensor(scale, dtype=dtype), low, high)


@pytest.mark.parametrize("loc, scale, low, high", CASES)
def test_log_prob_mean_variance_match_scipy(loc, scale, low, high):
    ref = reference(loc, scale, low, high)
    values = ref.rvs(size=50, random_state=np.random.default_rng(0))
    d = make(loc, scale, low, high)
    np.testing.assert_allclose(d.log_prob(torch.tensor(values)).numpy(), ref.logpdf(values), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(d.mean.item(), ref.mean(), rtol=1e-10)
    np.testing.assert_allclose(d.variance.item(), ref.var(), rtol=1e-6)
    np.testing.assert_allclose(d.cdf(torch.tensor(values)).numpy(), ref.cdf(values), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("loc, scale, low, high", CASES)
def test_samples_pass_ks_test_and_stay_inside(loc, scale, low, high):
    torch.manual_seed(0)
    samples = make(loc, scale, low, high).rsample((4000,))
    assert torch.isfinite(samples).all()
    assert (samples > low).all() and (samples < high).all()
    assert stats.kstest(samples.numpy(), reference(loc, scale, low, high).cdf).pvalue > 0.01


def test_float32_no_plus_matches_scipy():
    d = TruncatedNormal(torch.tensor(10.0), torch.tensor(5.0))
    values = torch.tensor([1e-3, 0.5, 10.0, 40.0])
    np.testing.assert_allclose(
        d.log_prob(values).numpy(), reference(10.0, 5.0, 0.0, INF).logpdf(values.numpy()), rtol=1e-5
    )
    torch.manual_seed(1)
    samples = d.sample((2000,))
    assert samples.dtype == torch.float32 and (samples > 0).all()


def test_log_prob_is_minus_infinity_outside_the_support():
    d = TruncatedNormal(torch.tensor(1.0), torch.tensor(2.0), low=0.0, high=3.0)
    log_prob = d.log_prob(torch.tensor([-0.5, 1.0, 3.5]))
    assert log_prob[0] == -INF and log_prob[2] == -INF and torch.isfinite(log_prob[1])


def test_batching_and_expand_shapes():
    d = TruncatedNormal(torch.rand(4, 3) * 10, torch.rand(4, 3) + 0.5)
    assert d.batch_shape == (4, 3) and d.event_shape == ()
    assert d.rsample((7,)).shape == (7, 4, 3)
    assert d.log_prob(torch.rand(5, 1, 3)).shape == (5, 4, 3)
    expanded = d.expand((2, 4, 3))
    assert expanded.rsample((6,)).shape == (6, 2, 4, 3)
    assert expanded.mean.shape == (2, 4, 3)
    scalar = TruncatedNormal(1.0, 2.0)
    assert scalar.batch_shape == () and scalar.sample((3,)).shape == (3,)
    assert TruncatedNormal(torch.zeros(3), 1.0).to_event(1).log_prob(torch.ones(2, 3)).shape == (2,)


@pytest.mark.parametrize("low, high", [(0.0, INF), (-INF, 1.0), (-1.0, 2.0), (-INF, INF), (3.0, INF)])
def test_rsample_gradients_are_finite_and_match_finite_differences(low, high):
    u = torch.tensor([0.001, 0.3, 0.7, 0.999], dtype=torch.float64)
    loc = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    grads = torch.autograd.grad(TruncatedNormal(loc, scale, low, high).icdf(u).sum(), [loc, scale])
    step = 1e-6

    def quantiles(loc, scale):
        return (
            TruncatedNormal(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64), low, high)
            .icdf(u)
            .sum()
        )

    numeric = [
        (quantiles(0.5 + step, 1.3) - quantiles(0.5 - step, 1.3)) / (2 * step),
        (quantiles(0.5, 1.3 + step) - quantiles(0.5, 1.3 - step)) / (2 * step),
    ]
    for analytic, finite_difference in zip(grads, numeric):
        assert torch.isfinite(analytic)
        assert analytic.item() == pytest.approx(finite_difference.item(), abs=1e-6)


def test_log_prob_gradients_finite_with_infinite_bounds():
    loc = torch.tensor([1.0, 2.0], requires_grad=True)
    scale = torch.tensor([1.0, 3.0], requires_grad=True)
    value = torch.tensor([0.5, 4.0], requires_grad=True)
    log_prob = TruncatedNormal(loc, scale).log_prob(value).sum()
    for grad in torch.autograd.grad(log_prob, [loc, scale, value]):
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("low, high", [(0.0, INF), (-INF, 1.0), (-1.0, 2.0), (-INF, INF)])
def test_support_works_with_biject_to(low, high):
    d = TruncatedNormal(torch.zeros(3), torch.ones(3), low, high)
    transform = biject_to(d.support)
    inside = transform(torch.randn(10, 3) * 5)
    assert d.support.check(inside).all()
    assert torch.isfinite(d.log_prob(inside)).all()


def test_bounds_must_be_consistent():
    with pytest.raises(ValueError):
        TruncatedNormal(0.0, 1.0, low=torch.tensor([0.0, -INF]))
    with pytest.raises(ValueError):
        TruncatedNormal(0.0, 1.0, low=2.0, high=1.0)


def test_concatenated_event_support_and_jacobian():
    shape = TruncatedNormal(torch.tensor([10.0, 30.0]), torch.tensor([5.0, 10.0])).to_event(1)
    centre = dist.Uniform(torch.full((2,), 20.0), torch.full((2,), 40.0)).to_event(1)
    joint = Concatenated([shape, centre])
    assert joint.event_shape == (4,) and joint.batch_shape == ()
    z = joint.sample((5,))
    assert z.shape == (5, 4)
    expected = shape.log_prob(z[:, :2]) + centre.log_prob(z[:, 2:])
    torch.testing.assert_close(joint.log_prob(z), expected)
    transform = biject_to(joint.support)
    unconstrained = torch.randn(5, 4) * 3
    assert joint.support.check(transform(unconstrained)).all()
    assert transform.log_abs_det_jacobian(unconstrained, transform(unconstrained)).shape == (5,)
    assert joint.expand((3,)).sample((2,)).shape == (2, 3, 4)
