"""The cyclic garbage collector, tuned once the served app is up (``_process``)."""

from __future__ import annotations

import gc

from agent_trio.app._process import GC_YOUNG_THRESHOLD, tune_garbage_collection


def _tracked(target: object) -> bool:
    """Whether ``target`` is in a generation the collector walks (not frozen)."""
    return any(candidate is target for candidate in gc.get_objects())


def test_tuning_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    frozen_before = gc.get_freeze_count()
    existing: list[object] = [object()]
    try:
        assert _tracked(existing)
        tune_garbage_collection()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert gc.get_freeze_count() > frozen_before
        assert not _tracked(existing)  # made before: left alone from now on
        later: list[object] = [object()]
        assert _tracked(later)  # made after: collected as usual
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
