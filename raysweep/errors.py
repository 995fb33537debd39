"""User-facing errors: the CLI prints these as one line and exits with code 2."""


class RaysweepError(Exception):
    """Bad input or a broken artifact: a message that names the field and what is allowed."""


class ConfigError(RaysweepError):
    """A configuration field holds a value outside what it allows."""

    def __init__(self, field: str, value, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}={value!r} is not valid: {allowed}")


class ArtifactError(RaysweepError):
    """An artifact is missing, incomplete or fails its checksum."""
