"""The plugin contract of harness's core.

The core declares the hooks of the component kinds it consumes itself
(``tasks``, ``datasets``, ``metrics``, ``executors``), the lifecycle hooks,
and ``register_kinds``, through which every family of methods (built-in or
third-party) declares its own kinds and documents their contracts in its own
package (the classification family's in
``harness_plugins.classification.hookspecs``), as pytest plugins add hooks
with ``pytest_addhooks``.  A new family needs no core edit.  Plugins
implement hooks with ``@harness.hookimpl``::

    from harness import hookimpl

    @hookimpl
    def register_metrics(register):
        register("my_metric", my_metric_factory)

Registration hooks (``register_<kind>``)
----------------------------------------
Each receives one argument, ``register(name, factory)``.  ``name`` is the key a
suite uses; ``factory(**params)`` is called lazily, once per run, and its
signature (parameter names, type hints, defaults) is the parameter schema that
suite validation, ``harness list`` and ``harness.create`` are built from.  The
factory's docstring (first line) is the description shown by ``harness list``.
A parameter annotated ``Annotated[str | dict, harness.Component(kind)]`` takes
a nested component spec of ``kind``, validated (and normalised to a mapping)
like a top-level one.  Values that come from the data are declared with
``Annotated[..., harness.FromData]`` (a network's ``in_shape:
Annotated[tuple, FromData]``): they are not suite parameters; the
task offers them by name (``registry.create(kind, spec, **offered)``) and the
factory gets those it declares.  Registering a name twice in one kind, from
any two plugins, is an error that names both plugins and their
distributions.  The return value of registration hooks is ignored.

Lifecycle hooks
---------------
Notifications; their return values are ignored.  An exception raised by a
lifecycle hook during a run fails that run (it is recorded, the suite goes on).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("harness")

#: The component kinds the core consumes, in the order ``harness list`` shows
#: them (the kinds families add follow).  Each has a ``register_<kind>`` hook
#: below.
CORE_KINDS: tuple[str, ...] = ("tasks", "datasets", "metrics", "executors")


@hookspec
def register_kinds(register):
    """Declare the component kinds a plugin family brings (pytest's
    ``pytest_addhooks`` idea), with their contracts.

    :param register: ``register(kind, contract)``.  ``kind`` is an identifier
        no other plugin declares (``widgets``); harness then
        declares a ``register_<kind>(register)`` hook with the contract of
        every registration hook (see above), validates the plugins that
        implement it (a misspelled ``register_<kind>`` still fails loudly),
        and ``harness list <kind>`` shows the kind.  ``contract`` documents
        what the kind's factories return: either a function named
        ``register_<kind>`` with the single parameter ``register`` whose
        docstring is the contract (written in the family's own
        ``hookspecs`` module, as a core hookspec is written here), or a
        one-line description.  The family's ``register_kinds`` implementation
        should live in a plugin of its own (its ``hookspecs`` module), so
        blocking one plugin that implements the kind leaves it declared for
        the others.
    """


@hookspec
def register_tasks(register):
    """Register task plugins (``classification``, ``calibration``, ...).

    ``factory()`` returns a task object with:

    - ``validate(config: dict, check) -> dict``: normalise and check the
      merged config of one method (everything in the suite except the
      suite-level keys ``name``, ``description``, ``task``, ``seeds``,
      ``datasets``, ``methods``, ``sweep``, ``metrics``, ``rank_by``,
      ``device``).  Raise ``harness.ConfigError(path, value, message)`` for a
      bad value; call ``check(kind, spec, path) -> (name, params)`` on every
      component spec so unknown names and parameters are reported before any
      run starts (``harness.params.check_components(config, check, paths)``
      does it for a list of dotted paths).  ``check.metrics`` lists the suite's logged metric names
      (for keys such as an early-stopping monitor).
    - ``metric_inputs: tuple[str, ...]``: the names of the values the task
      can feed metrics (see ``register_metrics``); suite validation rejects a
      metric that needs anything else, naming the task's list.
    - ``dataset_entry(options: dict, registry) -> dict`` (optional): the
      task's own keys of a dataset entry.  ``options`` holds the keys of one
      suite entry other than its source and ``label``, in suite order
      (``{"imbalance": 0.1, "split": {"test": 0.3}}``); return them
      normalised and JSON-ready (each component with all its parameters,
      fractions with their defaults filled in): they join ``source``,
      ``params``, ``label`` and ``base_dir`` in the entry ``prepare`` gets,
      and the run key hashes them.  Reject every key the task does not
      apply: raise ``harness.ConfigError(path, value, message)`` with
      ``path`` inside the entry (``"imbalance"``, ``"split.val"``); the
      suite loader names the file, line and ``datasets[i].<path>``.
      ``harness.suite.component_params(registry, kind, name, value)``
      validates a component written as a scalar or a mapping.  A task
      without this method accepts no such key.  The classification-like
      tasks share ``harness_plugins.classification.entries.SplitAndTransforms``.
    - ``dataset_label(base: str, entry: dict) -> str`` (optional): the
      default display label of a normalised entry, given the source's own
      (``breast_cancer`` -> ``breast_cancer+imbalance=0.1``); ``base``
      when absent.  Seeds never derive from a label the suite writes: the
      split seed derives from this default label, a function of the entry's
      content (what the run key hashes).
    - ``prepare(entry: dict, seed: int, ctx) -> data`` (optional): the task's
      own data object for one normalised dataset entry (``source``,
      ``params``, ``label``, ``base_dir`` and the keys of
      ``dataset_entry``) and split seed; ``ctx.load_raw(entry)`` gives the
      source's ``RawDataset`` (loaded and cached by the core).
      ``ctx.data`` calls it once per run.
    - ``cost_keys: tuple[str, ...]`` (optional): dotted config keys (or key
      prefixes: ``"model"`` covers ``model.hidden``) that, with the
      dataset, determine a run's training time; ``harness plan --groups``
      estimates a run from earlier finished runs with equal values
      (``harness.estimate``).  Without it no estimate is made.
    - ``run(ctx: harness.context.RunContext) -> dict[str, float]``: train and
      evaluate one run; return the final test metrics (``{"accuracy": ..}``,
      logged as ``test/<name>``).  Raise ``harness.Diverged`` when the loss
      becomes NaN/inf, ``harness.UserError`` when the data does not suit the
      config (such runs are retried once the input is fixed).  How a run's
      ending becomes its status is ``harness.runstate.judge``'s.
    - batch mode (optional; the default of ``harness run``, ``harness.groups``):
      ``batch_key(spec) -> (key | None, reason)``: runs with equal keys may
      train together; ``(key, "")`` when a group logs for each run what it
      logs alone whichever runs share it (grouped by default), ``(key,
      why)`` when a group changes its numbers within rounding (grouped only
      with ``--batch``), ``(None, why)`` for a run that must train alone
      (called at plan time: cheap, no data); and ``run_group(ctxs) ->
      list[dict | BaseException]``: train one group (a ``RunContext`` per
      run) and return per run its test metrics or the exception that ended
      it.  Each run must log exactly what ``run`` would log for it.  A
      group is one work item of the run lifecycle (``harness.worker``),
      like a run alone: the same tags, statuses and resume.  Every context
      logs through ``ctx.logger`` (a ``harness.runlog.RunLogger``); in batch
      mode its calls are queued to a store-writer process
      (``harness.storewriter``), and ``harness.shared`` works through it.
    """


@hookspec
def register_datasets(register):
    """Register dataset sources (``sklearn``, ``openml``, ``csv`` ...).

    In a suite a dataset entry is ``{source: value, label: ..., **options}``
    (the options, such as a split, are the task's:
    ``dataset_entry`` in ``register_tasks``); a scalar value is passed as
    the factory's first parameter, a mapping as keyword parameters.
    ``factory(**params)`` returns a ``harness.data.RawDataset``.
    Factories may be slow (downloads); results are cached by the core.
    Raise ``harness.errors.DatasetUnavailable`` when the data cannot be
    fetched (the runs on it fail once, with that reason).

    A parameter annotated ``pathlib.Path`` is resolved relative to the suite
    file.  Optional attributes of the factory, read at suite validation:

    - ``expand(params) -> list[dict] | None``: the entry stands for several
      datasets (a filter over a collection); one entry is made per returned
      parameter mapping, each naming one concrete dataset, in a stable order.
      It sees ``pathlib.Path`` parameters resolved against the suite's
      folder, as ``check`` does; a path it returns unchanged is stored as the
      suite wrote it (run keys do not depend on where the suite lives).
    - ``label(params) -> str``: the default display label of an entry
      (the task's ``dataset_label`` may extend it).  The split seed derives
      from this default label, so it must be a pure function of ``params``
      that stays the same across versions.
    - ``split_label(params) -> str``: for an entry whose train and validation
      rows are another dataset's (a corrupted test set of CIFAR-10), that
      dataset's default label; the entry's split seed derives from it, so it
      splits those rows as that dataset's entry does (its display label stays
      ``label``).
    - ``check(params)``: cheap checks of the input (a file's header, not its
      data); raise ``harness.ConfigError(param, value, message)``.
    - ``catalog() -> list[dict]``: the datasets the source offers, as
      ``harness datasets SOURCE`` lists them.
    """


@hookspec
def register_metrics(register):
    """Register metrics.  Each factory is declared with
    ``@harness.metric(inputs=("labels", "probs"), greater_is_better=True)``
    (a factory that declares no direction is rejected at registration;
    ``greater_is_better=None`` declares a value neither extreme makes
    better, such as a signed bias: logged and shown, never ranked, monitored
    or named by ``rank_by``);
    ``factory(**params)`` returns a callable that is called positionally with
    the task's values of ``inputs``, in order, and returns a float.

    ``inputs`` are names from the ``metric_inputs`` of the tasks the metric
    serves; each task documents what its names hold (the classification
    task's ``labels``, ``probs``, ...).  Suite validation rejects a metric
    whose inputs the suite's task does not offer.  In a suite (whose
    ``metrics:`` key is required) a
    metric is a name or ``{name: ece, bins: 25}``; a parameterised metric is
    logged as ``ece:bins-25`` (``harness.metrics.metric_label``) and each
    run records the direction as the tag ``harness.direction.<name>``
    (``max``, ``min`` or ``none``)."""


@hookspec
def register_executors(register):
    """Register executors: where runs execute (this process, a pool, Ray, SLURM).

    :param register: ``register(name, factory)``; ``factory(**params)`` returns
        an executor.  Its parameters are the executor's options: each becomes a
        ``harness run --<param>`` flag (``gpus_per_run`` -> ``--gpus-per-run``;
        names ``harness run`` uses itself stay ``--executor-opt KEY=VALUE``
        only), validated from the signature like any component (bounds as
        ``Annotated[int, pydantic.Field(ge=1)]``, or raise
        ``harness.ConfigError("executor.<param>", value, msg)``); the CLI
        names the flag in the message.

    Contract of the returned object:

    - ``map(fn, items) -> iterator`` calls ``fn(item)`` once for every item,
      wherever it likes, and yields each result as it completes (any order).
      ``fn`` and the items (``harness.worker.WorkItem``: one run, or a
      batch-mode group) are picklable; ``fn`` returns a list of
      ``harness.worker.Outcome``, one per run of the item, and never raises
      for a method's error.
    - When the worker running an item dies (killed, node lost, job cancelled)
      or ``fn`` cannot be called, yield ``harness.worker.Lost(item, error)``
      for it instead of raising: the runner closes its runs as
      ``interrupted`` and retries them when ``--retries`` allows.
      ``Lost(..., infrastructure=False)`` marks a failure that must not be
      retried.
    - ``fn.isolated`` is true when every call already supervises a child
      process of its own (``--timeout``/``--memory-limit``/``--retries``);
      a local executor may then drive calls from threads.
    - Optional ``name`` attribute: recorded as the ``harness.executor`` tag.
    - Optional ``slots`` attribute (default 1): how many runs it trains at
      once on this machine; the runner spreads the runs over this machine's
      GPUs round-robin by slot.  An executor whose scheduler gives each run
      its GPUs (Ray, SLURM) says 1.
    - Optional ``in_process(items) -> bool`` (default false): true when
      ``map`` would call ``fn`` for these items in the calling process.  The
      runner then starts training while its store writer is still creating
      the store (the writer's messages keep their order); otherwise it waits
      for the store first, since writers of other processes would race to
      create it.
    """


# -- lifecycle -----------------------------------------------------------------


@hookspec
def before_suite(suite, runs):
    """Called once before any run of a suite starts.

    :param suite: the validated ``harness.suite.Suite``.
    :param runs: the ``RunSpec`` list that will be executed (already done runs
        excluded).
    """


@hookspec
def before_run(spec):
    """Called in the worker before a run trains.  :param spec: its RunSpec."""


@hookspec
def on_epoch_end(spec, epoch, metrics, phase):
    """Called after each epoch with that epoch's logged metrics
    (``{"train/loss": .., "val/accuracy": ..}``) and the training ``phase``
    (``"train"``; tasks with several phases use e.g. ``"search"``,
    ``"finetune"``, and log that phase's metrics under ``<phase>/``).
    Implementations may omit parameters they do not use."""


@hookspec
def after_run(spec, status, metrics):
    """Called after a run ends with its status (``finished``, ``diverged``)
    and its final test metrics."""


@hookspec
def on_run_error(spec, error):
    """Called when a run raised ``error``; the run is recorded as failed."""


@hookspec
def after_suite(suite, summary):
    """Called once after the suite; ``summary`` maps status -> count."""
