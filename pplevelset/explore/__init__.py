"""The interactive explorer: `pplevelset explore WORLD`, and the same page in a notebook.

Modules: ``answers`` (precomputed sweeps over class pairs and refined runs, no web framework),
``settings`` (sampling sizes), ``render`` (an answer as a PNG and a table of numbers), ``app`` (the Panel component),
``serve`` (port and Panel checks, the server), ``command`` (the CLI front). Panel is imported only
by ``app`` and ``serve``: ``pip install 'pplevelset[explore]'``.

In a notebook::

    import panel as pn
    from pplevelset.explore import Answers, Explorer, Settings
    pn.extension()
    explorer = Explorer(Answers("houses", Settings(particles=48, warmup=80, steps=10)))
    explorer.view()
"""

_EXPORTS = {"Answers": "answers", "Settings": "settings", "Answer": "answers", "Explorer": "app"}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"pplevelset.explore.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
