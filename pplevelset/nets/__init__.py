"""Network architectures and their training loops, one module per world family.

``TRAINERS`` maps the name given to ``pplevelset train NAME`` to ``module:function``. Every trainer
has the signature ``train(*, seed=0, epochs=None, data_root=None, download=False, out=None,
device="cpu", progress=True) -> dict`` and writes its checkpoint and model card with
:func:`pplevelset.checkpoints.save_checkpoint` under ``out`` (default: ``models_dir()``), returning
the metrics it put in the card.
"""

TRAINERS = {
    "houses": "pplevelset.nets.houses:train",
    "mnist-classifier": "pplevelset.nets.mnist:train_classifier",
    "mnist-vae": "pplevelset.nets.mnist:train_vae",
    "mnist-gan": "pplevelset.nets.mnist:train_gan",
}
