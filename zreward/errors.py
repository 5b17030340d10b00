"""The one exception type for bad user input; the CLI turns it into a one-line error."""


class InputError(ValueError):
    """Bad input (a file, an image, a score, a checkpoint): the message names the input."""
