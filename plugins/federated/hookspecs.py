"""The component kind of the federated learning family: ``federated_strategies``
(declared through ``register_kinds``, as a third-party family would).

The ``federated`` task feeds metrics the classification inputs of the final
global model on the test split (``labels``, ``probs``, ``logits``) and
``round_accuracy`` (test accuracy per round, NaN where not evaluated),
``client_accuracy`` (per-client accuracy of the global model) and
``bytes_per_round`` (bytes communicated in each round).
"""

from __future__ import annotations

from harness import hookimpl
from harness.hookspecs import hookspec


@hookspec
def register_federated_strategies(register):
    """Register federated strategies.  ``factory(**params)`` returns an object
    the simulation (``harness_plugins.federated.simulation``) drives; the
    base class ``harness_plugins.federated.strategies.FedAvg`` implements
    every member, so a strategy overrides only what it changes.  Parameters
    are lists of tensors in ``model.parameters()`` order:

    - ``setup(sim)`` once, before round 1; ``sim`` is the
      ``Simulation`` (``n_clients``, ``global_params``, ``model_bytes``,
      ``sampling_rng(stream)``, ``train_clients(ks, start, epochs,
      generator, strategy=None) -> [(params, steps, lr, loss, buffers)]``
      for strategies that train clients outside the rounds); returns the
      bytes it communicated (FedLEx's exploration), else 0.
    - ``adjust_gradients(k, params, global_params)``: after each local
      backward pass of client ``k``, change ``p.grad`` of ``params`` in place
      (FedProx's proximal term, SCAFFOLD's correction, FedLEx's guidance);
      ``adjust_stacked(ks, grads, params, global_params) -> grads`` does the
      same for clients ``ks`` trained stacked (leading client axis).  A
      strategy without ``adjust_stacked`` always trains client by client.
    - ``client_done(k, local, global_params, steps, lr)``: client ``k``
      finished its local update (``steps`` optimizer steps at learning rate
      ``lr``); SCAFFOLD updates its control variate here.
    - ``aggregate(global_params, locals, weights, server_lr) -> params``:
      the new global parameters from the sampled clients' ``locals`` and
      their weights (sample shares, summing to 1).
    - ``round_done(sampled)``: the server's end of a round.
    - ``payload(k) -> (down, up)``: model-sized tensors sent to and from
      client ``k`` this round (FedAvg ``(1, 1)``, SCAFFOLD ``(2, 2)``).
    """


@hookimpl
def register_kinds(register):
    """The federated family's kind: federated_strategies."""
    register("federated_strategies", register_federated_strategies)
