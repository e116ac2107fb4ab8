"""The explorer as a Panel component: target controls, alpha, Refine, the grid and its numbers.

The same object serves the web page (``pplevelset explore``) and a notebook cell. A slider move on a
precomputed pair is a lookup, answered in the callback; sampling (a new pair or alpha, Refine) runs
in a worker thread when a server session is there to keep responsive, and in the caller's thread
otherwise (a notebook, a script), so a notebook gets its answer when the call returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import NamedTuple

import panel as pn

from pplevelset.errors import UserInputError
from pplevelset.explore import render
from pplevelset.explore.answers import Answer, Answers
from pplevelset.explore.settings import REFINE_KERNELS

ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)


class Explorer:
    """One page of the explorer over a shared :class:`Answers` (one per browser session)."""

    def __init__(self, answers: Answers, pair: tuple[str, str] | None = None, level: float = 0.5):
        self.answers = answers
        classes = answers.classes
        a, b = pair or answers.pairs[0]
        alpha = answers.settings.alpha
        self.class_a = pn.widgets.Select(
            name="class A", options=classes, value=a, width=140, css_classes=["pls-class-a"]
        )
        self.class_b = pn.widgets.Select(
            name="class B (takes the rest)",
            options=_others(classes, a),
            value=b,
            width=140,
            css_classes=["pls-class-b"],
        )
        self.level = pn.widgets.FloatSlider(
            name=f"p({a})", start=0.0, end=1.0, step=0.01, value=level, width=300, css_classes=["pls-level"]
        )
        self.alpha = pn.widgets.Select(
            name="alpha (how tightly the prediction matches)",
            options={f"{value:g}": value for value in sorted({*ALPHAS, alpha})},
            value=alpha,
            width=300,
        )
        self.kernel = pn.widgets.RadioButtonGroup(
            name="refine kernel", options=list(REFINE_KERNELS), value=answers.settings.kernel, width=300
        )
        self.refine_button = pn.widgets.Button(
            name="Refine: sample this exact target", button_type="primary", width=300, css_classes=["pls-refine"]
        )
        self.status = pn.pane.Markdown("", css_classes=["pls-status"], width=300)
        self.grid = pn.pane.PNG(None, css_classes=["pls-grid"])  # at its own size: the grid is drawn to be read
        self.numbers = pn.pane.HTML("", css_classes=["pls-numbers"], min_width=600)
        self.answer: Answer | None = None
        self._request = 0  # the newest request: slower answers to older ones are dropped
        for widget in (self.class_a, self.class_b, self.level, self.alpha):
            widget.param.watch(self._on_controls, "value")
        self.refine_button.on_click(self._on_refine)
        self.error: str | None = None  # the last request's one-line error, if it failed
        self._run(lambda: answers.nearest((a, b), level, alpha))

    # -- for notebooks and scripts --------------------------------------------------------------
    def select(
        self, a: str | None = None, b: str | None = None, level: float | None = None, alpha: float | None = None
    ) -> Answer:
        """Move the controls (as a user would) and return the answer shown."""
        for widget, value in ((self.class_a, a), (self.class_b, b), (self.level, level), (self.alpha, alpha)):
            if value is not None:
                widget.value = value
        return self._shown()

    def refine(self, kernel: str | None = None) -> Answer:
        """Press Refine: sample the exact target now shown by the controls."""
        if kernel is not None:
            self.kernel.value = kernel
        self._on_refine()
        return self._shown()

    def _shown(self) -> Answer:
        if self.error is not None:
            raise UserInputError(self.error)
        assert self.answer is not None
        return self.answer

    def view(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            pn.pane.Markdown(
                f"### {self.answers.world.name}\nInputs on which the classifier predicts the target: "
                f"p(A) from the slider, B the rest, other classes at the floor.",
                width=300,
            ),
            pn.Row(self.class_a, self.class_b),
            self.level,
            self.alpha,
            pn.pane.Markdown(
                "Slider moves show the nearest precomputed level at once; Refine samples the exact target.", width=300
            ),
            self.kernel,
            self.refine_button,
            self.status,
            width=320,
        )
        return pn.Row(controls, pn.Column(self.numbers, self.grid))

    def __panel__(self) -> pn.viewable.Viewable:
        return self.view()

    # -- callbacks ------------------------------------------------------------------------------
    def _on_controls(self, event) -> None:
        a = self.class_a.value
        if event.obj is self.class_a:  # B never equals A, and the slider names A
            self.level.name = f"p({a})"
            clash = self.class_b.value == a
            self.class_b.options = _others(self.answers.classes, a)
            if clash:  # A took B's class: swap, so the pair's sweep serves; B's own event shows the answer
                swapped = event.old if event.old in self.class_b.options else self.class_b.options[0]
                if self.class_b.value != swapped:
                    self.class_b.value = swapped
                    return
        pair, level, alpha = (a, self.class_b.value), float(self.level.value or 0.0), self.alpha.value
        self._run(
            lambda: self.answers.nearest(pair, level, alpha),
            slow=None
            if self.answers.ready(pair, alpha)
            else f"sampling graded:{pair[0]},{pair[1]} at alpha {alpha:g} (one batched sweep of 11 targets)...",
        )

    def _on_refine(self, event=None) -> None:
        pair, level, alpha = (self.class_a.value, self.class_b.value), float(self.level.value or 0.0), self.alpha.value
        kernel = self.kernel.value
        self._run(
            lambda: self.answers.refine(pair, level, alpha, kernel),
            slow=f"refining p({pair[0]}) = {level:.2f} with {kernel} ({self.answers.settings.refine_particles} "
            "particles)...",
        )

    def _run(self, compute: Callable[[], Answer], slow: str | None = None) -> None:
        """``compute()`` an answer and show it; in a worker thread when slow and a server session waits."""
        self._request += 1
        request = self._request
        doc = pn.state.curdoc
        if slow is None or doc is None or doc.session_context is None:
            if slow:
                self.status.object = slow
            self._show(request, _attempt(compute))
            return
        self.status.object = slow
        self.refine_button.disabled = True

        async def in_thread():
            outcome = await asyncio.get_running_loop().run_in_executor(None, _attempt, compute)
            self.refine_button.disabled = False
            self._show(request, outcome)

        pn.state.execute(in_thread)

    def _show(self, request: int, outcome: Outcome) -> None:
        if request != self._request:
            return
        self.error = outcome.error
        if outcome.answer is None:
            self.status.object = f"**error**: {outcome.error}"
            return
        self.answer = answer = outcome.answer
        self.grid.object = outcome.png
        self.numbers.object = render.facts_html(outcome.facts or {})
        self.status.object = (
            "refined at the exact target"
            if answer.refined
            else f"nearest precomputed level: p({answer.pair[0]}) = {answer.level:.1f}"
        )


class Outcome(NamedTuple):
    """A computed answer with its picture and numbers, or the one-line error that replaced it."""

    answer: Answer | None
    error: str | None = None
    png: bytes = b""
    facts: dict[str, str] | None = None


def _attempt(compute: Callable[[], Answer]) -> Outcome:
    """Compute and render (here, off the event loop when in a worker thread); bad input becomes its line."""
    try:
        answer = compute()
        return Outcome(answer, None, render.grid_png(answer.posterior, render.title(answer)), render.facts(answer))
    except UserInputError as exc:
        return Outcome(None, str(exc))


def _others(classes, a: str) -> list[str]:
    return [name for name in classes if name != a]
