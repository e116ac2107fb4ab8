"""Fashion-MNIST and the Bayes-TrEx experiment worlds: the data loader on IDX files written here,
the shipped networks' model cards, the six new worlds' shapes, and a tiny run of each new trainer.

Nothing here reads the real Fashion-MNIST files: the loader and trainers run on made-up IDX data."""

import dataclasses

import pytest
import torch
from test_data import _idx_bytes, write_idx_folder

from pplevelset import checkpoints
from pplevelset.cli import main
from pplevelset.errors import UserInputError
from pplevelset.worlds import load_world
from pplevelset.worlds.mnist import nets
from pplevelset.worlds.mnist.data import FASHION, MNIST, load_fashion, load_images
from pplevelset.worlds.training import TRAINERS

FASHION_CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
NEW_RECIPES = [name for name in nets.RECIPES if name not in ("mnist-classifier", "mnist-vae", "mnist-gan")]
EXPERIMENT_WORLDS = {  # world: (dataset, excluded class, is the class missing from the classifier?)
    "mnist-adversarial": (MNIST, "0", False),
    "fashion-adversarial": (FASHION, "tshirt", False),
    "mnist-novel": (MNIST, "7", True),
    "fashion-novel": (FASHION, "sneaker", True),
}
NEW_WORLDS = ["fashion-vae", "fashion-gan", *EXPERIMENT_WORLDS]


# --- the data loader ----------------------------------------------------------------------------

# The IDX round trip (gzipped or not, torchvision's layout or not) is test_data.py's, for both data sets.


def test_fashion_default_root_is_the_debian_package_folder(tmp_path):
    write_idx_folder(tmp_path / "installed", n_train=4, n_test=2, gzipped=True)
    installed = dataclasses.replace(FASHION, system_root=tmp_path / "installed")
    assert load_images(installed, "test")[0].shape == (2, 1, 28, 28)
    absent = dataclasses.replace(FASHION, system_root=tmp_path / "absent")
    with pytest.raises(UserInputError, match="Fashion-MNIST not found.*dataset-fashion-mnist.*--data-root.*--download"):
        load_images(absent, "train")


def test_fashion_loader_errors_name_the_data_set(tmp_path):
    with pytest.raises(UserInputError, match="Fashion-MNIST file train-images-idx3-ubyte.*not found.*FashionMNIST/raw"):
        load_fashion("train", data_root=tmp_path)
    with pytest.raises(UserInputError, match="unknown Fashion-MNIST split"):
        load_fashion("validation", data_root=tmp_path)
    write_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(torch.tensor([1, 10, 2]).numpy(), 2049))
    with pytest.raises(UserInputError, match="label 10, expected 0..9"):
        load_fashion("test", data_root=tmp_path)


def test_fashion_class_names_work_in_targets():
    from pplevelset.targets import parse_target

    assert FASHION.classes == FASHION_CLASSES
    target = parse_target("shirt=0.46,tshirt=0.46", FASHION.classes)
    assert target[6] == pytest.approx(0.46) and target[0] == pytest.approx(0.46)


# --- the shipped networks -------------------------------------------------------------------------


@pytest.mark.parametrize("command_name", NEW_RECIPES)
def test_new_checkpoints_match_their_cards(command_name):
    recipe = nets.RECIPES[command_name]
    folder = recipe.dataset.key
    card = checkpoints.verify(folder, recipe.name)
    assert card["sha256"] == checkpoints.sha256_file(checkpoints.models_dir() / folder / card["file"])
    assert card["network"] == command_name
    assert card["command"] == f"pplevelset train {command_name} --seed {card['seed']}"
    assert card["metrics"] and card["train_time_s"] > 0 and card["training"]["images_seen"] > 0
    for field in ("architecture", "data", "seed", "training", "torch_threads", "torch_version"):
        assert field in card
    assert card["data"]["train_size"] == (
        4050
        if folder == "mnist" and recipe.excluded
        else 4500
        if folder == "mnist"
        else 54000
        if recipe.excluded
        else 60000
    )
    assert card.get("excluded_class") == recipe.excluded
    if recipe.kind in ("classifier", "reference"):
        assert tuple(card["classes"]) == recipe.classes and card["metrics"]["test_accuracy"] > 0.8
    if recipe.kind in ("vae", "gan"):
        assert (checkpoints.models_dir() / folder / card["training"]["samples"]).is_file()
    module, _ = nets.load_trained(recipe.name, dataset=recipe.dataset)
    assert type(module).__name__ == card["architecture"]["class"].rsplit(".", 1)[1]
    assert not module.training and not any(p.requires_grad for p in module.parameters())


def test_fashion_classifier_accuracy_and_reference_seed():
    classifier = checkpoints.read_card("fashion", "classifier")
    assert classifier["metrics"]["test_accuracy"] >= 0.88 and classifier["data"]["test_size"] == 10000
    for folder in ("mnist", "fashion"):
        reference = checkpoints.read_card(folder, "reference_classifier")
        assert reference["seed"] != checkpoints.read_card(folder, "classifier")["seed"]
        assert reference["architecture"]["class"].endswith("ReferenceClassifier")


def test_shipped_fashion_models_are_small():
    folder = checkpoints.models_dir() / "fashion"
    assert sum(path.stat().st_size for path in folder.iterdir()) < 10 * 2**20


# --- the worlds ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worlds():
    return {name: load_world(name) for name in NEW_WORLDS}


@pytest.mark.parametrize("name", NEW_WORLDS)
def test_new_world_shapes_with_extra_batch_dims(worlds, name):
    world = worlds[name]
    assert world.name == name and world.latent_dim == 5 and world.differentiable
    assert set(world.checkpoints) == {f"{folder}/{ck}" for folder, ck in world.required_checkpoints}
    z = world.prior().sample((2, 3))
    with torch.no_grad():
        x = world.decode(z)
        probabilities = world.classify(x)
        flat = world.predict(z.reshape(6, 5))
    n = len(world.classes)
    assert x.shape == (2, 3, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert probabilities.shape == (2, 3, n)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(probabilities.reshape(6, n), flat, atol=1e-5)


@pytest.mark.parametrize("name", ["fashion-vae", "fashion-gan"])
def test_fashion_worlds_use_all_ten_classes(worlds, name):
    assert worlds[name].classes == FASHION_CLASSES
    assert not hasattr(worlds[name], "excluded_class")


@pytest.mark.parametrize("name", list(EXPERIMENT_WORLDS))
def test_experiment_worlds_hold_one_class_out(worlds, name):
    world = worlds[name]
    dataset, excluded, blind_classifier = EXPERIMENT_WORLDS[name]
    assert world.excluded_class == excluded and type(world).excluded_class == excluded
    assert world.reference_classes == type(world).reference_classes == dataset.classes
    if blind_classifier:  # novel class: the classifier never saw it and cannot name it
        assert world.classes == tuple(c for c in dataset.classes if c != excluded) and len(world.classes) == 9
    else:  # adversarial: the classifier knows the class, the generator never saw it
        assert world.classes == dataset.classes
    assert (dataset.key, "reference_classifier") in world.required_checkpoints
    z = world.prior().sample((2, 3))
    with torch.no_grad():
        reference = world.reference_classify(world.decode(z))
    assert reference.shape == (2, 3, 10)
    assert torch.allclose(reference.sum(-1), torch.ones(2, 3), atol=1e-5)


def test_worlds_command_lists_the_new_worlds(capsys):
    assert main(["worlds"]) == 0
    listing = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    for name in NEW_WORLDS:
        assert "ok" in listing[name].split(), listing[name]


# --- the trainers, on a tiny IDX folder -----------------------------------------------------------


def test_every_recipe_has_a_trainer():
    for command_name in nets.RECIPES:
        assert TRAINERS[command_name].startswith("pplevelset.worlds.mnist.nets:")


def test_new_trainers_write_verifiable_cards(tmp_path):
    data, out = tmp_path / "data", tmp_path / "models"
    write_idx_folder(data, n_train=100, n_test=40, gzipped=True)
    # The classifiers first: the VAEs and the GAN score their samples with the one in `out`.
    order = sorted(NEW_RECIPES, key=lambda name: nets.RECIPES[name].kind not in ("classifier", "reference"))
    for command_name in order:
        recipe = nets.RECIPES[command_name]
        assert main(["train", command_name, "--epochs", "1", "--data-root", str(data), "--out", str(out)]) == 0
        module, card = nets.load_trained(recipe.name, root=out, dataset=recipe.dataset)
        assert card["command"] == f"pplevelset train {command_name} --seed 0 --epochs 1 --data-root {data}"
        assert card["data"]["train_size"] == (90 if recipe.excluded else 100)
        if recipe.kind in ("classifier", "reference"):
            assert module(torch.zeros(2, 1, 28, 28)).shape == (2, len(recipe.classes))
        if recipe.kind == "vae" and recipe.excluded:
            assert "excluded_class_test_elbo_nats" in card["metrics"]
            assert set(card["metrics"]["classifier_class_histogram"]) == set(recipe.dataset.classes)
    assert (out / "fashion" / "gan_samples.png").is_file()
    assert (out / "fashion" / "vae_without_tshirt_samples.png").is_file()
