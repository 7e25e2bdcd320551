"""Errors shared by every part of netmargin."""


class UserError(Exception):
    """Bad input or environment, worded for the user: the CLI prints it as one line
    (`<field>: <what was expected>, got <value>`) and exits with status 2."""
