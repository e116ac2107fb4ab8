"""The trainers of the built-in worlds' networks; each world's package holds its own (``nets``).

``TRAINERS`` maps the name given to ``pplevelset train NAME`` to ``module:function``. Every trainer
has the signature ``train(*, seed=0, epochs=None, data_root=None, download=False, out=None,
device="cpu", progress=True) -> dict`` and writes its checkpoint and model card with
:func:`pplevelset.checkpoints.save_checkpoint` under ``out`` (default: ``models_dir()``), returning
the metrics it put in the card.
"""

TRAINERS = {
    "houses": "pplevelset.worlds.houses.nets:train",
    "mnist-classifier": "pplevelset.worlds.mnist.nets:train_classifier",
    "mnist-vae": "pplevelset.worlds.mnist.nets:train_vae",
    "mnist-gan": "pplevelset.worlds.mnist.nets:train_gan",
}
