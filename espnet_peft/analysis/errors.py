"""The error every analysis input check raises (a low module, so that the loaders of any model kind can raise it)."""


class AnalysisInputError(ValueError):
    """A model or data input that cannot be used; the message names the file and how to fix it."""
