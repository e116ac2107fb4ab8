"""Batched ensemble MCMC: N particles move together, each proposing from the others' positions.

Why. Independent random-walk chains (:mod:`pplevelset.infer.rwmh`) never cross between separated
pieces of a multimodal level set, so each piece keeps the prior's share of particles instead of its
posterior mass. Here a particle's proposal is built from the *population*: a differential-evolution
"hop" moves it by the vector between two other particles (carrying it from one piece to another),
and a KDE independence move draws it from a kernel density estimate of the others, which in low
dimension jumps between pieces in one step. No gradients; each step is two batched density calls.

How. Red/blue scheme (Goodman & Weare 2010; emcee's ``red_blue.py``): the particles are split into
two fixed halves, first and second half of the index range. Half A is updated with proposals built
only from half B's current positions, then half B from A's new positions. Given the complement, the
half's particles are independent MH updates against the tempered posterior, so every half update,
and hence every step, leaves the product of N posteriors invariant. Each half update draws one move
type for all its particles, at random with weights independent of the positions (fixed after
warm-up: a mixture of valid kernels, as in emcee):

- ``de``: differential evolution (ter Braak 2006; emcee ``DEMove``), ``z + g (z_a - z_b) + e`` with
  ``a != b`` from the complement, ``g = scale * 2.38 / sqrt(2 D)``, ``e`` tiny Gaussian noise.
- ``hop``: the same with ``g = scale`` (1: a "mode hop", ter Braak's gamma = 1 step).
- ``walk``: Gaussian random walk ``z + scale * 2.38 / sqrt(D) * L eps``, ``L`` the Cholesky factor
  of the complement's covariance: follows latents whose scales span orders of magnitude.
- ``kde``: independence proposal from ``q = (1/M) sum_j N(z_j, h^2 Sigma_j)`` over (at most
  ``KDE_MAX_CENTRES`` of) the complement's positions, ``Sigma_j`` the covariance of ``z_j``'s
  ``LOCAL_NEIGHBOURS`` nearest neighbours there, so each kernel follows the local shape of a thin
  or curved piece (emcee's ``KDEMove`` uses one global covariance; on mnist-vae its acceptance was
  0.09 against 0.30-0.36 here, see BENCHMARKS.md), ``h = scale`` (1), accepted with
  ``pi(z') q(z) / (pi(z) q(z'))``.
- ``student``: independence proposal from one multivariate Student-t with the complement's mean and
  covariance: a few tensor operations where the KDE takes dozens, so on a world whose network is
  cheap it buys near-independent draws of a piece that a Gaussian fits for little more than a walk.

All symmetric moves use the plain density ratio. Each move type has one scale in
``EnsembleState.scales`` and one weight in ``EnsembleState.weights``; :func:`adaptation` tunes the
scales (Robbins-Monro on the log scale) and, for the default weights, splits the independence
moves' share between ``kde`` and ``student`` by their acceptance, during warm-up only, after which
both are frozen and the chain is valid MCMC.

Written in BlackJAX's shape, like :mod:`~pplevelset.infer.rwmh`: :func:`init` and :func:`step` are
pure functions over NamedTuples, batched over the particle dimension, and a ``torch.Generator`` is
the only source of randomness. The density is called as ``log_density_fn(positions, rows)`` with
``rows`` the slice of particles being scored, as :class:`~pplevelset.model.ParticleDensity`
accepts, so a model whose particles differ (a target per particle) scores each in its place.

References: Goodman & Weare (2010), Ensemble samplers with affine invariance, CAMCoS 5(1);
ter Braak (2006), A Markov chain Monte Carlo version of the genetic algorithm Differential
Evolution, Stat. Comput. 16; Foreman-Mackey et al. (2013), emcee, PASP 125; Farr & Farr, kombine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch

from pplevelset.errors import UserInputError
from pplevelset.infer.mcmc import Adaptation, Algorithm
from pplevelset.infer.tempering import tempered
from pplevelset.model import Density

MOVE_NAMES = ("de", "hop", "walk", "kde", "student")
DE, HOP, WALK, KDE, STUDENT = range(len(MOVE_NAMES))
# Acceptance the warm-up steers each move's scale toward; NaN leaves the scale fixed. 0.234 for the
# random-walk-like moves (Roberts et al. 1997); the hop's gamma stays 1 (its point is the exact
# translation between pieces); the KDE bandwidth stays fixed (with the earlier global-covariance KDE,
# Robbins-Monro toward 0.5 drove the bandwidth to 0 and the acceptance with it, because q(z) at the
# current point collapses; for this local KDE, bandwidth 0.7 gave R-hat 1.13 against 1.10 at 1 on
# mnist-vae); the Student-t proposal keeps its fitted shape (its scale multiplies the cloud's factor).
TARGET_ACCEPT = (0.234, math.nan, 0.234, math.nan, math.nan)
DE_NOISE = 1e-4  # additive DE noise, relative to the complement's per-coordinate sd (irreducibility)
KDE_MAX_DIM = 10  # above this a KDE of a few hundred points is accepted < 10% of the time (measured)
KDE_PAIRS = 2**20  # (query, centre) pairs per chunk of the KDE log density: bounded memory
LOCAL_NEIGHBOURS = 20  # neighbours that shape each KDE kernel (at least 2 D + 2)
LOCAL_RIDGE = 1e-4  # added to each kernel's covariance, times the cloud's covariance
STUDENT_DF = 5  # degrees of freedom: tails heavier than a near-Gaussian piece's, so none sticks there
KDE_MAX_CENTRES = 256  # larger complements use a random subset (fixed within the half update): cost O(N)
LN2 = math.log(2.0)  # log q's mixture is summed in base 2 (exp2 runs about 3x faster than exp on a CPU)


class Moves(NamedTuple):
    """Probability of each move type, per particle and step (normalised when used)."""

    de: float = 0.0
    hop: float = 0.0
    walk: float = 0.0
    kde: float = 0.0
    student: float = 0.0

    def check(self) -> Moves:
        """``self``, or a one-line error: a move is drawn in proportion to the weights."""
        if min(self) < 0 or sum(self) <= 0:
            raise UserInputError(f"move weights must be non-negative with a positive sum, got {self}")
        return self


def default_moves(dim: int) -> Moves:
    """Weights for a ``dim``-dimensional latent, from runs on tests/exact_worlds.py (two slabs,
    N = 1000, 500 + 500 steps unless noted), measured with the earlier global-covariance KDE; with
    the local KDE, weight 0.8 instead of 0.6 changed nothing on mnist-vae (R-hat 1.093 vs 1.098).
    The independence moves (KDE, Student-t) are the ones that jump between pieces:

    - 4-D / 5-D at N = 600, 300 + 300: R-hat 1.07-1.10 with KDE weight 0.3, 1.04-1.06 with 0.6,
      1.03-1.05 with 0.8; without KDE (5-D) 1.9 with no hop, 1.2-1.4 with hop 0.2-0.4.
    - 10-D: KDE acceptance 0.09, R-hat 1.08 with KDE 0.6, 1.12 with 0.3, 1.38 with none.
    - 20-D: KDE acceptance 0.015, hop 0.003; R-hat 1.41 with KDE 0.6, 1.88 with none.

    So the independence moves carry most weight up to ``KDE_MAX_DIM`` and keep some above it (the
    KDE's cost is linear in N); 40% local moves (DE, walk) stay for robustness where neither fits the
    population. The hop's share is small: it matters only without KDE, and its acceptance falls
    fastest with D. The independence share starts split evenly between KDE and Student-t; the
    warm-up moves it toward the one accepted more (:func:`adaptation`): the Student-t is accepted
    0.7-0.8 on the toy world and 0.005-0.03 on mnist-vae, where the KDE is accepted 0.1-0.35. Above
    ``KDE_MAX_DIM`` the Student-t is left out: it was not measured there.
    """
    if dim <= KDE_MAX_DIM:
        return Moves(de=0.2, hop=0.1, walk=0.1, kde=0.3, student=0.3)
    return Moves(de=0.4, hop=0.1, walk=0.2, kde=0.3)


class EnsembleState(NamedTuple):
    """Everything the next step needs, per particle, plus one scale and one weight per move type."""

    z_unconstrained: torch.Tensor  # (N, D)
    log_prior: torch.Tensor  # (N,) includes the Jacobian
    log_likelihood: torch.Tensor  # (N,)
    predictions: torch.Tensor  # (N, L)
    scales: torch.Tensor  # (K,) one per entry of MOVE_NAMES
    weights: torch.Tensor  # (K,) each move type's probability per half update (normalised when drawn)


class EnsembleInfo(NamedTuple):
    """What diagnostics and adaptation need about one step, per particle."""

    acceptance_prob: torch.Tensor  # (N,)
    is_accepted: torch.Tensor  # (N,) bool
    is_invalid: torch.Tensor  # (N,) bool: the proposal's density was NaN or infinite (rejected)
    move: torch.Tensor  # (N,) long: index into MOVE_NAMES
    # replica exchange only (:mod:`~pplevelset.infer.replica`): swap acceptance per rung pair, the ladder
    swap_prob: torch.Tensor | None = None  # (K - 1,)
    betas: torch.Tensor | None = None  # (K,)


class AdaptState(NamedTuple):
    """Robbins-Monro state: the step count, the acceptance each move's scale is steered toward, how
    many half updates have used each move (its own gain schedule) and its running acceptance."""

    iteration: int
    targets: torch.Tensor  # (K,) NaN = not adapted
    uses: torch.Tensor  # (K,)
    acceptance: torch.Tensor  # (K,) each move's acceptance, averaged with the same gains


def check_size(num_particles: int) -> None:
    """A difference of two *other* particles from the complement needs 3 per half."""
    if num_particles < 6:
        raise UserInputError(f"the ensemble kernel needs at least 6 particles (3 per half), got {num_particles}")


def init(
    z_unconstrained: torch.Tensor,
    log_density_fn: Callable[[torch.Tensor], Density],
    scales: torch.Tensor | None = None,
    moves: Moves | None = None,
) -> EnsembleState:
    """The state at ``z_unconstrained`` (``(N, D)``), scored in one batched call; scales start at 1
    (the textbook constants above) unless given, the move weights at ``moves`` (default:
    :func:`default_moves` of the latent dimension)."""
    check_size(z_unconstrained.shape[0])
    moves = (moves if moves is not None else default_moves(z_unconstrained.shape[1])).check()
    density = log_density_fn(z_unconstrained)
    dtype, device = z_unconstrained.dtype, z_unconstrained.device
    if scales is None:
        scales = torch.ones(len(MOVE_NAMES))
    return EnsembleState(
        z_unconstrained,
        density.log_prior,
        density.log_likelihood,
        density.predictions,
        torch.as_tensor(scales, dtype=dtype, device=device),
        torch.tensor(moves, dtype=dtype, device=device),
    )


def step(
    generator: torch.Generator,
    state: EnsembleState,
    log_density_fn: Callable[[torch.Tensor], Density],
    *,
    beta: float | torch.Tensor = 1.0,
    groups: int = 1,
) -> tuple[EnsembleState, EnsembleInfo]:
    """One red/blue step against ``p(z) p(target | z)^beta``: the first half moves given the second,
    then the second given the first's new positions, each with a move type drawn from
    ``state.weights``. Two density calls of about N/2 rows each.

    :param beta: likelihood temperature, a number or a per-particle ``(N,)`` tensor.
    :param groups: the particles form ``groups`` contiguous groups of equal size, each sampling its
        own posterior (a sweep: one target per group). Moves stay inside a group: each group is
        split into its own halves, and a particle's proposal is built from its group's complement
        only, so each group is an ensemble of its own; all groups still share the two density calls.
    """
    num = state.z_unconstrained.shape[0]
    first: slice | torch.Tensor
    second: slice | torch.Tensor
    if groups == 1:
        check_size(num)
        first, second = slice(0, num // 2), slice(num // 2, num)
    else:
        first, second = group_halves(num, groups, state.z_unconstrained.device)
    state, info_first = _update_half(generator, state, first, second, log_density_fn, beta)
    state, info_second = _update_half(generator, state, second, first, log_density_fn, beta)
    info = EnsembleInfo(*(torch.cat(pair) for pair in zip(info_first[:4], info_second[:4])))
    if isinstance(first, slice) or isinstance(second, slice):
        return state, info
    order = torch.cat([first.reshape(-1), second.reshape(-1)])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(num, device=order.device)
    return state, EnsembleInfo(*(part[inverse] for part in info[:4]))


def group_halves(num: int, groups: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Particle indices of each group's first and second half, ``(groups, n // 2)`` and
    ``(groups, n - n // 2)``, for ``groups`` contiguous groups of ``n = num / groups`` particles."""
    if groups < 1 or num % groups:
        raise UserInputError(f"{num} particles do not split into {groups} equal groups")
    size = num // groups
    check_size(size)
    base = torch.arange(groups, device=device).unsqueeze(-1) * size
    half = size // 2
    return base + torch.arange(half, device=device), base + torch.arange(half, size, device=device)


def _update_half(
    generator,
    state: EnsembleState,
    active: slice | torch.Tensor,
    other: slice | torch.Tensor,
    log_density_fn,
    beta,
) -> tuple[EnsembleState, EnsembleInfo]:
    """MH update of the particles in ``active`` with proposals built from those in ``other``: two
    slices (one group), or per group ``(G, a)`` and ``(G, m)`` index tensors (each group's own
    complement). One move type is drawn for the whole half, as emcee does: being independent of
    the state it is as valid as a type per particle, and the half update then runs that one move's
    few tensor operations instead of every move's (the step's cost on a cheap network)."""
    kind = _draw_move(generator, state.weights)
    rows = active if isinstance(active, slice) else active.reshape(-1)
    z = state.z_unconstrained[active]
    complement = state.z_unconstrained[other]
    if isinstance(active, slice):
        z, complement = z.unsqueeze(0), complement.unsqueeze(0)
    proposal, log_q_ratio = _propose(generator, z, complement, kind, state.scales)
    proposal, log_q_ratio = proposal.reshape(-1, z.shape[-1]), log_q_ratio.reshape(-1)
    count = proposal.shape[0]
    density = log_density_fn(proposal, rows)
    part_beta = beta[rows] if torch.is_tensor(beta) and beta.dim() > 0 else beta
    proposed = tempered(density.log_prior, density.log_likelihood, part_beta)
    current = tempered(state.log_prior[rows], state.log_likelihood[rows], part_beta)
    log_ratio = proposed - current + log_q_ratio
    is_invalid = ~torch.isfinite(proposed)
    log_ratio = torch.where(is_invalid | torch.isnan(log_ratio), torch.full_like(log_ratio, -math.inf), log_ratio)
    acceptance_prob = log_ratio.clamp(max=0.0).exp()
    is_accepted = torch.rand(count, generator=generator, device=z.device, dtype=z.dtype) < acceptance_prob

    def merged(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        if old.dim() > 1 and old.shape[1] == 0:  # no predictions
            return old
        keep = is_accepted.reshape((-1,) + (1,) * (old.dim() - 1))
        out = old.clone()
        out[rows] = torch.where(keep, new, old[rows])
        return out

    new_state = EnsembleState(
        merged(state.z_unconstrained, proposal),
        merged(state.log_prior, density.log_prior),
        merged(state.log_likelihood, density.log_likelihood),
        merged(state.predictions, density.predictions),
        state.scales,
        state.weights,
    )
    move = torch.full((count,), kind, dtype=torch.long, device=z.device)
    return new_state, EnsembleInfo(acceptance_prob, is_accepted, is_invalid, move)


def _draw_move(generator: torch.Generator, weights: torch.Tensor) -> int:
    """A move type with probability proportional to ``weights`` ``(K,)``, from one uniform of
    ``generator`` (the weights and the uniform come to the host together: one sync on a GPU)."""
    u = torch.rand((), generator=generator, device=weights.device, dtype=weights.dtype)
    *bounds, draw = torch.cat([weights.cumsum(0), u.reshape(1)]).tolist()
    draw *= bounds[-1]
    positive = [kind for kind, (low, high) in enumerate(zip([0.0, *bounds], bounds)) if high > low]
    return next((kind for kind in positive if draw < bounds[kind]), positive[-1])  # u rounded up to the sum: the last


def _propose(
    generator, z: torch.Tensor, complement: torch.Tensor, kind: int, scales: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Proposals of move type ``kind`` for ``z`` ``(G, a, D)``, each group's built from its own
    complement ``(G, m, D)``, and ``log q(z) - log q(z')`` ``(G, a)`` (0 for the symmetric moves)."""
    groups, count, dim = z.shape
    if kind in (DE, HOP):
        gamma = scales[DE] * 2.38 / math.sqrt(2 * dim) if kind == DE else scales[HOP]
        return _differential(generator, z, complement, gamma), z.new_zeros(groups, count)
    chol = cloud_factor(complement)
    if kind == WALK:
        step_size = scales[WALK] * 2.38 / math.sqrt(dim)
        return z + step_size * _gaussian(generator, z, chol), z.new_zeros(groups, count)
    if kind == STUDENT:
        return _student(generator, z, complement, chol, scales[STUDENT])
    return _local_kde(generator, z, complement, chol, scales[KDE])


def _student(
    generator, z: torch.Tensor, points: torch.Tensor, chol: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An independence proposal per group from a multivariate Student-t (``STUDENT_DF`` degrees of
    freedom) with the complement's mean and covariance times ``scale**2``, and ``log q(z) - log q(z')``.
    One kernel where the KDE has hundreds: a few tensor operations, so on a piece that a Gaussian fits
    it makes near-independent draws at little more than a walk's cost; its heavy tails keep ``q`` above
    the posterior away from the centre, where a Gaussian's would let particles stick."""
    groups, count, dim = z.shape
    origin = points.double().mean(1, keepdim=True)
    factor = chol * scale.double()
    normals = torch.randn((groups, count, dim + STUDENT_DF), generator=generator, device=z.device, dtype=torch.float64)
    chi2 = normals[..., dim:].square().sum(-1, keepdim=True)  # chi-square with STUDENT_DF degrees of freedom
    proposal = origin + (normals[..., :dim] * (STUDENT_DF / chi2).sqrt()) @ factor.transpose(1, 2)
    white = whiten(torch.cat([z, proposal.to(z.dtype)], 1), origin, factor)
    log_q = -0.5 * (STUDENT_DF + dim) * torch.log1p(white.square().sum(-1) / STUDENT_DF)
    return proposal.to(z.dtype), (log_q[:, :count] - log_q[:, count:]).to(z.dtype)


def _differential(generator, z: torch.Tensor, complement: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """``z + gamma (z_a - z_b) + e`` with ``a != b`` uniform over the group's complement:
    symmetric, because swapping ``a`` and ``b`` (equally likely) and negating ``e`` undoes it."""
    groups, count, _ = z.shape
    size = complement.shape[1]
    a = torch.randint(size, (groups, count), generator=generator, device=z.device)
    b = torch.randint(size - 1, (groups, count), generator=generator, device=z.device)
    b = b + (b >= a).long()
    noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    spread = complement.std(1, keepdim=True).nan_to_num(0.0)
    return z + gamma * (_gather(complement, a) - _gather(complement, b)) + noise * (DE_NOISE * spread)


def _gaussian(generator, z: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """Draws of each group's ``N(0, Sigma_g)``, shaped like ``z`` ``(G, a, D)``; ``chol`` ``(G, D, D)``."""
    eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
    return eps @ chol.transpose(1, 2).to(z.dtype)


def cloud_factor(points: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor ``(G, D, D)`` of each group's covariance, for ``points``
    ``(G, M, D)``, in float64 (prior scales 0.01..100 make it ill-conditioned in float32); jitter
    relative to each variance where a cloud is degenerate, and its per-coordinate spread where even
    that fails (NaN, or rank 0)."""
    x = points.double()
    centred = x - x.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / max(points.shape[1] - 1, 1)
    chol, failed = torch.linalg.cholesky_ex(cov)
    if not bool(failed.any()):
        return chol
    variance = cov.diagonal(dim1=-2, dim2=-1).clamp_min(0.0)
    floor = variance.mean(-1, keepdim=True) * 1e-12 + torch.finfo(torch.float64).tiny
    done = failed == 0
    fallback = torch.diag_embed((variance + floor).sqrt())
    chol = torch.where(done[:, None, None], chol, fallback)
    for jitter in (1e-10, 1e-6, 1e-3):
        attempt, failed = torch.linalg.cholesky_ex(cov + torch.diag_embed(jitter * variance + floor))
        ok = (failed == 0) & ~done
        chol = torch.where(ok[:, None, None], attempt, chol)
        done = done | ok
        if bool(done.all()):
            break
    return chol


def _gather(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points[g, index[g, i]]`` for ``points`` ``(G, M, D)`` and ``index`` ``(G, a)``."""
    return points.gather(1, index.unsqueeze(-1).expand(-1, -1, points.shape[-1]))


class LocalKernels(NamedTuple):
    """A KDE in the cloud's whitened coordinates ``w = L^-1 (z - origin)``, ``L L^T`` the cloud's
    covariance: there every coordinate spreads about 1 whatever the prior's scales, so float32 is
    enough for the per-pair work. Each centre has its own covariance, from its nearest neighbours."""

    origin: torch.Tensor  # (G, 1, D) float64: the cloud's mean
    cloud: torch.Tensor  # (G, D, D) float64: L
    centres: torch.Tensor  # (G, M, D) float32, whitened
    chol: torch.Tensor  # (G, M, D, D) float32: each kernel's Cholesky factor, bandwidth included
    weights: torch.Tensor  # (G, D^2 + D + 1, M) float32: log2 q as one product with features of w


def whiten(z: torch.Tensor, origin: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """``L^-1 (z - origin)`` in float32 for ``z`` ``(G, n, D)``; the solve runs in float64 (``L`` may
    be ill-conditioned), the result is well scaled."""
    centred = (z.double() - origin).transpose(1, 2)
    return torch.linalg.solve_triangular(cloud, centred, upper=False).transpose(1, 2).float()


def local_kernels(points: torch.Tensor, chol: torch.Tensor, bandwidth: torch.Tensor) -> LocalKernels:
    """Kernels at ``points`` ``(G, M, D)``, whitened by the cloud's factor ``chol`` ``(G, D, D)``:
    each with the covariance of its ``LOCAL_NEIGHBOURS`` nearest neighbours (itself included)
    plus ``LOCAL_RIDGE`` times the cloud's own, times ``bandwidth**2``. In whitened coordinates the
    metric, the ridge and hence the whole KDE are affine invariant, like the other moves.

    ``topk`` finds the neighbours and gives their indices, so each neighbourhood is gathered and
    centred before its covariance (no cancellation): on a cheap network the step's cost is the
    number of tensor operations, and this takes fewer than ``kthvalue`` and a membership matrix did
    (see benchmarks/population.md)."""
    groups, size, dim = points.shape
    x = points.double()
    origin = x.mean(1, keepdim=True)
    white = whiten(x, origin, chol)
    k = min(size, max(LOCAL_NEIGHBOURS, 2 * dim + 2))
    norms = white.square().sum(-1)
    distance = norms.unsqueeze(-1) + norms.unsqueeze(-2) - 2 * white @ white.transpose(1, 2)
    nearest = distance.topk(k, -1, largest=False, sorted=False).indices  # (G, M, k), each point among its own
    wide = white.double()
    hood = wide[torch.arange(groups, device=wide.device)[:, None, None], nearest]  # (G, M, k, D)
    centred = hood - hood.mean(2, keepdim=True)
    cov = centred.transpose(-1, -2) @ centred / (k - 1)
    eye = torch.eye(dim, dtype=cov.dtype, device=cov.device)
    factor, failed = torch.linalg.cholesky_ex(cov + LOCAL_RIDGE * eye)
    if bool(failed.any()):  # NaN in the cloud: such centres take the cloud's own shape
        factor = torch.where((failed > 0)[..., None, None], eye, factor)
    factor = factor * bandwidth.double()
    precision = torch.cholesky_inverse(factor)
    log_det = torch.log(factor.diagonal(dim1=-2, dim2=-1)).sum(-1, keepdim=True)  # (G, M, 1)
    linear = (precision @ wide.unsqueeze(-1)).squeeze(-1)  # (G, M, D): P c
    constant = (linear * wide).sum(-1, keepdim=True) + 2 * log_det
    weights = (-0.5 / LN2) * torch.cat([precision.reshape(groups, size, dim * dim), -2 * linear, constant], -1)
    return LocalKernels(origin, chol, white, factor.float(), weights.transpose(1, 2).float().contiguous())


def _local_kde(
    generator, z: torch.Tensor, points: torch.Tensor, chol: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """An independence proposal per group from the complement's local-covariance KDE, and
    ``log q(z) - log q(z')``: ``z`` ``(G, a, D)``, complement ``points`` ``(G, M, D)``, its
    Cholesky factor ``chol`` ``(G, D, D)``; bandwidth ``scale`` (1: each kernel as wide as its
    neighbourhood)."""
    groups, size, dim = points.shape
    if size > KDE_MAX_CENTRES:  # a random subset per group (the largest of iid uniforms), independent of z
        uniforms = torch.rand((groups, size), generator=generator, device=z.device)
        subset = uniforms.topk(KDE_MAX_CENTRES, -1, sorted=False).indices
        points = _gather(points, subset)
        size = KDE_MAX_CENTRES
    kernels = local_kernels(points, chol, scale)
    count = z.shape[1]
    centre = torch.randint(size, (groups, count), generator=generator, device=z.device)
    eps = torch.randn((groups, count, dim, 1), generator=generator, device=z.device)
    chosen = kernels.chol[torch.arange(groups, device=z.device)[:, None], centre]  # (G, a, D, D)
    white = _gather(kernels.centres, centre) + (chosen @ eps).squeeze(-1)
    proposal = (kernels.origin + white.double() @ kernels.cloud.transpose(1, 2)).to(z.dtype)
    # both sides scored at the positions as stored, whitened the same way
    log_q = _kde_log_q(whiten(torch.cat([z, proposal], 1), kernels.origin, kernels.cloud), kernels)
    return proposal, (log_q[:, :count] - log_q[:, count:]).to(z.dtype)


def _kde_log_q(white: torch.Tensor, kernels: LocalKernels) -> torch.Tensor:
    """``log q`` per group at whitened points ``white`` ``(G, n, D)``, up to a constant shared by
    all of them: logsumexp over the centres of each kernel's log density
    ``-(w - c)^T P (w - c) / 2 - log |chol|``. For all (point, centre) pairs at once that is one
    matrix product of the features ``[vec(w w^T), w, 1]`` with ``kernels.weights``
    (``-[vec(P), -2 P c, c^T P c + 2 log |chol|] / (2 ln 2)``, in bits), a chunk of points at a
    time so memory stays ``O(KDE_PAIRS)``."""
    groups, size, dim = kernels.centres.shape
    chunk = max(1, KDE_PAIRS // max(1, groups * size))
    out = []
    for part in white.split(chunk, dim=1):
        outer = (part.unsqueeze(-1) * part.unsqueeze(-2)).reshape(groups, part.shape[1], dim * dim)
        out.append(_log2sumexp2_(torch.cat([outer, part, torch.ones_like(part[..., :1])], -1) @ kernels.weights))
    return LN2 * torch.cat(out, 1) if out else white.new_zeros(groups, 0)


def _log2sumexp2_(logits: torch.Tensor) -> torch.Tensor:
    """``log2 sum 2^x`` over the last axis, overwriting ``logits`` (a temporary), each term floored
    just above the smallest normal number relative to the largest (``2^-121`` in float32), below
    which ``exp2`` on a CPU goes subnormal and several times slower; the floored terms change the
    sum by less than ``M 2^-121`` of itself."""
    floor = math.log2(torch.finfo(logits.dtype).tiny) + 5.0
    top = logits.amax(-1, keepdim=True)
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    total = logits.sub_(shift).clamp_(min=floor).exp2_().sum(-1).log2_() + shift.squeeze(-1)
    return torch.where(torch.isfinite(top.squeeze(-1)), total, top.squeeze(-1))  # all -inf (or NaN) stays so


def adaptation(targets: tuple[float, ...] = TARGET_ACCEPT, split: bool = True) -> Adaptation:
    """Robbins-Monro on each move's log scale, ``log s_k += (n_k + 1)^-0.6 (a_k - target_k)``, with
    ``a_k`` the mean acceptance probability of the particles that used move k this step and ``n_k``
    the half updates that used it so far (a move drawn rarely still gets its full schedule); moves
    with a NaN target, or unused this step, keep their scale. With ``split``, the KDE and Student-t
    weights keep their sum and share it in proportion to each one's running acceptance (the same
    gains): both are independence proposals, whose acceptance is the share of fresh draws they make,
    so the population gets them from the one that fits it better. The driver applies it during
    warm-up only: afterwards scales and weights are frozen and the chain is valid MCMC."""

    def init(state: EnsembleState) -> AdaptState:
        goal = torch.tensor(targets, dtype=state.scales.dtype, device=state.scales.device)
        return AdaptState(0, goal, torch.zeros_like(goal), torch.zeros_like(goal))

    def update(adapt: AdaptState, state: EnsembleState, info: EnsembleInfo) -> tuple[AdaptState, EnsembleState]:
        accept_sum, count = acceptance_counts(info)
        mean = accept_sum / count.clamp_min(1)
        used = count > 0
        active = used & torch.isfinite(adapt.targets)
        gain = (adapt.uses + 1) ** -0.6
        change = torch.where(active, gain * (mean - torch.nan_to_num(adapt.targets)), torch.zeros_like(mean))
        acceptance = torch.where(used, adapt.acceptance + gain * (mean - adapt.acceptance), adapt.acceptance)
        adapt = AdaptState(adapt.iteration + 1, adapt.targets, adapt.uses + used.to(adapt.uses.dtype), acceptance)
        state = state._replace(scales=state.scales * change.exp())
        return adapt, (split_independence(state, adapt) if split else state)

    return Adaptation(init, update)


def split_independence(state: EnsembleState, adapt: AdaptState) -> EnsembleState:
    """``state`` with the KDE and Student-t weights' sum shared in proportion to their running
    acceptance, once both have been used and one accepted something."""
    pair = [KDE, STUDENT]
    rates = adapt.acceptance[pair]
    ready = (adapt.uses[pair] > 0).all() & (rates.sum() > 0)
    shared = state.weights[pair].sum() * rates / rates.sum().clamp_min(torch.finfo(rates.dtype).tiny)
    weights = state.weights.clone()
    weights[pair] = torch.where(ready, shared, state.weights[pair])
    return state._replace(weights=weights)


def algorithm(moves: Moves | None = None, targets: tuple[float, ...] = TARGET_ACCEPT, groups: int = 1) -> Algorithm:
    """The ensemble kernel for :func:`pplevelset.infer.mcmc.run_mcmc`; ``moves`` defaults to
    :func:`default_moves` of the latent dimension, whose KDE/Student-t split the warm-up adapts
    (given weights stay as they are). Its recorded ``step_size`` is the DE scale.
    ``groups``: contiguous groups of particles that each sample their own posterior (see :func:`step`);
    the move scales and weights are shared by all groups (tuned in warm-up on their pooled acceptance)."""

    if moves is not None:
        moves.check()

    def start(z_unconstrained: torch.Tensor, density) -> EnsembleState:
        return init(z_unconstrained, density, moves=moves)

    def advance(generator: torch.Generator, state: EnsembleState, density) -> tuple[EnsembleState, EnsembleInfo]:
        return step(generator, state, density, groups=groups)

    return Algorithm(start, advance, adaptation(targets, split=moves is None), recorded_scale, MOVE_NAMES)


def recorded_scale(state: EnsembleState) -> torch.Tensor:
    """What the traces record as each particle's ``step_size``: the DE scale, shared by all."""
    return state.scales[DE].expand(state.z_unconstrained.shape[0])


def acceptance_counts(info: EnsembleInfo) -> tuple[torch.Tensor, torch.Tensor]:
    """Per move type: the sum of acceptance probabilities and the number of particles that used it
    (accumulate these over steps for :func:`move_acceptance`)."""
    k = len(MOVE_NAMES)
    dtype = info.acceptance_prob.dtype
    accept_sum = torch.zeros(k, dtype=dtype, device=info.move.device).index_add_(0, info.move, info.acceptance_prob)
    count = torch.bincount(info.move, minlength=k).to(dtype)
    return accept_sum, count


def move_acceptance(infos: Iterable[EnsembleInfo] | tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """Mean acceptance probability per move type (the Rao-Blackwellised acceptance rate), from a
    sequence of infos or accumulated ``(accept_sum, count)``; moves never used are left out.

    Example: ``summary["move_acceptance"] = move_acceptance(infos)`` gives ``{"de": 0.27, ...}``.
    """
    if isinstance(infos, tuple) and len(infos) == 2 and torch.is_tensor(infos[0]):
        accept_sum, count = infos
    else:
        counts = [acceptance_counts(info) for info in infos]
        if not counts:
            return {}
        accept_sum, count = (torch.stack(parts).sum(0) for parts in zip(*counts))
    return {name: float(accept_sum[k] / count[k]) for k, name in enumerate(MOVE_NAMES) if count[k] > 0}
