"""The plugin contract of harness.

Every hook a plugin may implement is declared here, with its parameters and
its return contract.  Plugins implement them with ``@harness.hookimpl``::

    from harness import hookimpl

    @hookimpl
    def register_losses(register):
        register("my_loss", my_loss_factory)

Registration hooks (``register_<kind>``)
----------------------------------------
Each receives one argument, ``register(name, factory)``.  ``name`` is the key a
suite uses; ``factory(**params)`` is called lazily, once per run, and its
signature (parameter names, type hints, defaults) is the parameter schema that
suite validation, ``harness list`` and ``harness.create`` are built from.  The
factory's docstring (first line) is the description shown by ``harness list``.
A parameter annotated ``Annotated[str | dict, harness.Component(kind)]`` takes
a nested component spec of ``kind``, validated (and normalised to a mapping)
like a top-level one.  Registering a name twice in one kind, from any two plugins, is an error that
names both plugins.  The return value of registration hooks is ignored.

Lifecycle hooks
---------------
Notifications; their return values are ignored.  An exception raised by a
lifecycle hook during a run fails that run (it is recorded, the suite goes on).
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("harness")

#: Component kinds, in the order ``harness plugins`` shows them.  Each has a
#: ``register_<kind>`` hook below.
KINDS: tuple[str, ...] = (
    "tasks",
    "datasets",
    "transforms",
    "models",
    "losses",
    "optimizers",
    "schedulers",
    "metrics",
    "calibrators",
    "nas_selectors",
    "denoisers",
    "noise_models",
    "augmenters",
    "executors",
)


@hookspec
def register_kinds(register):
    """Add component kinds (pytest's ``pytest_addhooks`` idea), so a plugin
    family can bring its own kind without a core edit.

    :param register: ``register(kind, description)``; ``kind`` is an
        identifier not yet used (``search_spaces``).  The core then declares a
        ``register_<kind>(register)`` hook with the contract of every
        registration hook above, and ``harness list <kind>`` shows the kind.
        The contract of the objects such a kind's factories return is the
        adding plugin's to document.
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
    - ``prepare(entry: dict, seed: int, ctx) -> data`` (optional): the task's
      own data object for one normalised dataset entry (``source``,
      ``params``, ``transforms``, ``split``, ``label``) and split seed;
      ``ctx.load_raw(entry)`` gives the source's ``RawDataset`` (loaded and
      cached by the core).  ``ctx.data`` calls it once per run.
    - ``run(ctx: harness.worker.RunContext) -> dict[str, float]``: train and
      evaluate one run; return the final test metrics (``{"accuracy": ..}``,
      logged as ``test/<name>``).  Raise ``harness.Diverged`` when the loss
      becomes NaN/inf, ``harness.UserError`` when the data does not suit the
      config (such runs are retried once the input is fixed).
    - batch mode (optional; ``harness run --batch``, ``harness.groups``):
      ``batch_key(spec) -> (key | None, reason)``: runs with equal keys may
      train together; ``(None, why)`` for a run that must train alone
      (called at plan time: cheap, no data); and ``run_group(ctxs) ->
      list[dict | BaseException]``: train one group (a ``RunContext`` per
      run) and return per run its test metrics or the exception that ended
      it.  Each run must log exactly what ``run`` would log for it.  In a
      group the contexts log through a store-writer process
      (``harness.storewriter``): their logging calls are queued, and the
      MLflow client and run id are not at hand (a task that reads the store
      while it trains, such as ``harness.shared``, must not batch).
    """


@hookspec
def register_datasets(register):
    """Register dataset sources (``sklearn``, ``openml``, ``csv`` ...).

    In a suite a dataset entry is ``{source: value, **transforms}``; a scalar
    value is passed as the factory's first parameter, a mapping as keyword
    parameters.  ``factory(**params)`` returns a ``harness.data.RawDataset``.
    Factories may be slow (downloads); results are cached by the core.
    Raise ``harness.errors.DatasetUnavailable`` when the data cannot be
    fetched (the runs on it fail once, with that reason).

    A parameter annotated ``pathlib.Path`` is resolved relative to the suite
    file.  Optional attributes of the factory, read at suite validation:

    - ``expand(params) -> list[dict] | None``: the entry stands for several
      datasets (a filter over a collection); one entry is made per returned
      parameter mapping, each naming one concrete dataset, in a stable order.
    - ``label(params) -> str``: the default display label of an entry.
    - ``check(params)``: cheap checks of the input (a file's header, not its
      data); raise ``harness.ConfigError(param, value, message)``.
    - ``catalog() -> list[dict]``: the datasets the source offers, as
      ``harness datasets SOURCE`` lists them.
    """


@hookspec
def register_transforms(register):
    """Register dataset transforms (``imbalance``, ``label_noise`` ...).

    ``factory(**params)`` returns an object with ``stage`` (``"full"``: before
    the split; ``"train"``: train split only; ``"trainval"``: train and
    validation splits, each separately) and ``apply(X, y, rng) -> (X, y)``
    working on numpy arrays with integer-encoded labels.  An optional
    ``bind_classes(classes) -> classes`` is called first with the original
    class values (``one_vs_rest`` resolves its positive class there and
    returns the new class list).  The factory is also called once at suite
    validation: raise ``ValueError`` there for a value out of range, so the
    suite stops before any run.
    """


@hookspec
def register_models(register):
    """Register models.  ``factory(**params)`` returns a ``torch.nn.Module``
    mapping a batch ``(N, *in_shape)`` to logits ``(N, n_classes)``.  Values
    that come from the data are declared in the signature with
    ``Annotated[..., harness.FromData]`` (``in_shape: Annotated[tuple,
    FromData], n_classes: Annotated[int, FromData]``): they are not suite
    parameters; the task offers them by name and the factory gets those it
    declares.  The same marker works for every kind (a denoiser's
    ``in_channels``, a generator's ``n_features``)."""


@hookspec
def register_losses(register):
    """Register losses.  ``factory(**params)`` returns a callable
    ``loss(logits, targets, **extras) -> scalar tensor`` (batch mean), logits
    ``(N, C)``, integer targets ``(N,)``.  Extras passed by the training loop:
    ``index`` (LongTensor of the samples' positions in the train split) and
    ``epoch`` (int, from 0).  A loss that needs the data may define
    ``setup(n_classes: int, class_counts: list[int], n_train: int)``; it is
    called once before training and raises ``ValueError`` with a clear
    message when the data does not suit it (e.g. a binary loss on 3 classes).
    """


@hookspec
def register_optimizers(register):
    """Register optimizers and training schemes.

    ``factory(**params)`` returns either

    - a callable ``build(parameters) -> torch.optim.Optimizer`` (plain
      optimizers; the task wraps it in ``harness_plugins.classification.optimizers.PlainScheme``),
      or
    - a *training scheme*, the one extension point for methods that are not a
      plain optimizer step (two passes per step, extra loss terms, restarts,
      resampling).  A scheme has:

      - ``setup(model, loss_fn, info)``: ``info`` carries ``n_train``,
        ``n_classes``, ``epochs``, ``steps_per_epoch``, ``device`` and the
        whole train split as device tensors ``X_train``/``y_train``;
      - ``step(batch) -> float``: one optimisation step on ``batch``, a dict
        with ``x``, ``y``, ``index`` (LongTensor positions in the train split)
        and ``epoch``; returns the batch loss (NaN/inf ends the run as
        diverged);
      - ``optimizer``: the inner torch optimizer (schedulers step it);
      - optional ``epoch_order(epoch, generator) -> LongTensor | None``: the
        sample order of an epoch (may repeat samples); ``on_epoch_end(epoch)``;
        ``restart_epoch``: set when the scheme re-initialised the model, so
        the task does not select a best epoch from before it.

    Schemes own their optimizer, so SAM-style steps or restarts live in the
    scheme, never in the training loop.
    """


@hookspec
def register_schedulers(register):
    """Register learning-rate schedulers.  ``factory(**params)`` returns
    ``build(optimizer, epochs) -> torch.optim.lr_scheduler.LRScheduler``,
    stepped once per epoch."""


@hookspec
def register_metrics(register):
    """Register metrics.  Each factory is declared with
    ``@harness.metric(inputs=("labels", "probs"), greater_is_better=True)``
    (a factory without a direction is rejected at registration);
    ``factory(**params)`` returns a callable that is called positionally with
    the task's values of ``inputs``, in order, and returns a float.

    Inputs the classification task offers: ``labels`` (int64 numpy ``(N,)``),
    ``probs`` (float64 numpy ``(N, C)``, rows sum to 1), ``logits`` (float
    numpy ``(N, C)``), ``model`` (the trained ``torch.nn.Module``, eval mode),
    ``train_x``/``train_y`` (the train split as device tensors),
    ``train_labels``/``train_probs`` (labels and probabilities on the train
    split).  Other tasks document theirs as ``metric_inputs``.  In a suite a
    metric is a name or ``{name: ece, bins: 25}``; a parameterised metric is
    logged as ``ece:bins-25`` (``harness.metrics.metric_label``) and each
    run records the direction as the tag ``harness.direction.<name>``."""


@hookspec
def register_calibrators(register):
    """Register post-hoc calibrators.  ``factory(**params)`` returns an object
    with ``fit(logits, y) -> self`` and ``predict_proba(logits) -> (N, C)
    numpy array``; logits and y may be numpy arrays or tensors."""


@hookspec
def register_nas_selectors(register):
    """Register NAS selectors: turn a searched supernet (or nothing) into one
    architecture for the ``nas`` task.

    ``factory(**params)`` returns an object with ``needs_supernet`` (bool;
    suite validation rejects such a selector after a search strategy that
    trains no supernet) and ``select(job) -> genotype``, a sequence of op
    names, one per edge of ``job.space``.  ``job`` is a
    ``harness_plugins.nas.selectors.SelectionJob``: ``space`` (the search
    space: ``ops``, ``edges``, ``parse``, ``format``), ``supernet`` (the
    trained ``harness_plugins.nas.supernet.Network`` with ``alphas``,
    ``projected``, ``masked(edge, op)``, ``argmax_genotype()``; None without
    one), ``rng`` (numpy Generator from the run's seed), ``accuracy()`` (the
    supernet's validation accuracy as it stands), ``fine_tune(epochs)``
    (trains its weights, alpha fixed) and ``log(values, step)``.  A selector
    may project edges and fine-tune; the task times it as ``time/select_s``.
    """


@hookspec
def register_denoisers(register):
    """Register denoisers for the ``denoising`` task.  ``factory(in_channels:
    Annotated[int, FromData], **params)`` returns a ``torch.nn.Module`` mapping
    packed raw ``(B, in_channels, h, w)`` in [0, 1] to a denoised image of the
    same shape (any ``h``, ``w``).  A module with ``trainable = False``
    (``bm3d``, ``identity``) is applied as it is; others are trained."""


@hookspec
def register_noise_models(register):
    """Register sensor noise models for the ``denoising`` task.
    ``factory(**params)`` returns an object with ``fit(calibration) -> self``
    (a ``harness_plugins.denoising.calibration.Calibration``: dark frames,
    flat-field pairs, white level; never test images), ``sample(signal,
    generator) -> noisy`` (torch ``(B, 4, h, w)``, DN above the black level)
    and ``params() -> dict[str, float]`` (fitted values, logged as
    ``noise/<name>``)."""


@hookspec
def register_augmenters(register):
    """Register generative augmenters: fit on the train split, sample labelled rows.

    ``factory(**params)`` returns an object with:

    - ``fit(X, y, rng) -> self``: fit on the train split only (``X`` float32
      numpy ``(N, *in_shape)``, ``y`` int64 ``(N,)``, ``rng`` a
      ``numpy.random.Generator`` seeded from the run's init seed);
    - ``sample(n_per_class, rng) -> (X_gen, y_gen)``: ``n_per_class`` is a
      ``{class: count}`` dict or a total count (shared out in the train
      split's class proportions); ``X_gen`` float32 ``(n, *in_shape)``,
      ``y_gen`` int64;
    - ``ratio`` (generated rows per real train row, >= 0), ``mode``
      (``"fixed"``: one generated set appended to the train split;
      ``"per_batch"``: every batch holds the generated share
      ``ratio / (1 + ratio)``, drawn from that set) and ``min_per_class``
      (the fewest train rows of a class it can fit on);
    - ``device``: set by the mixing glue to the run's device before ``fit``
      (torch generators train there);
    - ``check_counts(counts, names)``: raise ``harness.UserError`` naming
      the first class with fewer than ``min_per_class`` rows.

    Base classes that provide all but the fitting and sampling:
    ``harness_plugins.augmentation.augmenters.Augmenter`` and
    ``LikelihoodAugmenter`` (adds ``instance_noise``).  A task mixes them in
    with ``harness_plugins.augmentation.mixing.augment_training(ctx, data,
    spec)``, which logs ``augment/fit_s``, ``augment/samples_per_s`` and
    the quality of the samples against the validation split
    (``augment/c2st``, ``augment/mmd``); generated rows never reach the
    validation or test split.
    """


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
      ``fn`` and the items are picklable; ``fn`` returns a
      ``harness.worker.Outcome`` and never raises for a method's error.
    - When the worker running an item dies (killed, node lost, job cancelled)
      or ``fn`` cannot be called, yield ``harness.worker.Lost(item, error)``
      for it instead of raising: the runner closes that run as
      ``interrupted`` and retries it when ``--retries`` allows.
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
