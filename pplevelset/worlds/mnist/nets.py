"""Networks for 28x28 grey images (CNN classifier, reference classifier, VAE, GAN generator with
5-D latents), the recipes that train them on MNIST or Fashion-MNIST, and ``load_trained``.

The networks are small on purpose: a level-set run decodes and classifies every particle at every
step (1,000 particles x 1,000 steps), so one forward pass over 1,000 latents must stay cheap on a
laptop CPU. The architectures are named after MNIST, whose format Fashion-MNIST copies; the same
classes serve both data sets.

A :class:`Recipe` is one trained network: its data set, its kind (``classifier``, ``reference``,
``vae``, ``gan``), the class it never sees (the Bayes-TrEx experiments), and how many images it
is shown by default. ``RECIPES`` maps the name given to ``pplevelset train NAME`` to its recipe;
the ``train_*`` functions of this module are the trainers :mod:`pplevelset.worlds.training` lists.
Each trainer is seeded and deterministic on CPU (for a given thread count), shows a tqdm bar, and
writes its checkpoint and model card to ``<out>/<dataset>/``. The bundled MNIST digits'
train/test split is fixed (split seed 0) whatever the training seed, so every MNIST network is
scored on the same 500 held-out digits.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from pplevelset import checkpoints
from pplevelset.errors import CheckpointError
from pplevelset.rng import generator as seeded_generator
from pplevelset.worlds.mnist.data import FASHION, MNIST, ImageDataset, describe_source, load_images

LATENT_DIM = 5  # the paper's choice for both the VAE and the GAN (Bayes-TrEx's too)
IMAGE_SHAPE = (1, 28, 28)
# The Bayes-TrEx experiment worlds hold one class out (see README): the generator never sees
# ADVERSARIAL_EXCLUDED, the classifier never sees NOVEL_EXCLUDED.
ADVERSARIAL_EXCLUDED = {"mnist": "0", "fashion": "tshirt"}
NOVEL_EXCLUDED = {"mnist": "7", "fashion": "sneaker"}


# --- architectures --------------------------------------------------------------------------


class MnistClassifier(nn.Module):
    """Two stride-2 convolutions and a small dense head; returns logits over the classes.

    Strided convolutions rather than conv + max-pool: on a CPU they classify 1,000 images about
    nine times faster at the same accuracy, and the sampler classifies every particle every step.
    """

    def __init__(
        self, channels: tuple[int, int] = (16, 32), hidden: int = 128, dropout: float = 0.25, num_classes: int = 10
    ):
        super().__init__()
        self.kwargs = {"channels": list(channels), "hidden": hidden, "dropout": dropout, "num_classes": num_classes}
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 5, stride=2, padding=2),
            nn.ReLU(),  # 14x14
            nn.Conv2d(first, second, 5, stride=2, padding=2),
            nn.ReLU(),  # 7x7
        )
        self.head = _dense_head(second * 49, hidden, dropout, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def _dense_head(features: int, hidden: int, dropout: float, num_classes: int) -> nn.Sequential:
    """Flattened 7x7 feature maps -> dropout, one hidden layer, dropout -> class logits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(features, hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


class ReferenceClassifier(MnistClassifier):
    """A second opinion for the experiments: 3x3 convolutions with batch norm and max-pooling (the
    classic VGG-style block) where :class:`MnistClassifier` has strided 5x5 convolutions; the same
    dense head.

    Trained with another seed on all classes, it says what a generated image shows when the
    world's own classifier was trained without a class. Batch norm runs in eval mode once shipped.
    """

    def __init__(
        self, channels: tuple[int, int] = (16, 32), hidden: int = 128, dropout: float = 0.3, num_classes: int = 10
    ):
        super().__init__(channels, hidden, dropout, num_classes)
        first, second = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, first, 3, padding=1),
            nn.BatchNorm2d(first),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(first, second, 3, padding=1),
            nn.BatchNorm2d(second),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
        )


def _upsampling_decoder(
    latent_dim: int, hidden: int, channels: tuple[int, int], batch_norm: bool = False
) -> nn.Sequential:
    """Latent -> dense 7x7 feature map -> two stride-2 transposed convolutions -> 28x28 logits."""
    first, second = channels
    norm1d = nn.BatchNorm1d if batch_norm else (lambda size: nn.Identity())
    norm2d = nn.BatchNorm2d if batch_norm else (lambda size: nn.Identity())
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        norm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, first * 49),
        norm1d(first * 49),
        nn.ReLU(),
        nn.Unflatten(1, (first, 7, 7)),
        nn.ConvTranspose2d(first, second, 4, stride=2, padding=1),
        norm2d(second),
        nn.ReLU(),  # 14x14
        nn.ConvTranspose2d(second, 1, 4, stride=2, padding=1),  # 28x28
    )


class MnistVAE(nn.Module):
    """Convolutional VAE with a Gaussian posterior q(z|x) and Bernoulli pixel means p(x|z)."""

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = 128, channels: tuple[int, int] = (32, 16)):
        super().__init__()
        self.kwargs = {"latent_dim": latent_dim, "hidden": hidden, "channels": list(channels)}
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, channels[1], 4, stride=2, padding=1),
            nn.ReLU(),  # 14x14
            nn.Conv2d(channels[1], channels[0], 4, stride=2, padding=1),
            nn.ReLU(),  # 7x7
            nn.Flatten(),
            nn.Linear(channels[0] * 49, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = _upsampling_decoder(latent_dim, hidden, channels)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x)."""
        mean, log_var = self.encoder(images).chunk(2, dim=-1)
        return mean, log_var

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli means in [0, 1], shape ``(N, 1, 28, 28)``."""
        return torch.sigmoid(self.decoder(z))

    def elbo(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-image evidence lower bound in nats, one reparameterised sample of z."""
        mean, log_var = self.encode(images)
        noise = torch.randn(mean.shape, generator=generator).to(mean.device)
        z = mean + (0.5 * log_var).exp() * noise
        log_likelihood = (
            -F.binary_cross_entropy_with_logits(self.decode_logits(z), images, reduction="none").flatten(1).sum(-1)
        )
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(-1)
        return log_likelihood - kl


class MnistGenerator(nn.Module):
    """DCGAN-style generator: the VAE decoder's shape with batch norm, sigmoid images in [0, 1].

    Batch norm helps the GAN train on a CPU budget; shipped in eval mode, it uses its running
    statistics, so an image depends only on its own z, never on the rest of the batch.
    """

    def __init__(self, latent_dim: int = LATENT_DIM, hidden: int = 128, channels: tuple[int, int] = (32, 16)):
        super().__init__()
        self.kwargs = {"latent_dim": latent_dim, "hidden": hidden, "channels": list(channels)}
        self.latent_dim = latent_dim
        self.net = _upsampling_decoder(latent_dim, hidden, channels, batch_norm=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(z))


class MnistDiscriminator(nn.Module):
    """DCGAN discriminator (logits of "real"); used only in training, not shipped."""

    def __init__(self, channels: tuple[int, int] = (32, 64)):
        super().__init__()
        self.kwargs = {"channels": list(channels)}
        first, second = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, first, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(first, second, 4, stride=2, padding=1),
            nn.BatchNorm2d(second),
            nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(),
            nn.Linear(second * 49, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).squeeze(-1)


NETWORKS = {"classifier": MnistClassifier, "reference": ReferenceClassifier, "vae": MnistVAE, "gan": MnistGenerator}


# --- recipes: which network, on which data, without which class --------------------------------


@dataclass(frozen=True)
class Recipe:
    """One trained network: ``kind`` (a key of ``NETWORKS``) trained on ``dataset`` without the
    class named ``excluded`` (None: all classes), shown about ``images_to_see`` images by default."""

    dataset: ImageDataset
    kind: str
    images_to_see: int
    excluded: str | None = None

    @property
    def name(self) -> str:
        """The checkpoint's stem in ``models/<dataset>/``: ``vae``, ``classifier_without_7``, ..."""
        stem = "reference_classifier" if self.kind == "reference" else self.kind
        return stem if self.excluded is None else f"{stem}_without_{self.excluded}"

    @property
    def command_name(self) -> str:
        """What ``pplevelset train`` calls it: ``mnist-vae``, ``fashion-classifier-without-sneaker``, ..."""
        return f"{self.dataset.key}-{self.name.replace('_', '-')}"

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes it is trained on, in label order (a classifier's outputs)."""
        return tuple(name for name in self.dataset.classes if name != self.excluded)


RECIPES = {
    recipe.command_name: recipe
    for recipe in (
        Recipe(MNIST, "classifier", 135_000),
        Recipe(MNIST, "vae", 450_000),
        Recipe(MNIST, "gan", 384_000),
        Recipe(MNIST, "vae", 450_000, excluded=ADVERSARIAL_EXCLUDED["mnist"]),
        Recipe(MNIST, "classifier", 135_000, excluded=NOVEL_EXCLUDED["mnist"]),
        Recipe(MNIST, "reference", 135_000),
        # Fashion-MNIST: 60,000 training images; these budgets fit the CPU time of a laptop (see cards).
        Recipe(FASHION, "classifier", 480_000),
        Recipe(FASHION, "vae", 900_000),
        Recipe(FASHION, "gan", 300_000),
        Recipe(FASHION, "vae", 700_000, excluded=ADVERSARIAL_EXCLUDED["fashion"]),
        Recipe(FASHION, "classifier", 480_000, excluded=NOVEL_EXCLUDED["fashion"]),
        Recipe(FASHION, "reference", 240_000),
    )
}


def recipe_for(dataset: ImageDataset, name: str) -> Recipe:
    """The recipe of checkpoint ``models/<dataset>/<name>``."""
    for recipe in RECIPES.values():
        if recipe.dataset == dataset and recipe.name == name:
            return recipe
    known = ", ".join(recipe.name for recipe in RECIPES.values() if recipe.dataset == dataset)
    raise CheckpointError(f"no {dataset.title} network named {name!r}; known: {known}")


def load_trained(name: str, root: Path | None = None, dataset: ImageDataset = MNIST) -> tuple[nn.Module, dict]:
    """A shipped network of ``dataset`` (``classifier``, ``vae``, ``gan``, ``vae_without_0``, ...),
    built from its card and verified.

    With ``root`` (a trainer's ``out``) the checkpoint is read from ``root/<dataset>`` instead of
    :func:`pplevelset.checkpoints.models_dir`; either way :mod:`pplevelset.checkpoints` checks it.
    """
    recipe = recipe_for(dataset, name)
    command = f"pplevelset train {recipe.command_name}"
    card = checkpoints.read_card(dataset.key, name, root=root, train_command=command)
    try:
        module = NETWORKS[recipe.kind](**card["architecture"]["kwargs"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"model card {dataset.key}/{name}.json does not describe a {recipe.kind} network "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return checkpoints.load_module(module, dataset.key, name, root=root, train_command=command)


# --- shared training pieces -----------------------------------------------------------------


def _default_epochs(train_size: int, images_to_see: int) -> int:
    """Epochs that show the network about ``images_to_see`` images, whatever the data source."""
    return max(1, round(images_to_see / train_size))


def _shuffled_batches(size: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(size, generator=generator)
    for start in range(0, size - batch_size + 1, batch_size):  # drop the ragged last batch
        yield order[start : start + batch_size]


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = 10.0,
    shift: float = 2.0,
    scale: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Small random rotations, scalings and shifts (in pixels), one per image, differentiable."""
    n = images.shape[0]
    uniform = torch.rand(n, 4, generator=generator).to(images.device)
    angle = (2 * uniform[:, 0] - 1) * math.radians(degrees)
    zoom = scale[0] + (scale[1] - scale[0]) * uniform[:, 1]
    offset = (2 * uniform[:, 2:] - 1) * shift * 2 / images.shape[-1]  # pixels -> [-1, 1] units
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, offset[:, 0]], -1), torch.stack([sin, cos, offset[:, 1]], -1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def augment(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float,
    shift: float,
    scale: tuple[float, float],
    flip: bool,
) -> torch.Tensor:
    """A data set's training augmentation (``ImageDataset.augmentation``): an optional random
    horizontal flip (clothes, not digits), then :func:`random_affine`."""
    if flip:
        mirrored = (torch.rand(images.shape[0], generator=generator) < 0.5).to(images.device)
        images = torch.where(mirrored[:, None, None, None], images.flip(-1), images)
    return random_affine(images, generator, degrees=degrees, shift=shift, scale=scale)


def _describe_augmentation(degrees: float, shift: float, scale: tuple[float, float], flip: bool) -> str:
    parts = [f"rotation +-{degrees:g} deg"] if degrees else []
    parts += [f"scale {scale[0]:g}-{scale[1]:g}"] if tuple(scale) != (1.0, 1.0) else []
    parts += [f"shift +-{shift:g} px"] if shift else []
    return ("random horizontal flip, " if flip else "") + "random affine: " + ", ".join(parts)


def _split(recipe: Recipe, split: str, data_root, download: bool):
    """``(images, labels, excluded_images)`` of one split: the recipe's excluded class removed (and
    returned apart), labels renumbered so label ``i`` names ``recipe.classes[i]``."""
    images, labels = load_images(recipe.dataset, split, data_root, download)
    if recipe.excluded is None:
        return images, labels, images[:0]
    index = recipe.dataset.classes.index(recipe.excluded)
    keep = labels != index
    return images[keep], labels[keep] - (labels[keep] > index).long(), images[~keep]


def _command(recipe: Recipe, seed: int, epochs: int | None, data_root, download: bool) -> str:
    parts = [f"pplevelset train {recipe.command_name} --seed {seed}"]
    if epochs is not None:
        parts.append(f"--epochs {epochs}")
    if data_root is not None:
        parts.append(f"--data-root {data_root}")
    if download:
        parts.append("--download")
    return " ".join(parts)


def _card(
    recipe: Recipe,
    module: nn.Module,
    *,
    seed: int,
    epochs_arg: int | None,
    epochs: int,
    data_root,
    download: bool,
    train_size: int,
    test_size: int,
    training: dict,
    metrics: dict,
    started: float,
    device: str,
    images_seen: int,
) -> dict:
    source = describe_source(recipe.dataset, data_root, download)
    if recipe.excluded is not None:
        source += f"; class {recipe.excluded!r} removed"
    card = {
        "network": recipe.command_name,
        "architecture": {
            "class": f"{__name__}.{type(module).__name__}",
            "kwargs": module.kwargs,
            "parameters": sum(p.numel() for p in module.parameters()),
        },
        "data": {"source": source, "train_size": train_size, "test_size": test_size},
        "seed": seed,
        "command": _command(recipe, seed, epochs_arg, data_root, download),
        "training": dict(training, epochs=epochs, images_seen=images_seen),
        "metrics": metrics,
        "train_time_s": round(time.perf_counter() - started, 1),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if recipe.kind in ("classifier", "reference"):
        card["classes"] = list(recipe.classes)
    if recipe.excluded is not None:
        card["excluded_class"] = recipe.excluded
    return card


def _output_folder(out, dataset: ImageDataset) -> Path:
    return (Path(out) if out is not None else checkpoints.models_dir()) / dataset.key


@torch.no_grad()
def classifier_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 5000) -> float:
    """Fraction of correct predictions, in chunks so 60,000 images do not need gigabytes at once."""
    classifier.eval()
    correct = sum(
        (classifier(images[i : i + chunk]).argmax(-1) == labels[i : i + chunk]).sum().item()
        for i in range(0, len(images), chunk)
    )
    return correct / max(1, len(images))


@torch.no_grad()
def classifier_report(classifier: nn.Module, images: torch.Tensor, classes: tuple[str, ...] = MNIST.classes) -> dict:
    """How confident the classifier is on generated images, and which classes it sees (mode coverage)."""
    classifier.eval()
    probabilities = torch.softmax(classifier(images), dim=-1)
    histogram = torch.bincount(probabilities.argmax(-1), minlength=len(classes))
    return {
        "classifier_mean_max_prob": round(probabilities.max(-1).values.mean().item(), 4),
        "classifier_class_histogram": {name: int(count) for name, count in zip(classes, histogram)},
    }


def _classifier_for_metrics(out, dataset: ImageDataset) -> nn.Module:
    """The all-class classifier of ``dataset`` that scores generated images for a card: the one
    just trained into ``out`` if there is one, else the shipped one."""
    if out is not None and (Path(out) / dataset.key / "classifier.json").is_file():
        return load_trained("classifier", root=Path(out), dataset=dataset)[0]
    try:
        return load_trained("classifier", dataset=dataset)[0]
    except CheckpointError as exc:
        raise CheckpointError(f"scoring generated images needs the {dataset.title} classifier: {exc}") from None


def _save_grid(images: torch.Tensor, path: Path, nrow: int = 16) -> None:
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.cpu(), path, nrow=nrow, padding=2, pad_value=0.5)


# --- classifiers ----------------------------------------------------------------------------


def _train_classifier(recipe: Recipe, *, seed, epochs, data_root, download, out, device, progress) -> dict:
    """Train a classifier (``MnistClassifier`` or ``ReferenceClassifier``) with the data set's light
    augmentation, on the recipe's classes; returns its metrics."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = seeded_generator(seed)
    train_x, train_y, _ = (t.to(device) for t in _split(recipe, "train", data_root, download))
    test_x, test_y, _ = (t.to(device) for t in _split(recipe, "test", data_root, download))
    n_epochs = epochs or _default_epochs(len(train_x), recipe.images_to_see)
    batch_size, learning_rate = 64, 2e-3
    augmentation = recipe.dataset.augmentation

    model = NETWORKS[recipe.kind](num_classes=len(recipe.classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps = n_epochs * (len(train_x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps)
    bar = tqdm(range(n_epochs), desc=recipe.command_name, unit="epoch", disable=not progress)
    for _ in bar:
        model.train()
        for index in _shuffled_batches(len(train_x), batch_size, rng):
            images = augment(train_x[index], rng, **augmentation)
            loss = F.cross_entropy(model(images), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        test_accuracy = classifier_accuracy(model, test_x, test_y)
        bar.set_postfix(loss=f"{loss.item():.3f}", test_acc=f"{test_accuracy:.3f}")

    metrics = {
        "test_accuracy": round(classifier_accuracy(model, test_x, test_y), 4),
        "train_accuracy": round(classifier_accuracy(model, train_x, train_y), 4),
    }
    card = _card(
        recipe,
        model,
        seed=seed,
        epochs_arg=epochs,
        epochs=n_epochs,
        data_root=data_root,
        download=download,
        train_size=len(train_x),
        test_size=len(test_x),
        metrics=metrics,
        started=started,
        device=device,
        images_seen=steps * batch_size,
        training={
            "optimizer": f"Adam, one-cycle lr {learning_rate}",
            "batch_size": batch_size,
            "loss": "cross-entropy",
            "augmentation": _describe_augmentation(**augmentation),
        },
    )
    checkpoints.save_checkpoint(model.state_dict(), recipe.dataset.key, recipe.name, card, root=out)
    return metrics


# --- VAE ------------------------------------------------------------------------------------


@torch.no_grad()
def _mean_elbo(vae: MnistVAE, images: torch.Tensor, seed: int, samples: int = 10) -> float:
    """Test ELBO in nats per image, averaged over ``samples`` draws of z per image."""
    vae.eval()
    rng = seeded_generator(seed)
    return torch.stack([vae.elbo(images, rng).mean() for _ in range(samples)]).mean().item()


def _train_vae(recipe: Recipe, *, seed, epochs, data_root, download, out, device, progress) -> dict:
    """Train the VAE by maximising the ELBO; saves a grid of prior samples next to the card, and
    scores 1,000 prior samples with the data set's classifier when one is available."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = seeded_generator(seed)
    train_x, _, _ = _split(recipe, "train", data_root, download)
    test_x, _, excluded_x = _split(recipe, "test", data_root, download)
    train_x, test_x = train_x.to(device), test_x.to(device)
    n_epochs = epochs or _default_epochs(len(train_x), recipe.images_to_see)
    batch_size, learning_rate = 64, 1e-3

    vae = MnistVAE().to(device)
    optimizer = torch.optim.Adam(vae.parameters(), lr=learning_rate)
    steps = n_epochs * (len(train_x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    bar = tqdm(range(n_epochs), desc=recipe.command_name, unit="epoch", disable=not progress)
    for _ in bar:
        vae.train()
        for index in _shuffled_batches(len(train_x), batch_size, rng):
            loss = -vae.elbo(train_x[index], rng).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        bar.set_postfix(train_elbo=f"{-loss.item():.1f}")

    vae.eval()
    metrics = {
        "test_elbo_nats": round(_mean_elbo(vae, test_x, seed), 2),
        "train_elbo_nats": round(_mean_elbo(vae, train_x[: len(test_x)], seed), 2),
    }
    if len(excluded_x):  # how badly the VAE models the class it never saw
        metrics["excluded_class_test_elbo_nats"] = round(_mean_elbo(vae, excluded_x.to(device), seed), 2)
    samples_name = f"{recipe.name}_samples.png"
    with torch.no_grad():
        prior_z = torch.randn(1000, vae.latent_dim, generator=seeded_generator(seed))
        samples = vae.decode(prior_z.to(device))
    try:
        classifier = _classifier_for_metrics(out, recipe.dataset).to(device)
        metrics.update(classifier_report(classifier, samples, recipe.dataset.classes), evaluated_samples=len(samples))
    except CheckpointError:
        pass  # no classifier trained yet: the card has no sample scores
    _save_grid(samples[:128], _output_folder(out, recipe.dataset) / samples_name)
    card = _card(
        recipe,
        vae,
        seed=seed,
        epochs_arg=epochs,
        epochs=n_epochs,
        data_root=data_root,
        download=download,
        train_size=len(train_x),
        test_size=len(test_x),
        metrics=metrics,
        started=started,
        device=device,
        images_seen=steps * batch_size,
        training={
            "optimizer": f"Adam, cosine lr from {learning_rate}",
            "batch_size": batch_size,
            "loss": "negative ELBO, Bernoulli likelihood on grey levels, 1 sample of z",
            "samples": samples_name,
        },
    )
    checkpoints.save_checkpoint(vae.state_dict(), recipe.dataset.key, recipe.name, card, root=out)
    return metrics


# --- GAN ------------------------------------------------------------------------------------


def _train_gan(recipe: Recipe, *, seed, epochs, data_root, download, out, device, progress) -> dict:
    """Train the generator against a DCGAN discriminator with the non-saturating loss.

    The data set's trained classifier (in ``out``, else the shipped one) scores 1,000 samples for
    the card, so train ``<dataset>-classifier`` first. Only the generator is saved.
    """
    started = time.perf_counter()
    classifier = _classifier_for_metrics(out, recipe.dataset)
    torch.manual_seed(seed)
    rng = seeded_generator(seed)
    train_x, _, _ = _split(recipe, "train", data_root, download)
    train_x = train_x.to(device)
    n_epochs = epochs or _default_epochs(len(train_x), recipe.images_to_see)
    batch_size, learning_rate, betas = 64, 2e-4, (0.5, 0.999)

    generator, discriminator = MnistGenerator().to(device), MnistDiscriminator().to(device)
    generator_optimizer = torch.optim.Adam(generator.parameters(), lr=learning_rate, betas=betas)
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), lr=learning_rate, betas=betas)
    bar = tqdm(range(n_epochs), desc=recipe.command_name, unit="epoch", disable=not progress)
    for _ in bar:
        for index in _shuffled_batches(len(train_x), batch_size, rng):
            noise = torch.randn(batch_size, LATENT_DIM, generator=rng).to(device)
            fake = generator(noise)
            # Non-saturating GAN loss: softplus(-logit) is -log sigmoid(logit).
            loss_d = F.softplus(-discriminator(train_x[index])).mean() + F.softplus(discriminator(fake.detach())).mean()
            discriminator_optimizer.zero_grad()
            loss_d.backward()
            discriminator_optimizer.step()
            loss_g = F.softplus(-discriminator(fake)).mean()
            generator_optimizer.zero_grad()
            loss_g.backward()
            generator_optimizer.step()
        bar.set_postfix(loss_d=f"{loss_d.item():.3f}", loss_g=f"{loss_g.item():.3f}")

    generator.eval()
    with torch.no_grad():
        evaluation_z = torch.randn(1000, LATENT_DIM, generator=seeded_generator(seed))
        samples = generator(evaluation_z.to(device))
    metrics = classifier_report(classifier.to(device), samples, recipe.dataset.classes)
    metrics["evaluated_samples"] = len(samples)
    _save_grid(samples[:128], _output_folder(out, recipe.dataset) / "gan_samples.png")
    card = _card(
        recipe,
        generator,
        seed=seed,
        epochs_arg=epochs,
        epochs=n_epochs,
        data_root=data_root,
        download=download,
        train_size=len(train_x),
        test_size=0,
        metrics=metrics,
        started=started,
        device=device,
        images_seen=n_epochs * (len(train_x) // batch_size) * batch_size,
        training={
            "optimizer": f"Adam lr {learning_rate}, betas {list(betas)}, both nets",
            "batch_size": batch_size,
            "loss": "non-saturating GAN loss, one discriminator step per generator step",
            "discriminator": {
                "class": f"{__name__}.MnistDiscriminator",
                "kwargs": discriminator.kwargs,
                "shipped": False,
            },
            "samples": "gan_samples.png",
        },
    )
    checkpoints.save_checkpoint(generator.state_dict(), recipe.dataset.key, recipe.name, card, root=out)
    return metrics


# --- the trainers that `pplevelset train NAME` runs (pplevelset.worlds.training) -----------------

_TRAIN = {"classifier": _train_classifier, "reference": _train_classifier, "vae": _train_vae, "gan": _train_gan}


def train_network(
    command_name: str, *, seed=0, epochs=None, data_root=None, download=False, out=None, device="cpu", progress=True
) -> dict:
    """Train the network ``RECIPES[command_name]`` and write it with its model card; returns its metrics."""
    recipe = RECIPES[command_name]
    return _TRAIN[recipe.kind](
        recipe,
        seed=seed,
        epochs=epochs,
        data_root=data_root,
        download=download,
        out=out,
        device=device,
        progress=progress,
    )


train_classifier = functools.partial(train_network, "mnist-classifier")
train_vae = functools.partial(train_network, "mnist-vae")
train_gan = functools.partial(train_network, "mnist-gan")
train_mnist_adversarial_vae = functools.partial(train_network, "mnist-vae-without-0")
train_mnist_novel_classifier = functools.partial(train_network, "mnist-classifier-without-7")
train_mnist_reference = functools.partial(train_network, "mnist-reference-classifier")
train_fashion_classifier = functools.partial(train_network, "fashion-classifier")
train_fashion_vae = functools.partial(train_network, "fashion-vae")
train_fashion_gan = functools.partial(train_network, "fashion-gan")
train_fashion_adversarial_vae = functools.partial(train_network, "fashion-vae-without-tshirt")
train_fashion_novel_classifier = functools.partial(train_network, "fashion-classifier-without-sneaker")
train_fashion_reference = functools.partial(train_network, "fashion-reference-classifier")
