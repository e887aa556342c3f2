"""The domain generalization metrics: accuracy averaged over domains.

``target_accuracy`` reads the target rows (``labels``, ``probs``,
``domains``), ``source_accuracy`` the source domains' test rows
(``source_labels``, ``source_probs``, ``source_domains``); each is the mean
over domains of the accuracy within the domain, so a domain with more rows
does not weigh more (DomainBed averages environments the same way).
"""

from __future__ import annotations

from harness import metric


def _mean_over_domains():
    """A fresh callable per metric: ``@metric`` marks what it returns with the
    metric's inputs, so two metrics must not share one function object."""

    def mean_over_domains(labels, probs, domains) -> float:
        from harness_plugins.domains.training import per_domain_accuracy

        per = per_domain_accuracy(labels, probs, domains)
        return float(sum(per.values()) / len(per)) if per else float("nan")

    return mean_over_domains


@metric(("labels", "probs", "domains"), greater_is_better=True)
def target_accuracy():
    """Accuracy on the held-out target domain(s), averaged over target domains."""
    return _mean_over_domains()


@metric(("source_labels", "source_probs", "source_domains"), greater_is_better=True)
def source_accuracy():
    """Accuracy on the source domains' test rows, averaged over source domains."""
    return _mean_over_domains()
