"""The one error a bad credentials file raises, whichever file it is."""


class AuthConfigError(ValueError):
    """A tokens, key or JWKS file cannot be used (the message names the file and entry):
    the server does not start, and a reload keeps the previous credentials."""
