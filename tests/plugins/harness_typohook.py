"""A plugin with a misspelled hook name (register_loss for register_losses)."""

from harness import hookimpl


@hookimpl
def register_loss(register):
    register("typo", lambda: None)
