"""Reading a prometheus_client registry the way the seed's Go tests read `Gather()`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample


def exposed_name(family: Metric) -> str:
    """The family name as scraped: counters carry the `_total` suffix."""
    return family.name + "_total" if family.type == "counter" else family.name


def gather(registry: CollectorRegistry) -> dict[str, Metric]:
    return {exposed_name(f): f for f in registry.collect()}


def series(family: Metric) -> list[Sample]:
    """One sample per labelled series (the counter value, or the histogram count)."""
    wanted = {
        "counter": family.name + "_total",
        "gauge": family.name,
        "histogram": family.name + "_count",
    }[family.type]
    return [s for s in family.samples if s.name == wanted]


def require_counter(
    registry: CollectorRegistry, name: str, want_value: float, want_labels: dict[str, str]
) -> None:
    families = gather(registry)
    assert name in families, f"metric {name} not found in gathered families"
    samples = series(families[name])
    assert len(samples) == 1, f"expected exactly one series for {name}, got {samples}"
    assert samples[0].value == want_value, f"counter value for {name}"
    for key, value in want_labels.items():
        assert samples[0].labels.get(key) == value, f"label {key} for {name}"


def sample_value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    """The value of the series of `name` whose labels include `labels`, or None."""
    family = gather(registry).get(name)
    if family is None:
        return None
    for sample in series(family):
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None
