"""A drafter wrapper that records every proposed draft (for isolation and persistence tests)."""

import hasten
from hasten.drafters import Drafter


class Recording(Drafter):
    """Delegates to ``inner`` and keeps ``(len(tokens), draft tokens, draft parents)`` per step."""

    def __init__(self, inner: Drafter):
        self.inner = inner
        self.name = inner.name
        self.observes_plain_steps = inner.observes_plain_steps
        self.log = []

    def begin(self, request) -> None:
        super().begin(request)
        self.inner.begin(request)

    def propose(self, tokens, max_depth):
        draft = self.inner.propose(tokens, max_depth)
        self.log.append((len(tokens), None if draft is None else (draft.tokens, draft.parents)))
        return draft

    def on_accept(self, step) -> None:
        self.inner.on_accept(step)

    def stats(self) -> dict:
        return self.inner.stats()


def record(drafter: Drafter) -> Recording:
    return Recording(drafter)


def drafts_of(model, prompt, drafter, max_new_tokens=20):
    """Every draft ``drafter`` proposes while generating after ``prompt``."""
    wrapped = Recording(drafter)
    hasten.generate(model, prompt, method=wrapped, max_new_tokens=max_new_tokens)
    return wrapped.log
