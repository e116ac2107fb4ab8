"""The trainers of the built-in worlds' networks; each world's package holds its own (``nets``).

``TRAINERS`` maps the name given to ``pplevelset train NAME`` to ``module:function``. Every trainer
has the signature ``train(*, seed=0, epochs=None, data_root=None, download=False, out=None,
device="cpu", progress=True) -> dict`` and writes its checkpoint and model card with
:func:`pplevelset.checkpoints.save_checkpoint` under ``out`` (default: ``models_dir()``), returning
the metrics it put in the card. The 28x28 image networks (MNIST, Fashion-MNIST) are the recipes of
:data:`pplevelset.worlds.mnist.nets.RECIPES`, one trainer each.
"""

_IMAGES = "pplevelset.worlds.mnist.nets"

TRAINERS = {
    "houses": "pplevelset.worlds.houses.nets:train",
    "mnist-classifier": f"{_IMAGES}:train_classifier",
    "mnist-vae": f"{_IMAGES}:train_vae",
    "mnist-gan": f"{_IMAGES}:train_gan",
    "mnist-vae-without-0": f"{_IMAGES}:train_mnist_adversarial_vae",
    "mnist-classifier-without-7": f"{_IMAGES}:train_mnist_novel_classifier",
    "mnist-reference-classifier": f"{_IMAGES}:train_mnist_reference",
    "fashion-classifier": f"{_IMAGES}:train_fashion_classifier",
    "fashion-vae": f"{_IMAGES}:train_fashion_vae",
    "fashion-gan": f"{_IMAGES}:train_fashion_gan",
    "fashion-vae-without-tshirt": f"{_IMAGES}:train_fashion_adversarial_vae",
    "fashion-classifier-without-sneaker": f"{_IMAGES}:train_fashion_novel_classifier",
    "fashion-reference-classifier": f"{_IMAGES}:train_fashion_reference",
}
