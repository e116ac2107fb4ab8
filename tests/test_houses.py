"""The houses worlds: renderer, priors, biject_to, the shipped classifier and its checkpoint checks."""

import json
import shutil

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import biject_to

from pplevelset.checkpoints import models_dir, sha256_file, verify
from pplevelset.errors import CheckpointError
from pplevelset.worlds import load_world
from pplevelset.worlds.houses import HousesCirclesWorld, HousesWorld
from pplevelset.worlds.houses.priors import SHAPE_LOC, SHAPE_SCALE, houses_circles_prior, houses_prior, sample_labelled
from pplevelset.worlds.houses.render import draw


@pytest.fixture(scope="module")
def houses():
    return HousesWorld()


@pytest.fixture(scope="module")
def circles():
    return HousesCirclesWorld()


def truncnorm(loc, scale):
    return stats.truncnorm(-loc / scale, np.inf, loc=loc, scale=scale)


# -- renderer ------------------------------------------------------------------------------------


def test_render_shapes_and_range():
    z = houses_circles_prior().sample((2, 5))
    for images in (draw(z), draw(z, circle=True), draw(z[..., :3])):
        assert images.shape == (2, 5, 1, 64, 64)
        assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert draw(z[0, 0]).shape == (1, 64, 64)
    assert draw(z[:0]).shape == (0, 5, 1, 64, 64)
    with pytest.raises(ValueError):
        draw(z[..., :3], circle=True)


def test_circle_changes_the_image_and_can_be_left_out(circles):
    z = houses_circles_prior().sample((4,))
    plain, circled = circles.decode(z, circle=False), circles.decode(z)
    assert torch.equal(plain, draw(z[:, :3]))
    assert (circled - plain).abs().amax((-1, -2, -3)).min() > 0.3


def test_prototypes_fill_the_expected_area():
    house, rocket = torch.tensor([[30.0, 10.0, 8.0], [10.0, 30.0, 8.0]]).unbind(0)
    area = draw(torch.stack([house, rocket])).sum((-1, -2, -3))
    expected = torch.tensor([30 * 10 + 30 * 8 / 2, 10 * 30 + 10 * 8 / 2])
    torch.testing.assert_close(area, expected, rtol=0.03, atol=0)


def test_render_gradients_are_finite_and_nonzero():
    z = houses_circles_prior().sample((6,)).requires_grad_()
    weights = torch.rand(6, 1, 64, 64)
    for circle in (False, True):
        (grad,) = torch.autograd.grad((draw(z, circle=circle) * weights).sum(), z)
        used = grad if circle else grad[:, :3]
        assert torch.isfinite(grad).all() and (used.abs() > 0).all()


def test_rendering_in_inference_mode_first_keeps_gradients_working():
    z = torch.tensor([[30.0, 10.0, 8.0, 20.0, 30.0, 30.0]], dtype=torch.float16)  # a fresh cache entry
    with torch.inference_mode():
        draw(z, circle=True)
    z = z.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(draw(z, circle=True).float().sum(), z)
    assert torch.isfinite(grad).all()


def test_render_gradient_matches_finite_differences():
    z = houses_circles_prior().sample((1,)).double().requires_grad_()
    assert torch.autograd.gradcheck(lambda latent: draw(latent, circle=True), (z,), eps=1e-5, atol=1e-5, fast_mode=True)


# -- priors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior, dim", [(houses_prior, 3), (houses_circles_prior, 6)])
def test_prior_shapes(prior, dim):
    d = prior()
    assert d.event_shape == (dim,) and d.batch_shape == ()
    z = d.sample((50,))
    assert z.shape == (50, dim) and d.log_prob(z).shape == (50,)
    assert torch.isfinite(d.log_prob(z)).all()
    assert d.expand((7,)).sample((3,)).shape == (3, 7, dim)


def test_houses_log_prob_is_the_scipy_mixture():
    z = houses_prior().sample((200,)).double()
    components = [
        np.prod(
            [truncnorm(loc, scale).pdf(z[:, i].numpy()) for i, (loc, scale) in enumerate(zip(locs, scales))], axis=0
        )
        for locs, scales in zip(SHAPE_LOC, SHAPE_SCALE)
    ]
    expected = np.log(0.5 * components[0] + 0.5 * components[1])
    np.testing.assert_allclose(houses_prior().log_prob(z.float()).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_houses_circles_log_prob_adds_radius_and_centre():
    z = houses_circles_prior().sample((100,))
    expected = (
        houses_prior().log_prob(z[:, :3]).numpy() + truncnorm(20.0, 10.0).logpdf(z[:, 3].numpy()) + 2 * np.log(1 / 20)
    )
    np.testing.assert_allclose(houses_circles_prior().log_prob(z).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_prior_integrates_to_one_on_a_grid():
    axes = [torch.linspace(0.25, 90, 120), torch.linspace(0.25, 90, 120), torch.linspace(0.1, 20, 60)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    cell = np.prod([float(axis[1] - axis[0]) for axis in axes])
    assert houses_prior().log_prob(grid).exp().sum().item() * cell == pytest.approx(1.0, abs=0.02)


def test_width_marginal_matches_the_scipy_mixture():
    torch.manual_seed(0)
    widths = houses_prior().sample((4000,))[:, 0].double().numpy()
    house, rocket = truncnorm(SHAPE_LOC[0][0], SHAPE_SCALE[0][0]), truncnorm(SHAPE_LOC[1][0], SHAPE_SCALE[1][0])
    assert stats.kstest(widths, lambda w: 0.5 * house.cdf(w) + 0.5 * rocket.cdf(w)).pvalue > 0.01


def test_labelled_samples_follow_their_component():
    z, labels = sample_labelled(4000, torch.Generator().manual_seed(1), circles=True)
    assert z.shape == (4000, 6) and labels.shape == (4000,)
    assert 0.45 < labels.float().mean() < 0.55
    for label, (locs, scales) in enumerate(zip(SHAPE_LOC, SHAPE_SCALE)):
        for column in range(3):
            values = z[labels == label, column].double().numpy()
            assert stats.kstest(values, truncnorm(locs[column], scales[column]).cdf).pvalue > 0.001
    assert (z[:, 4:] > 20).all() and (z[:, 4:] < 40).all() and (z[:, :4] > 0).all()
    again, _ = sample_labelled(4000, torch.Generator().manual_seed(1), circles=True)
    assert torch.equal(z, again)


@pytest.mark.parametrize("prior, dim", [(houses_prior, 3), (houses_circles_prior, 6)])
def test_biject_to_round_trip(prior, dim):
    d = prior().expand((40,))
    transform = biject_to(d.support)
    unconstrained = torch.randn(40, dim) * 4
    z = transform(unconstrained)
    assert d.support.check(z).all() and torch.isfinite(d.log_prob(z)).all()
    torch.testing.assert_close(transform.inv(z), unconstrained, rtol=1e-4, atol=1e-3)
    assert transform.log_abs_det_jacobian(unconstrained, z).shape == (40,)
    if dim == 6:
        assert (z[:, 4:] > 20).all() and (z[:, 4:] < 40).all()


# -- worlds and the classifier ---------------------------------------------------------------------


def test_world_attributes(houses, circles):
    assert (houses.name, houses.classes, houses.latent_dim, houses.differentiable) == (
        "houses",
        ("house", "rocket"),
        3,
        True,
    )
    assert (circles.name, circles.latent_dim) == ("houses-circles", 6)
    assert houses.required_checkpoints == circles.required_checkpoints == (("houses", "classifier"),)
    assert load_world("houses-circles").prior().event_shape == (6,)


def test_classify_handles_any_batch_shape(circles):
    z = circles.prior().sample((2, 3))
    probs = circles.predict(z)
    assert probs.shape == (2, 3, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))
    assert circles.classify(circles.decode(z[0, 0])).shape == (2,)


def test_shipped_checkpoint_matches_its_card():
    card = verify("houses", "classifier")
    assert sha256_file(models_dir() / "houses" / card["file"]) == card["sha256"]
    assert card["command"].startswith("pplevelset train houses")
    assert card["metrics"]["accuracy"] >= 0.96
    assert (models_dir() / "houses" / card["file"]).stat().st_size < 1_000_000


def test_classifier_accuracy_on_fresh_images(houses):
    z, labels = houses.sample_labelled(2000, torch.Generator().manual_seed(20240607))
    with torch.no_grad():
        predicted = houses.predict(z).argmax(-1)
    assert (predicted == labels).float().mean() >= 0.96


# -- corrupted checkpoints -----------------------------------------------------------------------


@pytest.fixture
def models_copy(tmp_path, monkeypatch):
    """A private copy of models/houses that PPLEVELSET_MODELS points at."""
    source = models_dir() / "houses"
    shutil.copytree(source, tmp_path / "houses")
    monkeypatch.setenv("PPLEVELSET_MODELS", str(tmp_path))
    return tmp_path / "houses"


def _one_line_checkpoint_error():
    with pytest.raises(CheckpointError) as caught:
        HousesWorld()
    message = str(caught.value)
    assert "\n" not in message and "classifier" in message
    return message


def _reseal_card(folder):
    """Write the (tampered) weights' real hash into the card, as an attacker could."""
    card_path = folder / "classifier.json"
    card = json.loads(card_path.read_text())
    card["sha256"] = sha256_file(folder / "classifier.pt")
    card_path.write_text(json.dumps(card))


def test_flipped_bytes_are_refused(models_copy):
    weights = models_copy / "classifier.pt"
    data = bytearray(weights.read_bytes())
    for index in range(1000, 1010):
        data[index] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "SHA-256" in _one_line_checkpoint_error()


def test_truncated_file_is_refused(models_copy):
    weights = models_copy / "classifier.pt"
    weights.write_bytes(weights.read_bytes()[:5000])
    assert "SHA-256" in _one_line_checkpoint_error()


def test_truncated_file_with_a_resealed_card_is_refused(models_copy):
    weights = models_copy / "classifier.pt"
    weights.write_bytes(weights.read_bytes()[:5000])
    _reseal_card(models_copy)
    assert "cannot be read safely" in _one_line_checkpoint_error()


def test_non_finite_weights_with_a_resealed_card_are_refused(models_copy):
    weights = models_copy / "classifier.pt"
    state = torch.load(weights, weights_only=True)
    first = next(iter(state))
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, weights)
    _reseal_card(models_copy)
    assert "non-finite" in _one_line_checkpoint_error()


def test_missing_or_garbled_card_is_refused(models_copy):
    (models_copy / "classifier.json").write_text("{not json")
    assert "JSON" in _one_line_checkpoint_error()
    (models_copy / "classifier.json").unlink()
    assert "no model card" in _one_line_checkpoint_error()
