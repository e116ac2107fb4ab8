"""The houses-or-rockets classifier: a small CNN and the loop that trains it on rendered images.

Training data come from the world's own prior (``sample_labelled``) and renderer, so the
classifier learns exactly the distribution the sampler explores. The classes overlap in
``[w, h, t]``; the Bayes classifier on the latents is about 97.9% accurate, so that is the ceiling
(the paper reports 97.3%).
"""

from __future__ import annotations

import os
import time

import torch
from torch import nn

from pplevelset.rng import generator as seeded_generator
from pplevelset.worlds.houses.priors import sample_labelled, shape_components
from pplevelset.worlds.houses.render import SETTINGS, draw

N_TRAIN, N_TEST = 16_000, 4_000
DEFAULT_EPOCHS = 8
BATCH_SIZE = 128
LEARNING_RATE = 2e-3


class HousesCNN(nn.Module):
    """Three stride-2 convolutions (64 -> 8 pixels) and two linear layers; logits for (house, rocket).

    No global pooling: absolute widths and heights are what separates the classes, so the
    spatial layout is kept up to the linear layers.
    """

    def __init__(self, channels: tuple[int, ...] = (8, 16, 32), hidden: int = 32, num_classes: int = 2):
        super().__init__()
        self.config = dict(channels=list(channels), hidden=hidden, num_classes=num_classes)
        layers, width, size = [], 1, 64
        for index, out in enumerate(channels):
            kernel = 5 if index == 0 else 3
            layers += [nn.Conv2d(width, out, kernel, stride=2, padding=kernel // 2), nn.ReLU()]
            width, size = out, size // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(width * size * size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _render_dataset(n: int, generator: torch.Generator, chunk: int = 2_000):
    z, labels = sample_labelled(n, generator)
    with torch.inference_mode():
        images = torch.cat([draw(part) for part in z.split(chunk)])
    return z, images, labels


def _binary_metrics(predicted: torch.Tensor, labels: torch.Tensor, positive: int = 0) -> dict:
    """Accuracy, and precision and recall of the ``positive`` class (house)."""
    hits = ((predicted == positive) & (labels == positive)).sum().item()
    return dict(
        accuracy=(predicted == labels).sum().item() / max(len(labels), 1),
        precision=hits / max((predicted == positive).sum().item(), 1),
        recall=hits / max((labels == positive).sum().item(), 1),
    )


def _bayes_predictions(z: torch.Tensor) -> torch.Tensor:
    """The class of larger prior density given ``[w, h, t]``: the best any classifier can do."""
    return shape_components().log_prob(z[:, None, :3].float()).sum(-1).argmax(-1)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, device, batch_size: int = 1_000) -> torch.Tensor:
    """Predicted class indices of ``images`` ``(n, 1, 64, 64)``."""
    model.eval()
    return torch.cat([model(part.to(device)).argmax(-1).cpu() for part in images.split(batch_size)])


def train(
    *,
    seed: int = 0,
    epochs: int | None = None,
    data_root=None,
    download: bool = False,
    out=None,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Train :class:`HousesCNN` on 16,000 rendered images and save it as ``houses/classifier``.

    ``data_root`` and ``download`` are accepted for a uniform trainer signature and ignored: the
    data are rendered from the prior. Returns the metrics written into the model card.
    """
    from tqdm.auto import tqdm

    from pplevelset.checkpoints import save_checkpoint

    epochs = epochs or DEFAULT_EPOCHS
    load_before = os.getloadavg()
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = seeded_generator(seed)
    _, train_images, train_labels = _render_dataset(N_TRAIN, generator)
    test_z, test_images, test_labels = _render_dataset(N_TEST, generator)

    model = HousesCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    steps_per_epoch = -(-N_TRAIN // BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=epochs * steps_per_epoch)
    loss_function = nn.CrossEntropyLoss()
    bar = tqdm(total=epochs * steps_per_epoch, desc="train houses classifier", disable=not progress)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(N_TRAIN, generator=generator)
        for batch in order.split(BATCH_SIZE):
            images, labels = train_images[batch].to(device), train_labels[batch].to(device)
            loss = loss_function(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()

    metrics = _binary_metrics(predict(model, test_images, device), test_labels)
    bayes = _binary_metrics(_bayes_predictions(test_z), test_labels)
    elapsed = time.perf_counter() - started
    metrics.update(
        n_train=N_TRAIN, n_test=N_TEST, positive_class="house", bayes_accuracy_on_test_latents=bayes["accuracy"]
    )
    card = dict(
        world="houses",
        architecture=dict(
            module=__name__,
            class_name="HousesCNN",
            args=model.config,
            parameters=sum(p.numel() for p in model.parameters()),
        ),
        data=dict(
            source="rendered from the houses prior (pplevelset.worlds.houses.priors.sample_labelled "
            "and .render.draw), labels are the mixture component: 0 house, 1 rocket",
            classes=["house", "rocket"],
            n_train=N_TRAIN,
            n_test=N_TEST,
            generator="torch.Generator seeded with `seed`: train set drawn first, then test set",
            renderer=SETTINGS,
        ),
        training=dict(
            epochs=epochs,
            batch_size=BATCH_SIZE,
            optimizer="Adam",
            schedule="OneCycleLR",
            max_learning_rate=LEARNING_RATE,
            loss="cross-entropy",
            device=str(device),
            torch_threads=torch.get_num_threads(),
            load_average_before=[round(v, 2) for v in load_before],
            load_average_after=[round(v, 2) for v in os.getloadavg()],
        ),
        seed=seed,
        command=f"pplevelset train houses --seed {seed}" + (f" --epochs {epochs}" if epochs != DEFAULT_EPOCHS else ""),
        metrics=metrics,
        paper_metrics=dict(accuracy=0.973, precision=0.947, recall=0.974),
        train_time_s=round(elapsed, 1),
    )
    save_checkpoint(model.state_dict(), "houses", "classifier", card, root=out)
    if progress:
        print(
            f"houses classifier: accuracy {metrics['accuracy']:.4f}, precision {metrics['precision']:.4f}, "
            f"recall {metrics['recall']:.4f} (Bayes {bayes['accuracy']:.4f}) in {elapsed:.0f} s"
        )
    return metrics
