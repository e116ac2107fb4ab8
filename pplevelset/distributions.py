"""Distributions Pyro lacks: the truncated normal, a mixture `biject_to` handles, and joined blocks.

``TruncatedNormal`` computes its values in float64 by stable case analysis in log space (the
tails never take ``1 - Phi`` of a number close to 1), and attaches gradients with respect to
``loc`` and ``scale`` by the implicit-function formulas, so infinite bounds never produce NaN
gradients. ``SharedSupportMixture`` is a mixture whose support ``biject_to`` can transform, and
``Concatenated`` joins independent vector-valued pieces (a mixture over ``[w, h, t]``
and ``[r, x, y]``) into one event whose support ``biject_to`` understands.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_phi(x: torch.Tensor) -> torch.Tensor:
    """Log density of the standard normal."""
    return -0.5 * x * x - _LOG_SQRT_2PI


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate on both sides of ``-log 2``."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _log_mass(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(Phi(b) - Phi(a))``, working in whichever tail keeps the difference accurate."""

    def left(lo, hi):  # the interval lies left of 0, where log_ndtr has full precision
        log_hi = torch.special.log_ndtr(hi)
        return log_hi + _log1mexp(torch.special.log_ndtr(lo) - log_hi)

    central = torch.log1p(-torch.special.ndtr(a) - torch.special.ndtr(-b))
    return torch.where(b <= 0, left(a, b), torch.where(a > 0, left(-b, -a), central))


def _log_ndtri(log_p: torch.Tensor) -> torch.Tensor:
    """Inverse of ``log_ndtr`` for ``log_p <= log(1/2)``, also where ``exp(log_p)`` underflows."""
    length = -2 * log_p  # asymptotic start: log Phi(x) ~ -x^2/2 - log(-x) - log(sqrt(2 pi))
    start = -torch.sqrt((length - torch.log(2 * math.pi * length.clamp_min(1.0))).clamp_min(0.0))
    x = torch.where(log_p > -680, torch.special.ndtri(torch.exp(log_p)), start)
    for _ in range(3):  # Newton on log_ndtr(x) = log_p; converges from either start
        log_cdf = torch.special.log_ndtr(x)
        x = x - (log_cdf - log_p) * torch.exp(log_cdf - _log_phi(x))
    return x


def _standardized_bound(bound: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``(bound - loc) / scale`` with infinite bounds replaced by 0, so it is safe to differentiate."""
    return (torch.where(torch.isfinite(bound), bound, torch.zeros_like(bound)) - loc) / scale


class TruncatedNormal(TorchDistribution):
    """Normal(loc, scale) restricted to ``[low, high]`` and renormalised.

    :param loc: mean of the untruncated normal.
    :param scale: its standard deviation (> 0).
    :param low: lower bound (default 0: the positive half-line, the paper's No+); ``-inf`` allowed.
    :param high: upper bound (default ``inf``).

    ``low`` and ``high`` are constant bounds (no gradient); either every entry of ``low`` is finite
    or all are ``-inf``, and the same for ``high``, so that :attr:`support` is one constraint.

    Example::

        >>> d = TruncatedNormal(torch.tensor([10.0, 30.0]), torch.tensor([5.0, 10.0]))
        >>> d.rsample((4,)).shape
        torch.Size([4, 2])
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = True

    def __init__(self, loc, scale, low=0.0, high=math.inf, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        like = dict(dtype=self.loc.dtype, device=self.loc.device)
        self.low = torch.as_tensor(low, **like)
        self.high = torch.as_tensor(high, **like)
        for name, bound, infinite in (("low", self.low, -math.inf), ("high", self.high, math.inf)):
            finite = torch.isfinite(bound)
            if not (finite.all() or (bound == infinite).all()):
                raise ValueError(f"TruncatedNormal: {name} must be all finite or all {infinite}")
        if not (self.low < self.high).all():
            raise ValueError("TruncatedNormal: low must be smaller than high")
        batch_shape = torch.broadcast_shapes(self.loc.shape, self.low.shape, self.high.shape)
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(TruncatedNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        new.low, new.high = self.low, self.high  # they broadcast against any expanded shape
        super(TruncatedNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        low_finite = bool(torch.isfinite(self.low).all())
        high_finite = bool(torch.isfinite(self.high).all())
        if low_finite and high_finite:
            return constraints.interval(self.low, self.high)
        if low_finite:
            return constraints.greater_than(self.low)
        if high_finite:
            return constraints.less_than(self.high)
        return constraints.real

    # -- standardised bounds and normaliser, values in float64 ------------------------------

    def _bounds64(self) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.loc.detach().double(), self.scale.detach().double()
        return (self.low.double() - loc) / scale, (self.high.double() - loc) / scale

    def _log_normalizer(self) -> torch.Tensor:
        """``log Z = log(Phi(b) - Phi(a))``, with the gradient ``d log Z / d(loc, scale)`` attached."""
        a, b = self._bounds64()
        log_z = _log_mass(a, b)
        grad_a = -torch.exp(_log_phi(a) - log_z)  # 0 where the bound is infinite
        grad_b = torch.exp(_log_phi(b) - log_z)
        return self._attach(log_z, grad_a, grad_b)

    def _attach(self, value64, coef_a, coef_b) -> torch.Tensor:
        """``value`` in the parameters' dtype, differentiable through ``a`` and ``b`` to first order."""
        a = _standardized_bound(self.low, self.loc, self.scale)
        b = _standardized_bound(self.high, self.loc, self.scale)
        dtype = self.loc.dtype
        return value64.to(dtype) + coef_a.to(dtype) * (a - a.detach()) + coef_b.to(dtype) * (b - b.detach())

    # -- the distribution's interface --------------------------------------------------------

    def log_prob(self, value):
        """Log density; ``-inf`` outside ``[low, high]`` (like scipy, and unlike torch's validation)."""
        standard = (value - self.loc) / self.scale
        log_density = _log_phi(standard) - torch.log(self.scale) - self._log_normalizer()
        inside = (value >= self.low) & (value <= self.high)
        return torch.where(inside, log_density, torch.full_like(log_density, -math.inf))

    def cdf(self, value):
        a, b = self._bounds64()
        standard = ((value.detach().double() - self.loc.detach().double()) / self.scale.detach().double()).clamp(a, b)
        mass = torch.exp(_log_mass(a, standard) - _log_mass(a, b))
        return mass.to(self.loc.dtype)

    def icdf(self, value):
        """Quantiles; reparameterised in ``loc`` and ``scale``. Used by :meth:`rsample`."""
        u = value.double().clamp(torch.finfo(torch.float64).tiny, 1 - torch.finfo(torch.float64).eps)
        a, b = self._bounds64()
        log_u, log_1mu = torch.log(u), torch.log1p(-u)
        ndtr = torch.special.log_ndtr
        # the quantile's lower-tail mass p and upper-tail mass q; invert whichever is smaller
        log_p = torch.logaddexp(log_1mu + ndtr(a), log_u + ndtr(b))
        log_q = torch.logaddexp(log_u + ndtr(-b), log_1mu + ndtr(-a))
        sign = torch.where(log_p <= log_q, 1.0, -1.0).to(torch.float64)
        standard = sign * _log_ndtri(torch.minimum(log_p, log_q))
        standard = torch.minimum(torch.maximum(standard, a), b)
        # implicit function theorem on F(x; a, b) = u: dx/da = (1-u) phi(a)/phi(x), dx/db = u phi(b)/phi(x)
        coef_a = torch.exp(log_1mu + _log_phi(a) - _log_phi(standard))
        coef_b = torch.exp(log_u + _log_phi(b) - _log_phi(standard))
        x = self.loc + self.scale * self._attach(standard, coef_a, coef_b)
        inner_low = torch.nextafter(self.low, torch.full_like(self.low, math.inf))
        inner_high = torch.nextafter(self.high, torch.full_like(self.high, -math.inf))
        return torch.clamp(x, inner_low, inner_high)  # strictly inside: biject_to(support).inv is finite

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=torch.float64, device=self.loc.device)
        return self.icdf(u)

    def _moment_terms(self):
        a, b = self._bounds64()
        log_z = _log_mass(a, b)
        pdf_a, pdf_b = torch.exp(_log_phi(a) - log_z), torch.exp(_log_phi(b) - log_z)
        a_pdf_a = torch.where(torch.isfinite(a), torch.nan_to_num(a) * pdf_a, torch.zeros_like(a))
        b_pdf_b = torch.where(torch.isfinite(b), torch.nan_to_num(b) * pdf_b, torch.zeros_like(b))
        return pdf_a - pdf_b, a_pdf_a - b_pdf_b

    @property
    def mean(self):
        shift, _ = self._moment_terms()
        return self.loc + self.scale * shift.to(self.loc.dtype)

    @property
    def variance(self):
        shift, spread = self._moment_terms()
        return self.scale**2 * (1 + spread - shift**2).to(self.loc.dtype)


class SharedSupportMixture(dist.MixtureSameFamily):
    """Pyro's ``MixtureSameFamily`` for components that share one support (same bounds for all).

    torch wraps a mixture's support in ``MixtureSameFamilyConstraint``, which ``biject_to`` cannot
    transform; when the components' bounds do not vary across the mixture (``low`` and ``high``
    are not indexed by component), the component support is the mixture's own, and ``biject_to``
    and :class:`Concatenated` understand it.

    Example::

        >>> components = TruncatedNormal(torch.tensor([[30.0, 10.0], [10.0, 30.0]]), 5.0).to_event(1)
        >>> mixture = SharedSupportMixture(Categorical(torch.ones(2)), components)
        >>> biject_to(mixture.support)(torch.zeros(2))  # exp: the positive quadrant
        tensor([1., 1.])
    """

    @constraints.dependent_property
    def support(self):
        return self.component_distribution.support


class Concatenated(TorchDistribution):
    """Independent distributions with vector events, concatenated into one event.

    :param parts: distributions whose events have shape ``(k_i,)`` and whose supports are
        ``constraints.independent(elementwise, 1)`` (as ``.to_event(1)`` and mixtures of such give).

    The support is ``independent(cat([...], lengths=[k_i]), 1)``, for which
    ``biject_to`` builds a ``CatTransform`` and the Jacobian sums over the whole event.

    Example::

        >>> shape = TruncatedNormal(torch.tensor([10.0, 30.0]), 5.0).to_event(1)
        >>> centre = Uniform(20.0, 40.0).expand([2]).to_event(1)
        >>> Concatenated([shape, centre]).sample((5,)).shape
        torch.Size([5, 4])
    """

    arg_constraints: dict = {}

    def __init__(self, parts, validate_args=None):
        self.parts = list(parts)
        if any(len(part.event_shape) != 1 for part in self.parts):
            raise ValueError("Concatenated: every part needs a vector event, shape (k,)")
        self.lengths = [part.event_shape[0] for part in self.parts]
        batch_shape = torch.broadcast_shapes(*(part.batch_shape for part in self.parts))
        super().__init__(batch_shape, torch.Size([sum(self.lengths)]), validate_args=validate_args)

    @property
    def has_rsample(self):
        return all(part.has_rsample for part in self.parts)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Concatenated, _instance)
        Concatenated.__init__(new, [part.expand(batch_shape) for part in self.parts], validate_args=False)
        new._validate_args = self._validate_args
        return new

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):
        elementwise = []
        for part in self.parts:
            support = part.support
            if isinstance(support, constraints.independent) and support.event_dim == 1:
                support = support.base_constraint
            if support.event_dim != 0:
                raise ValueError(f"Concatenated: part support {support} is not elementwise")
            elementwise.append(support)
        return constraints.independent(constraints.cat(elementwise, dim=-1, lengths=self.lengths), 1)

    def _join(self, pieces, sample_shape):
        shape = torch.Size(sample_shape) + self.batch_shape
        return torch.cat([piece.expand(shape + piece.shape[-1:]) for piece in pieces], dim=-1)

    def sample(self, sample_shape=torch.Size()):
        return self._join([part.sample(sample_shape) for part in self.parts], sample_shape)

    def rsample(self, sample_shape=torch.Size()):
        return self._join([part.rsample(sample_shape) for part in self.parts], sample_shape)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        pieces = value.split(self.lengths, dim=-1)
        return sum(part.log_prob(piece) for part, piece in zip(self.parts, pieces))

    @property
    def mean(self):
        return self._join([part.mean for part in self.parts], ())

    @property
    def variance(self):
        return self._join([part.variance for part in self.parts], ())
