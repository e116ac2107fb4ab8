"""The shipped MNIST networks, the two MNIST worlds, and a smoke run of the three trainers."""

import pytest
import torch
from test_data import write_idx_folder

from pplevelset import checkpoints
from pplevelset.worlds import load_world
from pplevelset.worlds.mnist import nets
from pplevelset.worlds.mnist.data import load_mnist

NAMES = ("classifier", "vae", "gan")


@pytest.fixture(scope="module")
def vae_world():
    return load_world("mnist-vae")


@pytest.fixture(scope="module")
def gan_world():
    return load_world("mnist-gan")


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_matches_its_card(name):
    card = checkpoints.verify("mnist", name)
    assert card["sha256"] == checkpoints.sha256_file(checkpoints.models_dir() / "mnist" / card["file"])
    assert card["command"] == f"pplevelset train mnist-{name} --seed 0"
    assert card["seed"] == 0 and card["metrics"] and card["train_time_s"] > 0
    assert card["data"]["train_size"] == 4500
    module, _ = nets.load_trained(name)
    assert type(module).__name__ == card["architecture"]["class"].rsplit(".", 1)[1]
    assert not module.training and not any(p.requires_grad for p in module.parameters())


def test_shipped_models_are_small():
    folder = checkpoints.models_dir() / "mnist"
    assert sum(path.stat().st_size for path in folder.iterdir()) < 10 * 2**20
    assert (folder / "gan_samples.png").is_file()


def test_classifier_accuracy_on_held_out_bundled_digits(vae_world):
    images, labels = load_mnist("test")
    with torch.no_grad():
        accuracy = (vae_world.classify(images).argmax(-1) == labels).float().mean().item()
    assert accuracy >= 0.95
    recorded = checkpoints.read_card("mnist", "classifier")["metrics"]["test_accuracy"]
    assert abs(accuracy - recorded) <= 0.004  # at most two digits differ across platforms


def test_vae_decodes_bernoulli_means():
    vae, _ = nets.load_trained("vae")
    with torch.no_grad():
        images = vae.decode(torch.randn(7, 5))
    assert images.shape == (7, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.1


def test_gan_generator_output_and_batch_independence():
    generator, card = nets.load_trained("gan")
    z = torch.randn(100, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        images = generator(z)
        alone = generator(z[:3])
    assert images.shape == (100, 1, 28, 28)
    assert images.min() >= 0 and images.max() <= 1 and images.std() > 0.1
    assert torch.allclose(images[:3], alone, atol=1e-5)  # batch norm in eval mode: per-sample
    assert sum(card["metrics"]["classifier_class_histogram"].values()) == 1000


@pytest.mark.parametrize("world_fixture", ["vae_world", "gan_world"])
def test_world_shapes_with_extra_batch_dims(world_fixture, request):
    world = request.getfixturevalue(world_fixture)
    assert world.classes == tuple("0123456789") and world.latent_dim == 5 and world.differentiable
    assert set(world.checkpoints) == {f"{folder}/{name}" for folder, name in world.required_checkpoints}
    prior = world.prior()
    assert prior.event_shape == (5,) and prior.batch_shape == ()
    z = prior.sample((2, 3))
    assert z.shape == (2, 3, 5) and prior.log_prob(z).shape == (2, 3)
    with torch.no_grad():
        x = world.decode(z)
        probabilities = world.classify(x)
        flat = world.predict(z.reshape(6, 5))
    assert x.shape == (2, 3, 1, 28, 28) and probabilities.shape == (2, 3, 10)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(probabilities.reshape(6, 10), flat, atol=1e-5)


@pytest.mark.parametrize("world_fixture", ["vae_world", "gan_world"])
def test_prediction_gradients_are_finite_and_non_zero(world_fixture, request):
    world = request.getfixturevalue(world_fixture)
    z = world.prior().sample((4,)).requires_grad_(True)
    log_probability_of_one = world.predict(z)[..., 1].clamp_min(1e-12).log().sum()
    (gradient,) = torch.autograd.grad(log_probability_of_one, z)
    assert torch.isfinite(gradient).all() and (gradient.abs().sum(-1) > 0).all()


# --- trainers, on a tiny IDX folder for speed -----------------------------------------------


def test_trainers_write_verifiable_cards(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_idx_folder(data, n_train=128, n_test=64, gzipped=True)
    for name, train in (("classifier", nets.train_classifier), ("vae", nets.train_vae), ("gan", nets.train_gan)):
        metrics = train(seed=3, epochs=1, data_root=data, out=tmp_path / "models", progress=False)
        module, card = nets.load_trained(name, root=tmp_path / "models")
        assert card["metrics"] == metrics
        assert card["command"] == f"pplevelset train mnist-{name} --seed 3 --epochs 1 --data-root {data}"
        assert card["data"]["train_size"] == 128
    assert (tmp_path / "models" / "mnist" / "gan_samples.png").is_file()
    nets.train_classifier(seed=3, epochs=1, data_root=data, out=tmp_path / "again", progress=False)
    again = checkpoints.sha256_file(tmp_path / "again" / "mnist" / "classifier.pt")
    assert again == checkpoints.sha256_file(tmp_path / "models" / "mnist" / "classifier.pt")  # deterministic


# --- sampling on the MNIST worlds (issue 4) ----------------------------------------------------


def test_rwmh_toward_one_or_seven_raises_their_probability(vae_world):
    import pplevelset as pls

    with torch.random.fork_rng():
        torch.manual_seed(1)
        z = vae_world.prior().sample((2000,))
    with torch.no_grad():
        prior_mass = float(vae_world.predict(z)[:, [1, 7]].sum(-1).mean())  # about 0.17
    post = pls.sample(
        vae_world, "1=0.46,7=0.46", alpha=10.0, num_particles=64, warmup=50, steps=20, seed=0, progress=False
    )
    posterior_mass = float(post.predictions()[:, [1, 7]].sum(-1).mean())
    assert posterior_mass > prior_mass + 0.2  # about 0.58 after 70 steps
    assert post.traces["z"].shape == (64, 20, 5)


def test_nuts_runs_a_few_steps_on_mnist_vae(vae_world):
    import pplevelset as pls

    # warmup=2: with 5 warm-up steps Pyro's step size falls to ~0.01 and every tree reaches the
    # maximum depth of 8 (~30 s); pls.sample has no max_tree_depth to pass.
    post = pls.sample(
        vae_world, "1=0.46,7=0.46", kernel="nuts", num_particles=4, warmup=2, steps=3, seed=0, progress=False
    )
    assert post.z.shape == (4, 5) and post.traces["z"].shape == (4, 3, 5)
    assert torch.isfinite(post.traces["log_likelihood"]).all()
    assert 0 <= post.delta() < 0.2
